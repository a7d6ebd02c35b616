"""Whether a spec fits a dataset, decided without torch or data: for `--dry-run` preflight checks
and for the trainer's advice when a model and a dataset disagree.

KNOWN holds the image shape and class count of each dataset whose shape is fixed; the trainer's
loaders produce exactly these (tests/train/test_fit.py checks them against the loaders).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from archc.compiler.train_config import TrainConfig

if TYPE_CHECKING:
    from archc.compiler.validate import LoadedSpec

KNOWN: dict[str, tuple[tuple[int, int, int], int]] = {
    "cifar10": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100),
    "mnist": ((1, 28, 28), 10),
    "fashion_mnist": ((1, 28, 28), 10),
    "kmnist": ((1, 28, 28), 10),
    "digits": ((1, 8, 8), 10),
}


def dataset_input(
    cfg: TrainConfig, spec_input: tuple[int, ...]
) -> tuple[tuple[int, ...] | None, int | None]:
    """(the input the model will see, number of classes) for cfg's dataset; None where only the
    data can tell (an image folder without --resize, a dataset from a plugin)."""
    if cfg.dataset == "synthetic":
        shape = cfg.synthetic_shape or (tuple(spec_input) if len(spec_input) == 3 else (3, 32, 32))
        classes: int | None = cfg.synthetic_classes
    elif cfg.dataset in KNOWN:
        shape, classes = KNOWN[cfg.dataset]
    else:
        return None, None
    return ((shape[0], *cfg.resize) if cfg.resize else tuple(shape)), classes


def mismatch(spec: LoadedSpec, given: tuple[int, ...], dataset: str) -> str:
    """`NAME takes input AxBxC but DATASET gives ...; pass ...`: the message for a model whose input
    is not the dataset's, with fixes that compile."""
    expected = tuple(spec.input_shape)
    return (
        f"{spec.name} takes input {_fmt(expected)} but "
        f"{dataset} gives {_fmt(given)}; {hint(spec, given)}"
    )


def hint(spec: LoadedSpec, given: tuple[int, ...]) -> str:
    """Fixes that work, checked by compiling the spec with them: --resize to the spec's size (same
    channels), the dataset's shape as --input, or --input with its channels plus --resize."""
    expected = tuple(spec.input_shape)
    if len(expected) != len(given) or len(expected) < 2:
        return "check the model's input"
    sizes = expected[1:]
    resize = (
        f"--resize {sizes[0]}" if len(set(sizes)) == 1 else "--resize " + ",".join(map(str, sizes))
    )
    candidates: list[tuple[tuple[int, ...] | None, str]] = [(given, f"pass --input {_csv(given)}")]
    if expected[0] == given[0]:
        candidates.insert(0, (None, f"pass {resize}"))  # the spec as designed, the images resized
    elif (given[0], *sizes) != given:
        channels = (given[0], *sizes)
        candidates.append((channels, f"pass --input {_csv(channels)} {resize}"))
    working = [text for shape, text in candidates if _compiles(spec, shape)]
    return (
        " or ".join(working[:2]) if working else f"the spec takes {_fmt(expected)}: check its input"
    )


def _compiles(spec: LoadedSpec, input_shape: tuple[int, ...] | None) -> bool:
    """Whether the spec compiles for input_shape (None: its own) and outputs class scores."""
    from archc.api import compile_graph
    from archc.errors import SpecError

    try:
        graph = compile_graph(spec, input_shape=input_shape)
    except SpecError:
        return False
    return len(graph.shape_of(graph.output)) == 1


def _csv(shape: tuple[int, ...]) -> str:
    return ",".join(str(d) for d in shape)


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)
