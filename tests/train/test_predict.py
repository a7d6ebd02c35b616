"""`archc predict` / `archc.predict` and torchvision's published weights (`--pretrained`), offline:
weights files are placed where torch.hub's cache looks, named as torchvision names them."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import torchvision
from PIL import Image

import archc
from archc import zoo
from archc.compiler.train_config import TrainConfig
from archc.pretrained import DENSENET_KEYS, cache_path, load_pretrained, names, published
from archc.trainer.data import load_dataset
from archc.trainer.evaluate import evaluate
from archc.weights import WeightsError
from tests.conftest import archc_here


def _place_weights(torch_home: Path, name: str, seed: int = 1) -> torch.nn.Module:
    """torchvision's model NAME with seeded random weights, saved
    where torch.hub would cache them."""
    torch.manual_seed(seed)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    reference = torchvision.models.get_model(
        name,
        num_classes=1000,
        **({"aux_logits": True, "init_weights": True} if name == "googlenet" else {}),
    )
    target = torch_home / "hub" / "checkpoints" / Path(urlparse(weights.url).path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference.state_dict(), target)
    return reference.eval()


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def test_every_zoo_model_that_torchvision_publishes_has_its_weights() -> None:
    shared = set(zoo.names()) & set(torchvision.models.list_models(module=torchvision.models))
    assert (
        set(names()) == shared
        and {"alexnet", "resnet18", "vgg16_bn", "googlenet", "densenet121"} <= shared
    )
    for name in names():
        _, weights = published(name)
        assert weights.url.endswith(".pth") and len(weights.meta["categories"]) == 1000, name


def test_pretrained_weights_come_from_the_torch_hub_cache_and_give_torchvisions_outputs(
    torch_home: Path,
) -> None:
    reference = _place_weights(torch_home, "resnet18")
    model = archc.build("specs/resnet18.yaml").eval()
    note = load_pretrained(model, "resnet18")
    assert str(cache_path(published("resnet18")[1])) in note and str(torch_home) in note
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


@pytest.mark.slow
def test_googlenet_without_aux_heads_drops_them_from_the_published_weights(
    torch_home: Path,
) -> None:
    reference = _place_weights(torch_home, "googlenet")
    model = archc.build("specs/googlenet.yaml").eval()
    load_pretrained(model, "googlenet")
    own = model.state_dict()
    assert not any(k.startswith("aux") for k in own)
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in own.items())


@pytest.mark.slow
def test_densenet_weights_with_old_style_keys_are_renamed_as_torchvision_does(
    torch_home: Path,
) -> None:
    import re

    reference = _place_weights(torch_home, "densenet121")
    target = cache_path(published("densenet121")[1])
    old = re.compile(
        DENSENET_KEYS.replace(r"\.((?:[12])", r"((?:[12])")
    )  # norm1.weight -> norm.1.weight, as published
    state = torch.load(target, weights_only=True)
    renamed = {
        (m.group(1) + "." + m.group(2) if (m := old.match(k)) else k): v for k, v in state.items()
    }
    assert any(".norm.1." in k for k in renamed)
    torch.save(renamed, target)
    model = archc.build("densenet121").eval()
    load_pretrained(model, "densenet121")
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())


def test_a_new_head_keeps_its_fresh_weights_and_other_mismatches_are_errors(
    torch_home: Path,
) -> None:
    reference = _place_weights(torch_home, "resnet18")
    model = archc.build("specs/resnet18.yaml", num_classes=10)
    fresh = model.fc.weight.detach().clone()
    note = load_pretrained(model, "resnet18")
    assert note.endswith("fc.weight, fc.bias kept fresh: the shapes differ (a new head)")
    assert torch.equal(model.fc.weight, fresh) and torch.equal(
        model.conv1.weight, reference.conv1.weight
    )
    with pytest.raises(WeightsError, match="does not fit resnet34: missing"):
        load_pretrained(archc.build("specs/resnet34.yaml"), "resnet34", "resnet18")
    with pytest.raises(
        WeightsError,
        match="lenet5 has no published torchvision weights; the zoo models that have: alexnet",
    ):
        load_pretrained(archc.build("specs/lenet5.yaml"), "lenet5")
    with pytest.raises(
        WeightsError, match=r"torchvision has no weights named 'resnet19' \(did you mean"
    ):
        published("x", "resnet19")


def test_offline_without_the_file_says_where_to_put_it(torch_home: Path) -> None:
    result = archc_here("predict", "resnet18", "--pretrained", "specs/resnet18.yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith(
        f"place that file at {torch_home}/hub/checkpoints/resnet18-f37072fd.pth"
    )


def test_predict_pretrained_prints_imagenet_names(torch_home: Path, tmp_path: Path) -> None:
    reference = _place_weights(torch_home, "resnet18")
    image = tmp_path / "photo.png"
    Image.fromarray((torch.rand(300, 400, 3) * 255).byte().numpy()).save(image)
    result = archc_here(
        "predict", "resnet18", "--pretrained", str(image), "--format", "json", "--top-k", "3"
    )
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(result.stdout)
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    with torch.no_grad():  # torchvision's own pipeline: its transforms, its model
        probs = reference(
            weights.transforms()(Image.open(image).convert("RGB")).unsqueeze(0)
        ).softmax(1)[0]
    top = probs.topk(3)
    assert [t["class"] for t in entry["top"]] == top.indices.tolist()
    assert [t["name"] for t in entry["top"]] == [
        weights.meta["categories"][i] for i in top.indices.tolist()
    ]
    assert [t["probability"] for t in entry["top"]] == pytest.approx(top.values.tolist(), rel=1e-4)
    table = archc_here("predict", "resnet18", "--pretrained", str(image), "--top-k", "1")
    assert table.returncode == 0 and weights.meta["categories"][top.indices[0]] in table.stdout


def test_predict_with_a_trained_checkpoint_agrees_with_evaluate(
    lenet5_spec: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    archc.train(
        lenet5_spec,
        out=str(out),
        epochs=1,
        log="quiet",
        workers=1,
        train_subset=400,
        tensorboard=False,
    )
    data = load_dataset(TrainConfig(dataset="digits"))
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(12):  # the test images as PNG files: 8x8 grey, exactly the stored pixels
        Image.fromarray(data.test_x[i, 0].numpy()).save(folder / f"{i:02d}.png")
    results = archc.predict(None, folder, checkpoint=out / "best.pt", top_k=10)
    assert [Path(r.image).name for r in results] == [f"{i:02d}.png" for i in range(12)]
    assert all(r.top[0][1] == str(r.top[0][0]) for r in results)  # digits' class names are "0".."9"
    report = evaluate(lenet5_spec, str(out / "best.pt"), test_subset=12)
    predicted = [r.top[0][0] for r in results]
    correct = sum(p == int(y) for p, y in zip(predicted, data.test_y[:12], strict=True))
    assert correct == sum(
        report["confusion"][i][i] for i in range(10)
    )  # the same model, the same preprocessing
    result = archc_here(
        "predict",
        str(lenet5_spec),
        "--checkpoint",
        str(out / "best.pt"),
        str(folder / "00.png"),
        "--top-k",
        "2",
    )
    assert (
        result.returncode == 0
        and result.stdout.startswith(str(folder / "00.png"))
        and "1. " in result.stdout
    )


def test_predict_refuses_clearly(lenet5_spec: Path, tiny_spec: Path, tmp_path: Path) -> None:
    state = tmp_path / "weights.pt"
    torch.save(archc.build(lenet5_spec).state_dict(), state)
    for args, message in (
        (
            ["specs/lenet5.yaml", "--checkpoint", str(state), "README.md"],
            "holds weights only: predict needs a training checkpoint",
        ),
        (
            ["specs/lenet5.yaml", "--checkpoint", str(state), str(tmp_path / "none.png")],
            "no such image or folder",
        ),
        (
            ["specs/lenet5.yaml", "--pretrained", "README.md"],
            "lenet5 has no published torchvision weights",
        ),
    ):
        result = archc_here("predict", *args)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert message in result.stderr, result.stderr
    result = archc_here("predict", "resnet18", "README.md")
    assert (
        result.returncode == 2
        and "one of the arguments --checkpoint --pretrained is required" in result.stderr
    )


@pytest.mark.slow
def test_train_from_pretrained_weights_with_a_new_head(torch_home: Path, tmp_path: Path) -> None:
    reference = _place_weights(torch_home, "resnet18")
    out = tmp_path / "run"
    result = archc_here(
        "train",
        "specs/resnet18.yaml",
        "--pretrained",
        "--set",
        "num_classes=4",
        "--input",
        "3,32,32",
        "--dataset",
        "synthetic",
        "--synthetic-size",
        "64,16",
        "--synthetic-classes",
        "4",
        "--batch-size",
        "32",
        "--epochs",
        "1",
        "--lr",
        "1e-9",
        "--workers",
        "1",
        "--out",
        str(out),
        "--val-split",
        "0",
        "--no-tensorboard",
    )
    assert result.returncode == 0, result.stderr
    assert (
        "initialised from torchvision's ResNet18_Weights.IMAGENET1K_V1" in result.stderr
        and "fc.weight, fc.bias kept fresh" in result.stderr
    )
    trained = torch.load(out / "last.pt", weights_only=True)["model"]
    torch.testing.assert_close(
        trained["layer1.0.conv1.weight"], reference.layer1[0].conv1.weight, atol=1e-6, rtol=0
    )
    record = json.loads((out / "result.json").read_text())
    assert record["config"]["pretrained"] and record["overrides"]["input"] == [3, 32, 32]
