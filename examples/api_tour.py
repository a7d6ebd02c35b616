"""A tour of archc's Python API: load, analyze, build, and train by hand.

Run from the repository root: `python examples/api_tour.py` (a few seconds on a CPU; no download).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import archc

SPECS = Path(__file__).resolve().parent.parent / "specs"


def main() -> None:
    torch.manual_seed(0)

    # 1. Load: validated, parameters resolved; keyword arguments override the spec's params.
    spec = archc.load(SPECS / "lenet5.yaml", num_classes=5)
    print(f"loaded {spec.model.name}: input {list(spec.input_shape)}")

    # 2. Analyze: static per-layer rows and totals, without building anything.
    analysis = archc.analyze(spec)
    totals = analysis.totals()
    print(
        f"totals: {totals['params']:,} params, {totals['macs']:,} MACs, output {totals['output']}"
    )
    print("5 largest layers by params:")
    for row in sorted(analysis.rows(), key=lambda r: r["params"], reverse=True)[:5]:
        print(
            f"  {row['name']:<16} {row['label']:<24} "
            f"{row['params']:>8,} params  shape {row['shape']}"
        )

    # 3. Build: a plain nn.Module whose state_dict keys follow the spec's names.
    model = archc.build(spec)
    assert sum(p.numel() for p in model.parameters()) == totals["params"]
    print("state_dict keys:", ", ".join(list(model.state_dict())[:4]), "...")

    # 4. Train one epoch by hand on a tiny synthetic data set (8 batches of 16 random images).
    inputs = torch.randn(128, *spec.input_shape)
    targets = torch.randint(0, 5, (128,))
    batches = list(zip(inputs.split(16), targets.split(16), strict=True))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    total_loss = correct = 0.0
    for x, y in batches:
        optimizer.zero_grad()
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
    print(
        f"epoch 1: loss {total_loss / len(inputs):.4f}, train accuracy {correct / len(inputs):.3f}"
    )

    model.eval()
    with torch.no_grad():
        print("eval output shape:", tuple(model(inputs[:4]).shape))


if __name__ == "__main__":
    main()
