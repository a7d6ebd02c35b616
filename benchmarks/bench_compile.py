"""Runtime overhead of compiled modules vs hand-written ones, and `archc check` latency.

    python benchmarks/bench_compile.py [--quick] [--device cpu|cuda]

(1) ResNet-18 at CIFAR size, built from benchmarks/specs/resnet18_cifar.yaml, against the
hand-written torchvision-style module in tests/reference_models.py with the same weights:
eval forward and SGD train step at batch 1 and 32, median of interleaved rounds. Target <= 1.02.
(2) The same for specs/resnet50.yaml against torchvision's resnet50 at 224x224 (batch 1 eval,
batch 8 train): per-block module calls must not cost measurable time. Target <= 1.02.
(3) Activation checkpointing (`checkpoint: true` on ResNet-18 CIFAR's eight blocks): peak memory
of one training step, measured in a fresh process per variant (peak RSS above the built model),
and the bytes autograd saves for backward. Gradients equal (tests/test_modules.py).
(4) Wall time of `archc check` on zoo specs, in a fresh process. Target < 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

from common import ROOT, interleaved, median, ratio, write_result


def runtime_overhead(rounds: int, device: str) -> list[dict[str, object]]:
    import torch
    import torchvision

    from archc.api import build
    from tests.reference_models import resnet18_cifar_handwritten

    cases = [
        (
            "ResNet-18 CIFAR",
            resnet18_cifar_handwritten,
            ROOT / "benchmarks/specs/resnet18_cifar.yaml",
            (3, 32, 32),
            [(1, "eval"), (1, "train"), (32, "eval"), (32, "train")],
            rounds,
        ),
        (
            "torchvision ResNet-50 224",
            torchvision.models.resnet50,
            ROOT / "specs/resnet50.yaml",
            (3, 224, 224),
            [(1, "eval"), (8, "train")],
            max(5, rounds // 2),
        ),
    ]
    rows = []
    for name, make_reference, spec, shape, runs, case_rounds in cases:
        torch.manual_seed(0)
        reference = make_reference().to(device)
        compiled = build(spec).to(device)
        compiled.load_state_dict(reference.state_dict(), strict=True)
        for batch, mode in runs:
            rows.append(
                _overhead_row(name, compiled, reference, batch, mode, shape, case_rounds, device)
            )
    return rows


def _overhead_row(
    name: str,
    compiled: Any,
    reference: Any,
    batch: int,
    mode: str,
    shape: tuple[int, ...],
    rounds: int,
    device: str,
) -> dict[str, object]:
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    x = torch.randn(batch, *shape, device=device)
    classes = reference.fc.out_features
    y = torch.randint(0, classes, (batch,), device=device)
    candidates = {}
    for label, model in (("archc", compiled), ("hand-written", reference)):
        if mode == "eval":
            model.eval()

            def step(model: torch.nn.Module = model, x: torch.Tensor = x) -> None:
                with torch.inference_mode():
                    model(x)
                sync()
        else:
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

            def step(
                model: torch.nn.Module = model,
                opt: torch.optim.Optimizer = opt,
                x: torch.Tensor = x,
                y: torch.Tensor = y,
            ) -> None:
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
                sync()

        candidates[label] = step
    n = rounds if batch <= 8 else max(3, rounds // 2)
    times = interleaved(candidates, rounds=n)
    per_round = sorted(a / h for a, h in zip(times["archc"], times["hand-written"], strict=True))
    row = {
        "model": name,
        "batch": batch,
        "mode": mode,
        "rounds": n,
        "archc_ms": 1e3 * median(times["archc"]),
        "handwritten_ms": 1e3 * median(times["hand-written"]),
        "ratio": ratio(times, "archc", "hand-written"),
        "ratio_iqr": [per_round[n // 4], per_round[(3 * n) // 4]],
    }
    print(
        f"  {name:<26} batch {batch:>3} {mode:<5}  archc {row['archc_ms']:8.2f} ms   hand-written "
        f"{row['handwritten_ms']:8.2f} ms   ratio {row['ratio']:.3f} "
        f"(per-round quartiles {row['ratio_iqr'][0]:.3f}-{row['ratio_iqr'][1]:.3f})"
    )
    return row


MEMORY_PROBE = r"""
import json, sys
import torch
from archc.api import build

def rss_kib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field))

torch.manual_seed(0)
model = build(sys.argv[1], checkpoint=sys.argv[2] == "1").train()
x = torch.randn(int(sys.argv[3]), 3, 32, 32)
saved = []

def pack(t):
    saved.append(t.numel() * t.element_size())
    return t

