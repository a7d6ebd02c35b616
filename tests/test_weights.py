"""`--init-from`: loading saved state_dicts (torchvision's included) into
compiled specs, and the errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torchvision

from archc import api
from archc.cli import main
from archc.weights import WeightsError, load_weights, mismatch_report, read_state_dict

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"


class NotATensor:
    """A pickled Python object: torch.load(weights_only=True) must refuse it."""

    def __init__(self) -> None:
        self.value = 1


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return path, model


def lenet(**overrides: object) -> torch.nn.Module:
    return api.build(SPECS / "lenet5.yaml", **overrides)


def test_torchvision_weights_load_into_the_spec(
    resnet18_file: tuple[Path, torch.nn.Module],
) -> None:
    path, theirs = resnet18_file
    ours = api.build(SPECS / "resnet18.yaml").eval()
    load_weights(ours, path)
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


@pytest.mark.parametrize("wrap", ["raw", "state_dict", "model", "module.", "_orig_mod."])
def test_accepted_layouts(tmp_path: Path, wrap: str) -> None:
    torch.manual_seed(1)
    source = lenet()
    state = source.state_dict()
    payload: object
    if wrap == "raw":
        payload = state
    elif wrap in ("state_dict", "model"):
        payload = {wrap: state, "epoch": 3, "note": "extra entries are ignored"}
    else:
        payload = {wrap + k: v for k, v in state.items()}
    torch.save(payload, tmp_path / "w.pt")
    target = lenet()
    load_weights(target, tmp_path / "w.pt")
    assert all(torch.equal(target.state_dict()[k], v) for k, v in state.items())


def test_archc_build_save_then_init_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`archc build --save` writes {"state_dict": ..., "spec_text":
    ...}; --init-from reads it back."""
    saved = tmp_path / "lenet.pt"
    assert (
        main(["build", str(SPECS / "lenet5.yaml"), "--save", str(saved), "--format", "json"]) == 0
    )
    assert (
        main(["build", str(SPECS / "lenet5.yaml"), "--init-from", str(saved), "--format", "json"])
        == 0
    )
    capsys.readouterr()
    model = lenet()
    load_weights(model, saved)
    expected = torch.load(saved, weights_only=True)["state_dict"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())


def test_missing_keys_are_listed_with_counts(resnet18_file: tuple[Path, torch.nn.Module]) -> None:
    path, theirs = resnet18_file
    ours = api.build(SPECS / "resnet34.yaml")
    missing = [k for k in ours.state_dict() if k not in theirs.state_dict()]
    with pytest.raises(WeightsError) as info:
        load_weights(ours, path)
    message = str(info.value)
    assert (
        f"missing {len(missing)}: " + ", ".join(missing[:10]) + f" (+{len(missing) - 10} more)"
        in message
    )
    assert "unexpected" not in message and "shape mismatch" not in message


def test_shape_mismatch_names_both_shapes(resnet18_file: tuple[Path, torch.nn.Module]) -> None:
    path, _ = resnet18_file
    ours = api.build(SPECS / "resnet18.yaml", num_classes=10)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(
        WeightsError,
        match=re.escape(
            "shape mismatch 2: fc.weight [1000, 512] vs "
            "model [10, 512], fc.bias [1000] vs model [10]"
        ),
    ):
        load_weights(ours, path)
    assert all(torch.equal(before[k], v) for k, v in ours.state_dict().items()), (
        "a failed load changes nothing"
    )


def test_unexpected_and_missing_together(tmp_path: Path) -> None:
    state = lenet().state_dict()
    state["layer3.fc4.weight"] = torch.zeros(2, 2)
    del state["layer1.conv1.bias"]
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(WeightsError) as info:
        load_weights(lenet(), tmp_path / "w.pt")
    assert str(info.value) == (
        f"weights in {tmp_path / 'w.pt'} do not fit the model: "
        "missing 1: layer1.conv1.bias; unexpected 1: layer3.fc4.weight"
    )


def test_mismatch_report_is_empty_when_it_fits() -> None:
    state = lenet().state_dict()
    assert mismatch_report(state, dict(state)) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"this is not a torch file", "is not a readable torch file"),
        ([1, 2, 3], "holds no model weights"),
        ({"epoch": 3}, "holds no model weights"),
        ({"state_dict": {"a": 1}}, "holds no model weights"),
        ({"w": NotATensor()}, "refusing to load"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "w.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(WeightsError, match=re.escape(message)):
        read_state_dict(path)


def test_cli_reports_a_mismatch_and_exits_1(
    resnet18_file: tuple[Path, torch.nn.Module], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = resnet18_file
    assert (
        main(
            [
                "build",
                str(SPECS / "resnet18.yaml"),
                "--set",
                "num_classes=10",
                "--init-from",
                str(path),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert (
        err.startswith("error: --init-from: weights in")
        and "fc.weight [1000, 512] vs model [10, 512]" in err
    )
