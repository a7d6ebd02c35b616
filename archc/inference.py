"""Inference behind `archc predict` and `archc.predict`: the top-k
classes of images, with class names.

Two sources of a model: a training checkpoint of archc (which records the spec, `--set`, `--input`,
the normalisation constants, the image size and the dataset's class names), or torchvision's
published weights for a zoo spec (`--pretrained`: ImageNet class names and preprocessing from
the weights' own meta and transforms).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archc.errors import ArchcError

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class PredictError(ArchcError):
    """Bad input to predict: no such image or spec, a checkpoint without what predict needs."""


@dataclass
class Prediction:
    """One image's top-k classes: (class index, class name, probability), most likely first."""

    image: str
    top: list[tuple[int, str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "top": [{"class": i, "name": n, "probability": p} for i, n, p in self.top],
        }

    def __str__(self) -> str:
        return f"{self.image}: " + ", ".join(f"{name} {p:.1%}" for _, name, p in self.top)


@dataclass
class Predictor:
    """A model in eval mode and the preprocessing and class names that go with it."""

    model: torch.nn.Module
    preprocess: Callable[[Image], torch.Tensor]  # -> (C, H, W) float tensor as the model takes it
    classes: list[str]
    mode: str  # PIL mode images are converted to: "L" or "RGB"
    device: torch.device | None

    def __call__(self, paths: list[Path], top_k: int = 5) -> list[Prediction]:
        import torch
        from PIL import Image, UnidentifiedImageError

        predictions = []
        for path in paths:
            try:
                with Image.open(path) as image:
                    x = self.preprocess(image.convert(self.mode))
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                raise PredictError(f"cannot read image {path}: {exc}") from None
            with torch.no_grad():
                out = self.model(x.unsqueeze(0).to(self.device))
            logits = (out[0] if isinstance(out, (tuple, list)) else out).float()
            probs = logits.softmax(dim=1)[0]
            values, indices = probs.topk(min(top_k, probs.numel()))
            top = [
                (int(i), self._name(int(i)), float(v)) for v, i in zip(values, indices, strict=True)
            ]
            predictions.append(Prediction(str(path), top))
        return predictions

    def _name(self, index: int) -> str:
        return self.classes[index] if index < len(self.classes) else str(index)


def predict(
    spec: str | Path | None,
    images: str | Path | list[str | Path],
    *,
    checkpoint: str | Path | None = None,
    pretrained: bool = False,
    top_k: int = 5,
    spec_overrides: dict[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
    plugins: tuple[str, ...] = (),
    device: str = "auto",
) -> list[Prediction]:
    """Top-k classes of each image (files, or folders of them), from a checkpoint or, with
    pretrained=True, torchvision's published weights. spec is a spec file or a zoo name (None: the
    spec the checkpoint carries). Raises PredictError, archc.weights.WeightsError or SpecError."""
    paths = image_paths(images)
    predictor = load_predictor(
        spec,
        checkpoint=checkpoint,
        pretrained=pretrained,
        spec_overrides=spec_overrides,
        input_shape=input_shape,
        plugins=plugins,
        device=device,
    )
    return predictor(paths, top_k)


def load_predictor(
    spec: str | Path | None,
    *,
    checkpoint: str | Path | None = None,
    pretrained: bool = False,
    spec_overrides: dict[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
    plugins: tuple[str, ...] = (),
    device: str = "auto",
) -> Predictor:
    from archc.trainer.errors import TrainError
    from archc.trainer.runtime import resolve_device

    if pretrained == (checkpoint is not None):
        raise PredictError(
            "give --checkpoint FILE (a trained run) or "
            "--pretrained (torchvision's weights), one of them"
        )
    if spec is not None:
        spec = spec_path(spec)
    try:
        torch_device = resolve_device(device)
        if checkpoint is None:  # so --pretrained (checked above)
            if spec is None:
                raise PredictError("--pretrained needs a zoo spec or name, e.g. resnet18")
            predictor = _pretrained(spec, spec_overrides, input_shape, plugins)
        else:
            predictor = _from_checkpoint(
                spec, Path(checkpoint), spec_overrides, input_shape, plugins
            )
    except TrainError as exc:
        raise PredictError(str(exc)) from None
    predictor.model.to(torch_device).eval()
    predictor.device = torch_device
    return predictor


def spec_path(spec: str | Path) -> str:
    """A spec file or a zoo name (`resnet18`, `resnet152`; see `archc zoo`), checked to exist."""
    from archc import zoo

    if zoo.is_name(spec):
        zoo.resolve(str(spec))  # a SpecError with the closest names
    elif not Path(spec).is_file():
        raise PredictError(f"no such spec file: {spec}")
    return str(spec)


def image_paths(images: str | Path | list[str | Path]) -> list[Path]:
    """Image files as given; a folder gives its image files (sorted, not recursive)."""
    items = [images] if isinstance(images, (str, Path)) else list(images)
    paths: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(
                p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            if not found:
                raise PredictError(f"{item} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            paths += found
        elif item.is_file():
            paths.append(item)
        else:
            raise PredictError(f"no such image or folder: {item}")
    if not paths:
        raise PredictError("no images given")
    return paths


def _pretrained(
    spec: str,
    overrides: dict[str, Any] | None,
    input_shape: tuple[int, ...] | None,
    plugins: tuple[str, ...],
) -> Predictor:
    import torch

    from archc.pretrained import load_pretrained, preprocessing, published
    from archc.trainer.model import resolve_source

    source = resolve_source(spec, overrides, plugins, input_shape)
    entry, weights = published(source.name)
    torch.manual_seed(0)
    model = source.build()
    load_pretrained(model, source.name)
    transforms = preprocessing(entry, weights, source.input_shape)
    return Predictor(model, transforms, list(weights.meta["categories"]), "RGB", None)


def _from_checkpoint(
    spec: str | None,
    checkpoint: Path,
    overrides: dict[str, Any] | None,
    input_shape: tuple[int, ...] | None,
    plugins: tuple[str, ...],
) -> Predictor:
    import torch

    from archc.trainer.augment import BatchPipeline
    from archc.trainer.checkpoint import FORMAT, extract_state_dict, load_weights, read_torch_file
    from archc.trainer.model import checkpoint_source

    stored = read_torch_file(checkpoint)
    extract_state_dict(stored, checkpoint)
    info = (
        stored.get("dataset")
        if isinstance(stored, dict) and stored.get("format") == FORMAT
        else None
    )
    norm = stored.get("normalization") if isinstance(stored, dict) else None
    if (
        not isinstance(info, dict)
        or not isinstance(norm, dict)
        or "classes" not in info
        or "image_shape" not in info
    ):
        raise PredictError(
            f"{checkpoint} holds weights only: predict needs a training "
            "checkpoint of archc (best.pt or last.pt), which records "
            "the class names and preprocessing, or --pretrained"
        )
    source = checkpoint_source(spec, stored, checkpoint, overrides, plugins, input_shape)
    torch.manual_seed(0)
    model = source.build()
    load_weights(model, checkpoint)
    try:
        channels, height, width = (int(d) for d in info["image_shape"])
        mean = torch.tensor(norm["mean"], dtype=torch.float32)
        std = torch.tensor(norm["std"], dtype=torch.float32)
        resize = tuple(info["resize"]) if info.get("resize") else None
        classes = [str(c) for c in info["classes"]]
    except (KeyError, TypeError, ValueError, RuntimeError):
        raise PredictError(f"{checkpoint} is damaged: unusable preprocessing record") from None
    pipeline = BatchPipeline(
        mean,
        std,
        crop_padding=0,
        hflip=False,
        resize=resize,
        channels_last=False,
        device=torch.device("cpu"),
    )

    def preprocess(image: Image) -> torch.Tensor:
        """As the training images: the dataset's stored size and
        channels, then its normalisation."""
        import numpy as np
        from PIL import Image

        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
        pixels = pixels.unsqueeze(0) if pixels.dim() == 2 else pixels.permute(2, 0, 1)
        return pipeline.eval_batch(pixels.unsqueeze(0))[0]

    return Predictor(model, preprocess, classes, "L" if channels == 1 else "RGB", None)
