"""Runtime overhead of compiled modules vs hand-written ones, and `archc check` latency.

    python benchmarks/bench_compile.py [--quick] [--device cpu|cuda]

(1) ResNet-18 at CIFAR size, built from benchmarks/specs/resnet18_cifar.yaml, against the
hand-written torchvision-style module in tests/reference_models.py with the same weights:
eval forward and SGD train step at batch 1 and 32, median of interleaved rounds. Target <= 1.02.
(2) Wall time of `archc check` on zoo specs, in a fresh process. Target < 0.5 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from common import ROOT, interleaved, median, ratio, write_result


def runtime_overhead(rounds: int, batches: list[int], device: str) -> list[dict[str, object]]:
    import torch

    from archc.api import build
    from tests.reference_models import resnet18_cifar_handwritten

    torch.manual_seed(0)
    reference = resnet18_cifar_handwritten().to(device)
    compiled = build(ROOT / "benchmarks/specs/resnet18_cifar.yaml").to(device)
    compiled.load_state_dict(reference.state_dict(), strict=True)
    rows = []
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for batch in batches:
        x = torch.randn(batch, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        for mode in ("eval", "train"):
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

                    def step(model: torch.nn.Module = model, opt: torch.optim.Optimizer = opt,
                             x: torch.Tensor = x, y: torch.Tensor = y) -> None:
                        opt.zero_grad(set_to_none=True)
                        torch.nn.functional.cross_entropy(model(x), y).backward()
                        opt.step()
                        sync()
                candidates[label] = step
            n = rounds if batch <= 8 else max(3, rounds // 2)
            times = interleaved(candidates, rounds=n)
            per_round = sorted(a / h for a, h in zip(times["archc"], times["hand-written"], strict=True))
            row = {"batch": batch, "mode": mode, "rounds": n,
                   "archc_ms": 1e3 * median(times["archc"]), "handwritten_ms": 1e3 * median(times["hand-written"]),
                   "ratio": ratio(times, "archc", "hand-written"),
                   "ratio_iqr": [per_round[n // 4], per_round[(3 * n) // 4]]}
            rows.append(row)
            print(f"  batch {batch:>3} {mode:<5}  archc {row['archc_ms']:8.2f} ms   hand-written "
                  f"{row['handwritten_ms']:8.2f} ms   ratio {row['ratio']:.3f} "
                  f"(per-round quartiles {row['ratio_iqr'][0]:.3f}-{row['ratio_iqr'][1]:.3f})")
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about a minute)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rounds = 10 if args.quick else 40
    print("runtime overhead, ResNet-18 CIFAR (archc / hand-written; 1.00 = same speed):")
    overhead = runtime_overhead(rounds, [1, 32], args.device)
    specs = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "specs").glob("*.yaml"))
             if p.stem in ("resnet50", "googlenet", "inception_v3", "densenet_bc_cifar", "lenet5")]
    specs = specs or ["benchmarks/specs/resnet18_cifar.yaml"]
    print("archc check latency (fresh process, wall):")
    latency = check_latency(specs, 3 if args.quick else 7)
    summary = [
        {"metric": f"compiled / hand-written ResNet-18 CIFAR, {r['mode']} batch {r['batch']} ({args.device})",
         "value": round(float(r["ratio"]), 3),
         "unit": f"x time (per-round quartiles {r['ratio_iqr'][0]:.3f}-{r['ratio_iqr'][1]:.3f})", "target": "<= 1.02"}
        for r in overhead
    ] + [
        {"metric": f"archc check {r['spec']} (fresh process)", "value": round(float(r["wall_s"]), 3),
         "unit": "s", "target": "< 0.5"}
        for r in latency
    ]
    write_result(f"compile_{args.device}", {"command": "python benchmarks/bench_compile.py" + (" --quick" if args.quick else ""),
                                            "summary": summary, "runtime_overhead": overhead, "check_latency": latency})


if __name__ == "__main__":
    main()
