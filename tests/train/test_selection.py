"""Training like Lightning/Keras: a validation split chooses best.pt (never the test split), early
stopping, top-5, TensorBoard, `archc.train`'s result; `--input` recorded
and rebuilt from checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import archc
from archc.compiler.train_config import TrainConfig
from archc.trainer.api import train
from archc.trainer.checkpoint import load_checkpoint
from archc.trainer.data import load_dataset
from archc.trainer.validation import hold_out
from tests.conftest import archc_here
from tests.train.conftest import FAST, tiny_cnn


def test_the_validation_split_is_stratified_fixed_and_disjoint() -> None:
    data = load_dataset(TrainConfig(dataset="digits"))
    rest, val_x, val_y = hold_out(data, 0.1)
    again = hold_out(data, 0.1)
    assert torch.equal(val_y, again[2]) and torch.equal(
        val_x, again[1]
    )  # the same images whatever the run's seed
    assert len(rest.train_y) + len(val_y) == len(data.train_y) and len(val_y) == 144
    counts = torch.bincount(val_y, minlength=10)
    assert counts.min() >= 13 and counts.max() <= 16  # about a tenth of each class
    everything = torch.cat([rest.train_x, val_x]).flatten(
        1
    )  # a partition: every training image exactly once
    assert torch.equal(everything.unique(dim=0), data.train_x.flatten(1).unique(dim=0)) and len(
        everything
    ) == len(data.train_x)
    assert torch.equal(rest.test_x, data.test_x)  # the test split is untouched


def test_best_checkpoint_is_chosen_on_validation_never_on_test(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = train(tiny_cnn(), **FAST | {"epochs": 4, "lr": 0.2}, out=str(out))
    history = result.history
    val = [row["val_acc"] for row in history]
    best_epoch = val.index(max(val)) + 1  # the first epoch reaching the best validation accuracy
    assert result["best_epoch"] == best_epoch and result["best_val_acc"] == max(val)
    assert result["best_test_acc"] == history[best_epoch - 1]["test_acc"]
    assert load_checkpoint(out / "best.pt")["epoch"] == best_epoch
    assert result["dataset"]["val_images"] == 26 and result["dataset"]["train_images"] == 230
    # without a validation split nothing chooses: best.pt is the last epoch
    noval = tmp_path / "noval"
    result = train(tiny_cnn(), **FAST | {"epochs": 2, "val_split": 0}, out=str(noval))
    assert (
        result["best_epoch"] == 2
        and result["best_val_acc"] is None
        and "val_acc" not in result.history[0]
    )
    # the same state is written once: best.pt is a hard link to last.pt's file
    assert (noval / "best.pt").stat().st_ino == (noval / "last.pt").stat().st_ino


def test_patience_stops_early_and_resume_keeps_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    # lr 0 never improves after epoch 1: patience 2 stops after epoch 3
    result = train(tiny_cnn(), **FAST | {"epochs": 6, "lr": 1e-12, "patience": 2}, out=str(out))
    assert result["stopped_early"] and result["epochs_completed"] == 3 and result["best_epoch"] == 1
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    again = train(
        tiny_cnn(), **FAST | {"epochs": 6, "lr": 1e-12, "patience": 2}, out=str(out), resume=True
    )
    assert again["epochs_completed"] == 3 and again["stopped_early"]  # nothing more to do
    with pytest.raises(archc.trainer.errors.TrainError, match="patience needs a validation split"):
        train(tiny_cnn(), **FAST | {"patience": 2, "val_split": 0}, out=str(tmp_path / "x"))


def test_top5_where_there_are_more_than_10_classes(tmp_path: Path) -> None:
    result = train(
        tiny_cnn(classes=12),
        **FAST | {"synthetic_classes": 12, "epochs": 1},
        out=str(tmp_path / "run"),
    )
    row = result.history[0]
    assert 0 <= row["test_acc"] <= row["test_top5"] <= 1 and row["val_acc"] <= row["val_top5"]
    assert result["best_test_top5"] == row["test_top5"]
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert header == (
        "epoch,train_loss,train_acc,val_loss,val_acc,val_top5,"
        "test_loss,test_acc,test_top5,lr,epoch_time_s,images_per_s"
    )
    ten = train(
        tiny_cnn(classes=10),
        **FAST | {"synthetic_classes": 10, "epochs": 1},
        out=str(tmp_path / "ten"),
    )
    assert "test_top5" not in ten.history[0]  # with 10 classes or fewer top-5 says little


def test_tensorboard_log_holds_each_epoch_once_after_resume(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # killed in epoch 2, after epoch 1's checkpoint and log
        train(Interrupted(after=12), **FAST | {"epochs": 3}, out=str(out))
    train(Interrupted(after=10**9), **FAST | {"epochs": 3}, out=str(out), resume=True)
    logs = EventAccumulator(str(out / "tensorboard"))
    logs.Reload()
    assert {"loss/train", "accuracy/val", "accuracy/test", "lr"} <= set(logs.Tags()["scalars"])
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = logs.Scalars("accuracy/val")
    assert [e.step for e in events] == [1, 2, 3]
    assert [e.value for e in events] == pytest.approx([row["val_acc"] for row in history])
    train(tiny_cnn(), **FAST | {"epochs": 1, "tensorboard": False}, out=str(tmp_path / "off"))
    assert not (tmp_path / "off" / "tensorboard").exists()


class Interrupted(torch.nn.Module):
    """tiny_cnn, interrupted (as by Ctrl-C) at its `after`-th forward."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.net, self.after, self.calls = tiny_cnn(), after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.net(x)


