"""`archc evaluate SPEC --pretrained --dataset imagefolder:VAL` scores torchvision's published
weights as torchvision does, so it reproduces their published top-1/top-5 on a user's ImageNet.

Offline proof of the mechanics: on a generated ImageNet-layout val folder (1000 class folders, a few
images of assorted sizes and modes), archc feeds the model exactly the tensors torchvision's
reference evaluation (ImageFolder + weights.transforms() + DataLoader) produces, in ImageFolder's
class order, and reports the top-1/top-5 of a hand-written torchvision evaluation loop. The weights
file is generated and placed where torch.hub looks (as tests/train/test_predict.py does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

import archc.trainer.evaluate as evaluate_module
from archc.compiler.train_config import TrainConfig
from archc.pretrained import names, preprocessing, published
from archc.trainer.distributed import DistInfo
from archc.trainer.evaluate import evaluate
from archc.trainer.feed import Feed, open_feed
from archc.trainer.stream import EvalPreset
from tests.conftest import archc_here

CLASSES = 1000
# (class index, (width, height), PIL mode, file format): larger and smaller than the 232-pixel
# resize, portrait and landscape, grey, palette, RGBA and CMYK files, as ImageNet's val set has
IMAGES = [
    (0, (300, 225), "RGB", "JPEG"), (0, (180, 240), "L", "JPEG"), (1, (500, 375), "RGB", "JPEG"),
    (1, (232, 232), "RGBA", "PNG"), (2, (150, 100), "P", "PNG"), (2, (333, 500), "CMYK", "JPEG"),
    (3, (240, 320), "RGB", "PNG"), (CLASSES - 1, (256, 300), "RGB", "JPEG"),
]  # fmt: skip
CONTENDERS = [0, 1, 2, 3, 4, 5, CLASSES - 1]  # the classes the head may predict: top-1, top-5 vary
CPU = torch.device("cpu")


def imagenet_val(root: Path) -> Path:
    """ImageNet's val layout: VAL/nXXXXXXXX/*.JPEG for 1000 sorted synset-like folders."""
    rng = np.random.default_rng(0)
    folders = [root / f"n{1440764 + 7919 * k:08d}" for k in range(CLASSES)]
    for folder in folders:
        folder.mkdir(parents=True)
    for i, (label, (w, h), mode, fmt) in enumerate(IMAGES):
        gradient = np.linspace(0, 255, w)[None, :, None] * np.linspace(0.2, 1, h)[:, None, None]
        pixels = np.clip(gradient + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        name = f"ILSVRC2012_val_{i:08d}.{'JPEG' if fmt == 'JPEG' else 'png'}"
        Image.fromarray(pixels).convert(mode).save(folders[label] / name, format=fmt)
    return root


def place_resnet50(torch_home: Path) -> Any:
    """Seeded random ResNet-50 weights as torchvision's DEFAULT file, the head narrowed to
    CONTENDERS."""
    torch.manual_seed(3)
    weights = torchvision.models.ResNet50_Weights.DEFAULT
    model = torchvision.models.resnet50()
    with torch.no_grad():
        others = torch.ones(CLASSES, dtype=torch.bool)
        others[CONTENDERS] = False
        model.fc.weight[others] = 0
        model.fc.bias[others] = -1e4
    target = torch_home / "hub" / "checkpoints" / Path(urlparse(weights.url).path).name
    target.parent.mkdir(parents=True)
    torch.save(model.state_dict(), target)
    return weights


def reference_evaluation(val: Path, weights: Any) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """torchvision's reference loop: ImageFolder, the weights' transforms, its own ResNet-50.
    Returns (images, labels, top-1 hits, top-5 hits)."""
    model = torchvision.models.resnet50(weights=weights).eval()
    dataset = ImageFolder(str(val), transform=weights.transforms(), allow_empty=True)
    images, labels, top1, top5 = [], [], 0, 0
    with torch.no_grad():
        for x, y in DataLoader(dataset, batch_size=4):
            logits = model(x)
            top1 += int((logits.argmax(1) == y).sum())
            top5 += int((logits.topk(5).indices == y[:, None]).any(1).sum())
            images.append(x)
            labels.append(y)
    return torch.cat(images), torch.cat(labels), top1, top5


def evaluation_feed(dataset: str, preset: EvalPreset) -> Feed:
    """The feed `archc evaluate --pretrained` opens, for the given preprocessing."""
    cfg = TrainConfig(dataset=dataset, loader_workers=0)
    return open_feed(cfg, (3, preset.crop, preset.crop), DistInfo(), CPU, None, whole_test=True,
                     augment_train=False, preset=preset)  # fmt: skip


@pytest.mark.slow  # two ResNet-50 evaluations; the quick loop has the tensor tests below
def test_pretrained_evaluation_feeds_torchvisions_tensors_and_gives_its_top1_top5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = place_resnet50(tmp_path / "torch")
    val = imagenet_val(tmp_path / "val")
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    eval_batches = evaluate_module.eval_batches

    def spy(model, batches, *args):  # type: ignore[no-untyped-def]
        kept = [(x.clone(), y.clone()) for x, y in batches]
        seen.extend(kept)
        return eval_batches(model, kept, *args)

    monkeypatch.setattr(evaluate_module, "eval_batches", spy)
    report = evaluate("resnet50", pretrained=True, dataset=f"imagefolder:{val}", eval_batch_size=4,
                      loader_workers=0, device="cpu")  # fmt: skip
    images, labels, top1, top5 = reference_evaluation(val, weights)
    assert report["classes"] == ImageFolder(str(val), allow_empty=True).classes
    assert torch.equal(torch.cat([y for _, y in seen]), labels)
    # bit for bit: Resize 232, CenterCrop 224, normalise
    assert torch.equal(torch.cat([x for x, _ in seen]), images)
    assert report["preprocessing"].startswith("Resize 232 (bilinear), CenterCrop 224")
    assert report["test_images"] == len(IMAGES)
    assert report["checkpoint"] == f"torchvision:{weights}"
    assert report["test_acc"] == top1 / len(IMAGES) and report["test_top5"] == top5 / len(IMAGES)
    assert 0 < top1 < top5 < len(IMAGES)  # the figures discriminate: neither none nor all


def test_every_published_preprocessing_gives_torchvisions_tensors(tmp_path: Path) -> None:
    """Each distinct weights.transforms() of the zoo's published weights (sizes 224-600, bilinear
    and bicubic, ImageNet's or [-1, 1] constants), as archc's streaming feed applies it."""
    folder = tmp_path / "val"
    for label, (w, h), mode, fmt in IMAGES[:4]:
        (folder / f"c{label}").mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(label).integers(0, 256, (h, w, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).convert(mode)
        image.save(folder / f"c{label}" / f"{w}x{h}.{fmt}", format=fmt)
    presets = {}
    for name in names():
        transforms = preprocessing(*published(name), None)
        presets.setdefault(EvalPreset.of(transforms), transforms)
    assert len(presets) >= 15 and {p.interpolation for p in presets} == {"bilinear", "bicubic"}
    for preset, transforms in presets.items():
        x, y = next(evaluation_feed(f"imagefolder:{folder}", preset).test_batches(len(IMAGES)))
        reference = ImageFolder(str(folder), transform=transforms)
        assert torch.equal(y, torch.tensor(reference.targets))
        assert torch.equal(x, torch.stack([image for image, _ in reference])), preset.describe()


def test_the_imagenet_recipe_evaluates_as_torchvision_evaluates_v1_weights(tmp_path: Path) -> None:
    """`--checkpoint FILE --recipe imagenet` (a state_dict such as ResNet-50's IMAGENET1K_V1):
    the recipe's Resize 256, CenterCrop 224 and constants are those weights' transforms()."""
    folder = tmp_path / "val"
    for label, (w, h), mode, fmt in IMAGES:
        (folder / f"c{label:03d}").mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(label).integers(0, 256, (h, w, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).convert(mode)
        image.save(folder / f"c{label:03d}" / f"{w}x{h}.{fmt}", format=fmt)
    cfg = TrainConfig(dataset=f"imagefolder:{folder}", recipe="imagenet", loader_workers=0)
    feed = open_feed(cfg, (3, 224, 224), DistInfo(), CPU, None, whole_test=True,
                     augment_train=False)  # fmt: skip
    x, y = next(feed.test_batches(len(IMAGES)))
    transforms = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.transforms()
    reference = ImageFolder(str(folder), transform=transforms)
    assert torch.equal(y, torch.tensor(reference.targets))
    assert torch.equal(x, torch.stack([image for image, _ in reference]))


def test_another_input_size_is_cropped_to_and_resized_in_the_weights_proportion() -> None:
    v2 = preprocessing(*published("resnet50"), (3, 112, 112))  # IMAGENET1K_V2: 232 / 224
    v1 = preprocessing(*published("resnet18"), (3, 112, 112))  # IMAGENET1K_V1: 256 / 224
    assert (v2.crop_size, v2.resize_size) == ([112], [116])
    assert (v1.crop_size, v1.resize_size) == ([112], [128])


def test_val_shards_give_the_same_tensors_as_the_val_folder(tmp_path: Path) -> None:
    """ImageNet's val split as webdataset shards (no train shards: evaluation needs none)."""
    from webdataset import TarWriter

    val = imagenet_val(tmp_path / "val")
    transforms = torchvision.models.ResNet50_Weights.DEFAULT.transforms()
    reference = ImageFolder(str(val), transform=transforms, allow_empty=True)
    shards = tmp_path / "shards"
    shards.mkdir()
    with TarWriter(str(shards / "val-000000.tar")) as sink:
        for i, (path, label) in enumerate(reference.samples):
            image = {Path(path).suffix.lower()[1:]: Path(path).read_bytes()}
            sink.write({"__key__": f"val{i:09d}", "cls": label, **image})
    (shards / "index.json").write_text(json.dumps({
        "format": "archc-shards", "classes": reference.classes, "train": [],
        "val": [{"name": "val-000000.tar", "count": len(IMAGES)}],
    }))  # fmt: skip
    preset = EvalPreset.of(preprocessing(*published("resnet50"), (3, 224, 224)))
    feed = evaluation_feed(f"shards:{shards}", preset)
    x, y = next(feed.test_batches(len(IMAGES)))
    assert feed.num_classes == CLASSES and torch.equal(y, torch.tensor(reference.targets))
    assert torch.equal(x, torch.stack([image for image, _ in reference]))


def test_pretrained_evaluation_refuses_a_folder_that_is_not_imagenets_val(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "four"
    for k in range(4):
        (folder / f"c{k}").mkdir(parents=True)
        Image.new("RGB", (40, 30)).save(folder / f"c{k}" / "a.png")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    result = archc_here(
        "evaluate", "resnet50", "--pretrained", "--dataset", f"imagefolder:{folder}"
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert ("has 4 class folders, but torchvision's ResNet50_Weights.IMAGENET1K_V2 predicts 1000 "
            "ImageNet classes") in result.stderr  # fmt: skip
    result = archc_here("evaluate", "resnet50", "--dataset", f"imagefolder:{folder}")
    assert result.returncode == 2
    assert "one of the arguments --checkpoint --pretrained is required" in result.stderr


def test_the_text_report_of_1000_classes_summarises_instead_of_tabulating(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from archc.cli import main

    per_class = [1.0] * CLASSES
    per_class[7], per_class[3] = 0.25, 0.5
    weights = "torchvision:ResNet50_Weights.IMAGENET1K_V2"
    report = {
        "spec": "resnet50", "checkpoint": weights, "dataset": "imagefolder:VAL",
        "test_images": 2000,
        "test_loss": 1.0, "test_acc": 0.8086, "test_top5": 0.9543,
        "classes": [f"n{k:08d}" for k in range(CLASSES)], "per_class_acc": per_class,
        "confusion": [], "preprocessing": "Resize 232 (bilinear), CenterCrop 224",
    }  # fmt: skip
    seen = {}

    def fake(spec, checkpoint, **kwargs):  # type: ignore[no-untyped-def]
        seen.update(kwargs, spec=spec, checkpoint=checkpoint)
        return report

    monkeypatch.setattr(evaluate_module, "evaluate", fake)
    args = [
        "evaluate",
        "resnet50",
        "--pretrained",
        "--dataset",
        "imagefolder:VAL",
        "--batch-size",
        "50",
    ]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert seen == {
        "spec": "resnet50", "checkpoint": None, "pretrained": True, "spec_overrides": {},
        "plugins": (), "input_shape": None, "dataset": "imagefolder:VAL", "eval_batch_size": 50,
    }  # fmt: skip
    assert lines == [
        "resnet50 on imagefolder:VAL (2000 test images): accuracy 80.86%, top-5 95.43%, "
        "loss 1.0000",
        f"weights: {weights}; preprocessing: Resize 232 (bilinear), CenterCrop 224",
        "lowest per-class accuracy: n00000007 25.00%, n00000003 50.00%, n00000000 100.00%, "
        "n00000001 100.00%, n00000002 100.00%",
        "per-class accuracy and the 1000x1000 confusion matrix: --format json",
    ]