for step in range(2):  # the first step warms up allocator and kernel caches; the second is measured
    model.zero_grad(set_to_none=True)
    saved.clear()
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
    base = rss_kib("VmRSS:")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).square().mean()
    loss.backward()
    peak = rss_kib("VmHWM:")
peak_mib = (peak - base) / 1024
print(json.dumps({"peak_above_model_mib": peak_mib, "saved_for_backward_mib": sum(saved) / 2**20}))
"""


def checkpoint_memory(batch: int) -> list[dict[str, object]]:
    import json

    rows = []
    for flag in (False, True):
        # glibc serves large blocks by mmap and unmaps them on free:
        # peak RSS then tracks live tensors
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                MEMORY_PROBE,
                str(ROOT / "benchmarks/specs/resnet18_cifar.yaml"),
                "1" if flag else "0",
                str(batch),
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        row = {
            "checkpoint": flag,
            "batch": batch,
            **json.loads(out.stdout.strip().splitlines()[-1]),
        }
        rows.append(row)
        print(
            f"  checkpoint={flag!s:<5} batch {batch}: peak RSS above "
            f"the model {row['peak_above_model_mib']:7.1f} MiB, saved "
            f"for backward {row['saved_for_backward_mib']:7.1f} MiB"
        )
    return rows


def check_latency(specs: list[str], repeats: int) -> list[dict[str, object]]:
    rows = []
    exe = [sys.executable, "-m", "archc", "check"]
    for spec in specs:
        walls = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([*exe, spec], cwd=ROOT, check=True, capture_output=True)
            walls.append(time.perf_counter() - start)
        rows.append({"spec": spec, "wall_s": median(walls), "min_s": min(walls)})
        print(f"  archc check {spec:<32} median {median(walls):.3f} s  (min {min(walls):.3f} s)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about a minute)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rounds = 10 if args.quick else 40
    print("runtime overhead (archc / hand-written; 1.00 = same speed):")
    overhead = runtime_overhead(rounds, args.device)
    print("activation checkpointing, ResNet-18 CIFAR training step:")
    memory = checkpoint_memory(32 if args.quick else 128)
    specs = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "specs").glob("*.yaml"))
        if p.stem in ("resnet50", "googlenet", "inception_v3", "densenet_bc_cifar", "lenet5")
    ]
    specs = specs or ["benchmarks/specs/resnet18_cifar.yaml"]
    print("archc check latency (fresh process, wall):")
    latency = check_latency(specs, 3 if args.quick else 7)
    summary = (
        [
            {
                "metric": (
                    f"compiled / hand-written {r['model']}, "
                    f"{r['mode']} batch {r['batch']} ({args.device})"
                ),
                "value": round(float(r["ratio"]), 3),
                "unit": (
                    f"x time (per-round quartiles {r['ratio_iqr'][0]:.3f}-{r['ratio_iqr'][1]:.3f})"
                ),
                "target": "<= 1.02",
            }
            for r in overhead
        ]
        + [
            {
                "metric": (
                    "checkpoint: true on ResNet-18 CIFAR's blocks, "
                    f"train step batch {memory[1]['batch']}: peak RSS"
                ),
                "value": round(
                    float(memory[1]["peak_above_model_mib"])
                    / max(float(memory[0]["peak_above_model_mib"]), 1e-9),
                    3,
                ),
                "unit": (
                    f"x the plain model's ({memory[1]['peak_above_model_mib']:.0f} "
                    f"vs {memory[0]['peak_above_model_mib']:.0f} MiB)"
                ),
                "target": "< 1",
            },
            {
                "metric": (
                    "checkpoint: true on ResNet-18 CIFAR's blocks, train "
                    f"step batch {memory[1]['batch']}: saved for backward"
                ),
                "value": round(
                    float(memory[1]["saved_for_backward_mib"])
                    / float(memory[0]["saved_for_backward_mib"]),
                    3,
                ),
                "unit": (
                    f"x the plain model's ({memory[1]['saved_for_backward_mib']:.0f} "
                    f"vs {memory[0]['saved_for_backward_mib']:.0f} MiB)"
                ),
                "target": "< 1",
            },
        ]
        + [
            {
                "metric": f"archc check {r['spec']} (fresh process)",
                "value": round(float(r["wall_s"]), 3),
                "unit": "s",
                "target": "< 0.5",
            }
            for r in latency
        ]
    )
    write_result(
        f"compile_{args.device}",
        {
            "command": "python benchmarks/bench_compile.py" + (" --quick" if args.quick else ""),
            "summary": summary,
            "runtime_overhead": overhead,
            "checkpoint_memory": memory,
            "check_latency": latency,
        },
    )


if __name__ == "__main__":
    main()