def test_archc_train_returns_the_model_the_history_and_the_row(
    tiny_spec: Path, tmp_path: Path
) -> None:
    result = archc.train(tiny_spec, out=str(tmp_path / "run"), log="quiet", epochs=2)
    assert isinstance(result.model, torch.nn.Module) and [r["epoch"] for r in result.history] == [
        1,
        2,
    ]
    assert result["status"] == "completed" and result.record == json.loads(
        (tmp_path / "run" / "result.json").read_text()
    )
    assert (
        repr(result).startswith("TrainResult(tiny  synthetic  epochs 2  best epoch ")
        and len(repr(result)) < 300
    )
    x = torch.zeros(1, 3, 8, 8)
    state = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert all(torch.equal(v, state[k]) for k, v in result.model.state_dict().items())
    assert result.model.eval()(x).shape == (1, 4)


def test_evaluate_rebuilds_the_trained_input_from_the_checkpoint(
    tiny_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from archc.cli import main

    out = (
        tmp_path / "run"
    )  # tiny's linear layer depends on the input size: 12x12 makes another model than 8x8
    record = train(
        tiny_spec,
        out=str(out),
        input_shape=(3, 12, 12),
        synthetic_shape=(3, 12, 12),
        epochs=1,
        log="quiet",
    )
    assert record["overrides"]["input"] == [3, 12, 12] and record["dataset"]["input_shape"] == [
        3,
        12,
        12,
    ]
    capsys.readouterr()
    for args in ([str(tiny_spec)], []):
        assert main(["evaluate", *args, "--checkpoint", str(out / "best.pt"), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["test_acc"] == record["best_test_acc"]
    assert (
        main(["evaluate", str(tiny_spec), "--checkpoint", str(out / "best.pt"), "--input", "3,8,8"])
        == 1
    )
    assert "do not fit the model" in capsys.readouterr().err


@pytest.mark.slow
def test_input_and_set_are_recorded_and_evaluate_rebuilds_from_the_checkpoint_alone(
    tmp_path: Path,
) -> None:
    # resnet20 is a 3x32x32 CIFAR spec; trained on digits as 1x8x8 with 5 stages' widths halved
    out = tmp_path / "run"
    result = archc_here(
        "train",
        "specs/resnet20.yaml",
        "--dataset",
        "digits",
        "--input",
        "1,8,8",
        "--set",
        "num_classes=10",
        "--epochs",
        "1",
        "--train-subset",
        "256",
        "--batch-size",
        "64",
        "--workers",
        "1",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "result.json").read_text())
    assert record["overrides"]["input"] == [1, 8, 8] and record["overrides"]["spec"] == {
        "num_classes": 10
    }
    assert record["dataset"]["input_shape"] == [1, 8, 8]
    spec = load_checkpoint(out / "best.pt")["spec"]
    assert (
        spec["input_shape"] == [1, 8, 8]
        and spec["overrides"] == {"num_classes": 10}
        and "name: resnet20" in spec["text"]
    )
    for args in (
        ["specs/resnet20.yaml"],
        [],
    ):  # with the spec file, or from the spec the checkpoint carries
        evaluated = archc_here("evaluate", *args, "--checkpoint", str(out / "best.pt"), "--json")
        assert evaluated.returncode == 0, evaluated.stderr
        assert json.loads(evaluated.stdout)["test_acc"] == record["best_test_acc"]
    # the same for a checkpoint of a comparison run with --input
    sweep = tmp_path / "cmp"
    result = archc_here(
        "compare",
        "specs/resnet20.yaml",
        "tests/specs/exp_tiny.yaml",
        "--input",
        "1,8,8",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--train-subset",
        "128",
        "--batch-size",
        "64",
        "--workers",
        "1",
        "--out",
        str(sweep),
    )
    assert result.returncode == 0, result.stderr
    run = next(p for p in sweep.iterdir() if p.name.startswith("resnet20"))
    assert json.loads((run / "result.json").read_text())["overrides"]["input"] == [1, 8, 8]
    evaluated = archc_here("evaluate", "--checkpoint", str(run / "best.pt"))
    assert evaluated.returncode == 0 and evaluated.stdout.startswith(
        "resnet20 on digits (360 test images): accuracy"
    )
