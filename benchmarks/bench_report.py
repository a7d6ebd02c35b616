"""`archc report` (static) against torchinfo.summary (a forward pass), and the
training-memory estimate's error.

    python benchmarks/bench_report.py [--quick] [--skip-memory]

(1) ResNet-50 at 3x224x224: the full static report (load and expand the spec, every row with
receptive fields, totals with the training-memory replay, rendered as a table) against
torchinfo.summary on an already-built model (its forward pass and hooks only; building the model is
not charged to it). Median of interleaved rounds; prints the ratio. (2) The estimated training-step
peak against the measured peak of torch's CPU allocator for a few zoo-like models
(tests/test_memory.py's measurement), SGD and Adam.
"""

from __future__ import annotations

import argparse
import contextlib
import io

from common import ROOT, interleaved, median, ratio, write_result

SPEC = ROOT / "tests/specs/report_resnet50.yaml"
MEMORY_CASES = [  # (spec, batch, build args); realistic sizes where activations matter
    ("tests/specs/report_resnet18.yaml", 8, {}),
    ("tests/specs/report_resnet50.yaml", 4, {}),
    ("tests/specs/report_googlenet.yaml", 4, {"aux": True}),
    ("tests/specs/report_alexnet.yaml", 8, {}),
    ("specs/mobilenet_v2.yaml", 8, {"image_size": 96}),
    ("specs/resnet20.yaml", 64, {}),
]


def report_vs_torchinfo(rounds: int) -> dict[str, float]:
    import torch
    import torchinfo

    from archc.analysis.report import render, report_rows, totals
    from archc.api import build, compile_graph

    def static() -> None:
        graph = compile_graph(SPEC)
        render(report_rows(graph, batch=1), totals(graph, batch=1), "table")

    model = build(SPEC).eval()
    x_shape = (1, *model.archc_graph.input_shape)

    def forward_based() -> None:
        with torch.no_grad():
            torchinfo.summary(
                model,
                input_size=x_shape,
                verbose=0,
                depth=100,
                col_names=("output_size", "num_params", "mult_adds"),
            )

    with contextlib.redirect_stdout(io.StringIO()):
        times = interleaved(
            {"archc report": static, "torchinfo.summary": forward_based}, rounds=rounds
        )
    out = {
        "archc_ms": 1e3 * median(times["archc report"]),
        "torchinfo_ms": 1e3 * median(times["torchinfo.summary"]),
        "ratio_archc_over_torchinfo": ratio(times, "archc report", "torchinfo.summary"),
        "rounds": rounds,
    }
    out["speedup"] = 1 / out["ratio_archc_over_torchinfo"]
    print(
        f"  resnet50 224px: archc report {out['archc_ms']:.1f} ms, "
        f"torchinfo.summary {out['torchinfo_ms']:.1f} ms, ratio archc/torchinfo "
        f"{out['ratio_archc_over_torchinfo']:.3f} ({out['speedup']:.1f}x faster)"
    )
    return out


def memory_errors(cases: list[tuple[str, int, dict[str, object]]]) -> list[dict[str, object]]:
    from archc.analysis.memory import training_memory
    from archc.api import compile_graph
    from tests.test_memory import measure_step_peak

    rows = []
    for spec, batch, args in cases:
        path = ROOT / spec
        if not path.exists():
            print(f"  skip {spec}: not written yet")
            continue
        estimate = training_memory(compile_graph(path, **args), batch)
        for optimizer in ("sgd", "adam"):
            measured = measure_step_peak(path, batch, optimizer, **args)
            err = 100 * (estimate.peak[optimizer] / measured - 1)
            rows.append(
                {
                    "spec": spec,
                    "batch": batch,
                    "args": {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()},
                    "optimizer": optimizer,
                    "measured_mb": measured / 1e6,
                    "estimate_mb": estimate.peak[optimizer] / 1e6,
                    "error_pct": err,
                }
            )
            print(
                f"  {spec} batch {batch} {optimizer}: measured {measured / 1e6:.1f} MB, estimated "
                f"{estimate.peak[optimizer] / 1e6:.1f} MB ({err:+.1f}%)",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds and memory cases")
    parser.add_argument("--skip-memory", action="store_true", help="only the timing comparison")
    args = parser.parse_args()
    print("static report vs torchinfo.summary (forward pass), ResNet-50 at 224x224:")
    timing = report_vs_torchinfo(5 if args.quick else 15)
    memory: list[dict[str, object]] = []
    if not args.skip_memory:
        print("training-step memory: static estimate vs measured CPU allocator peak:")
        memory = memory_errors(MEMORY_CASES[:2] if args.quick else MEMORY_CASES)
    summary: list[dict[str, object]] = [
        {
            "metric": "archc report / torchinfo.summary time, ResNet-50 224px",
            "value": round(timing["ratio_archc_over_torchinfo"], 3),
            "unit": "x time",
            "target": "< 1 (no forward pass)",
        },
        {
            "metric": "archc report, ResNet-50 224px (load, expand, rows, totals, table)",
            "value": round(timing["archc_ms"], 1),
            "unit": "ms",
            "target": "",
        },
    ]
    if memory:
        worst = max(abs(float(r["error_pct"])) for r in memory)  # type: ignore[arg-type]
        summary.append(
            {
                "metric": (
                    f"training-memory estimate, worst |error| over {len(memory)} measured CPU steps"
                ),
                "value": round(worst, 1),
                "unit": "%",
                "target": "<= 15",
            }
        )
    flags = " ".join(
        f for f, on in (("--quick", args.quick), ("--skip-memory", args.skip_memory)) if on
    )
    write_result(
        "report",
        {
            "command": f"python benchmarks/bench_report.py {flags}".strip(),
            "summary": summary,
            "timing": timing,
            "memory": memory,
        },
    )


if __name__ == "__main__":
    main()
