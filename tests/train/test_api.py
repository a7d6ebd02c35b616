"""archc.train() end to end on tiny tasks: records, files, guards and errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archc.compiler.train_config import TrainConfig
from archc.trainer.api import train
from archc.trainer.checkpoint import load_checkpoint
from archc.trainer.errors import CheckpointError, DataError, DivergenceError, LockError, TrainError
from archc.trainer.evaluate import evaluate
from archc.trainer.lock import RunLock
from archc.trainer.loop import objective
from archc.trainer.metrics import COLUMNS
from archc.trainer.model import head_weights
from tests.train.conftest import FAST, spec_file, tiny_cnn


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return tiny_cnn()


def test_a_run_writes_metrics_checkpoints_and_result(tmp_path: Path) -> None:
    out = tmp_path / "run"
    model = _tiny()
    record = train(model, **FAST, out=str(out))
    assert record["status"] == "completed" and record["epochs_completed"] == 2
    assert record["final_test_acc"] > 0.8 and 0 <= record["best_test_acc"] <= 1
    assert record["params"] == sum(p.numel() for p in model.parameters()) and record["macs"] > 0
    assert (
        record["images_per_s"] > 0
        and record["train_time_s"] > 0
        and record["peak_memory_bytes"] > 0
    )
    assert (
        record["peak_memory_kind"] == "peak_rss"
        and record["device"] == "cpu"
        and record["seed"] == 0
    )
    assert set(record["versions"]) >= {"archc", "torch", "torchvision", "python"}
    assert record["overrides"]["train"]["lr"] == 0.05 and record["dataset"]["input_shape"] == [
        3,
        8,
        8,
    ]
    assert json.loads((out / "result.json").read_text()) == record
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and tuple(rows[0]) == tuple(
        c for c in COLUMNS if "top5" not in c
    )
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2] and lines[1]["test_acc"] == record[
        "final_test_acc"
    ]
    assert (
        record.history == lines and record.model is model
    )  # archc.train's result: the row, the model, the history
    assert load_checkpoint(out / "last.pt")["epoch"] == 2 and (out / "best.pt").is_file()
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt",
        "last.pt",
        "metrics.csv",
        "metrics.jsonl",
        "result.json",
        "tensorboard",
    ]


def test_spec_path_trains_with_its_train_section(tiny_spec: Path, tmp_path: Path) -> None:
    from archc import build, load

    record = train(tiny_spec, out=str(tmp_path / "run"), log="quiet")
    assert record["spec"] == {
        "name": "tiny",
        "hash": load(tiny_spec).source_hash,
        "path": str(tiny_spec),
    }
    assert record["config"]["epochs"] == 2 and record["config"]["synthetic_size"] == [256, 64]
    assert record["macs"] == build(tiny_spec).archc_graph.total_macs > 8 * 8 * 8 * 27


def test_top_level_archc_train_is_the_trainer(tmp_path: Path) -> None:
    import archc

    assert (
        archc.train(_tiny(), **FAST | {"epochs": 1}, out=str(tmp_path / "run"))["status"]
        == "completed"
    )


class Exploding(nn.Module):
    """A model whose outputs turn NaN after `after` training forwards."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.net, self.after, self.calls = tiny_cnn(), after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                out = out * float("nan")
        return out


def test_nan_loss_stops_within_the_epoch_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    torch.manual_seed(0)
    model = Exploding(after=10)  # 8 steps per epoch: the 11th forward is epoch 2, step 3
    with pytest.raises(
        DivergenceError, match=r"loss is nan at epoch 2, step 3/8; kept .*last.pt \(epoch 1\)"
    ):
        train(model, **FAST | {"epochs": 3, "val_split": 0}, out=str(out))
    assert model.calls == 11  # stopped right there, not at the end of the epoch
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 1 and all(torch.isfinite(t).all() for t in state["model"].values())
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "diverged" and "loss is nan" in result["error"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_shape_mismatch_is_caught_before_training(tiny_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(
        DataError, match=r"tiny takes input 3x8x8 but synthetic gives 1x8x8; pass --input 1,8,8"
    ):
        train(tiny_spec, out=str(out), synthetic_shape=(1, 8, 8))
    with pytest.raises(
        DataError, match=r"tiny takes input 3x8x8 but synthetic gives 3x12x12; pass --resize 8"
    ):
        train(tiny_spec, out=str(out), synthetic_shape=(3, 12, 12))
    with pytest.raises(
        DataError,
        match=(
            r"Sequential cannot take synthetic images of shape "
            r"1x8x8 .*make the module take 1x8x8 or pass --resize"
        ),
    ):
        train(_tiny(), **FAST | {"synthetic_shape": (1, 8, 8)}, out=str(out))
    with pytest.raises(
        DataError, match=r"tiny outputs 4 classes but synthetic has 6; use --set num_classes=6"
    ):
        train(tiny_spec, out=str(out), synthetic_classes=6)
    assert not out.exists()  # a refused start leaves no empty run directory


def test_missing_dataset_fails_before_the_model_runs(tmp_path: Path) -> None:
    model = Exploding(after=0)
    with pytest.raises(DataError, match="--data-dir"):
        train(
            model,
            **FAST | {"dataset": "cifar10"},
            data_dir=str(tmp_path / "none"),
            download=False,
            out=str(tmp_path / "run"),
        )
    assert model.calls == 0


def test_resize_feeds_a_model_of_another_input_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 4),
    )
    record = train(model, **FAST | {"epochs": 1}, resize=(12, 16), out=str(tmp_path / "run"))
    assert record["dataset"]["input_shape"] == [3, 12, 16]


def test_objective_weights_extra_heads() -> None:
    torch.manual_seed(0)
    main, aux, y = torch.randn(8, 4), torch.randn(8, 4), torch.randint(0, 4, (8,))
    cfg = TrainConfig(aux_weight=0.5)
    _, loss = objective((main, aux), y, [0.3], cfg)
    assert torch.allclose(loss, F.cross_entropy(main, y) + 0.3 * F.cross_entropy(aux, y))
    _, loss = objective((main, aux), y, None, cfg)  # a plain module: aux_weight
    assert torch.allclose(loss, F.cross_entropy(main, y) + 0.5 * F.cross_entropy(aux, y))
    with pytest.raises(
        TrainError, match="returned 1 extra outputs in train mode but declares 2 heads"
    ):
        objective((main, aux), y, [0.3, 0.3], cfg)


AUX_SPEC = """
name: aux
input: [3, 8, 8]
layers:
  - {conv: {out: 8, kernel: 3, padding: 1}, name: conv1}
  - relu
  - seq: [global_avgpool, flatten, {linear: 4}]
    name: aux1
    head: {loss_weight: 0.3, train_only: true}
  - maxpool: 2
  - flatten
  - linear: 4
"""


def test_spec_aux_heads_train_with_their_weights(tmp_path: Path) -> None:
    from archc import build

    spec = spec_file(tmp_path, AUX_SPEC, "aux")
    assert head_weights(build(spec)) == [0.3]
    record = train(spec, **FAST | {"epochs": 1}, out=str(tmp_path / "run"))
    assert record["status"] == "completed" and record["final_test_acc"] > 0.5


@pytest.mark.parametrize(
    "recipe",
    [
        {
            "optimizer": "sgd",
            "nesterov": True,
            "schedule": "step",
            "step_size": 1,
            "channels_last": True,
        },
        {"optimizer": "adam", "lr": 3e-3, "schedule": "multistep", "label_smoothing": 0.1},
        {"optimizer": "adamw", "lr": 3e-3, "schedule": "onecycle", "grad_clip": 1.0},
        {"schedule": "none", "warmup_epochs": 0.5, "augment": False},
    ],
)
def test_optimizers_and_schedules_train(tmp_path: Path, recipe: dict[str, object]) -> None:
    record = train(_tiny(), **FAST | recipe, out=str(tmp_path / "run"))
    assert record["final_test_acc"] > 0.6
    assert record["config"]["optimizer"] == recipe.get("optimizer", "sgd")


def test_amp_on_cpu_uses_bf16_only_where_supported(tmp_path: Path) -> None:
    from archc.trainer.runtime import cpu_supports_bf16

    record = train(_tiny(), **FAST | {"epochs": 1}, amp=True, out=str(tmp_path / "run"))
    assert record["amp_dtype"] == ("bfloat16" if cpu_supports_bf16() else None)
    with pytest.raises(TrainError, match="--amp-dtype float16 is for GPUs"):
        train(_tiny(), **FAST, amp=True, amp_dtype="fp16", out=str(tmp_path / "run2"))


def test_init_from_loads_weights_before_training(tmp_path: Path) -> None:
    first = train(_tiny(), **FAST, out=str(tmp_path / "a"))
    record = train(
        _tiny(seed=1),
        **FAST | {"epochs": 1, "lr": 1e-9},
        init_from=str(tmp_path / "a" / "best.pt"),
        out=str(tmp_path / "b"),
    )
    assert abs(record["final_test_acc"] - first["best_test_acc"]) < 0.02
    with pytest.raises(CheckpointError, match="do not fit the model"):
        train(
            tiny_cnn(classes=3),
            **FAST | {"synthetic_classes": 3},
            init_from=str(tmp_path / "a" / "best.pt"),
            out=str(tmp_path / "c"),
        )


def test_existing_run_needs_resume_and_resume_needs_the_same_recipe(tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    done = train(_tiny(), **FAST, out=out)
    with pytest.raises(TrainError, match=r"already holds a run .* pass --resume"):
        train(_tiny(), **FAST, out=out)
    with pytest.raises(CheckpointError, match=r"was trained with lr=0.05 \(now 0.1\)"):
        train(_tiny(), **FAST | {"lr": 0.1}, out=out, resume=True)
    with pytest.raises(CheckpointError, match="different spec"):
        train(tiny_cnn(classes=4).append(nn.Identity()), **FAST, out=out, resume=True)  # type: ignore[operator]
    again = train(
        _tiny(), **FAST | {"workers": 2}, out=out, resume=True
    )  # complete: nothing left to train
    assert again["resumed_from_epoch"] == 2 and again["final_test_acc"] == done["final_test_acc"]
    with pytest.raises(TrainError, match="--resume needs --out"):
        train(_tiny(), **FAST, resume=True)


def test_a_held_lock_refuses_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RunLock(out), pytest.raises(LockError, match="in use by another archc train"):
        train(_tiny(), **FAST, out=str(out))


def test_process_settings_are_restored(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    train(
        _tiny(),
        **FAST | {"workers": max(1, threads - 1) if threads > 1 else 2, "epochs": 1},
        deterministic=True,
        out=str(tmp_path / "r"),
    )
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()


def test_evaluate_matches_the_final_epoch(tiny_spec: Path, tmp_path: Path) -> None:
    record = train(tiny_spec, out=str(tmp_path / "run"), log="quiet")
    report = evaluate(tiny_spec, str(tmp_path / "run" / "last.pt"))
    assert report["test_acc"] == pytest.approx(record["final_test_acc"])
    assert report["test_loss"] == pytest.approx(record["final_test_loss"], rel=1e-4)
    confusion = torch.tensor(report["confusion"])
    assert confusion.shape == (4, 4) and int(confusion.sum()) == 64
    assert report["per_class_acc"] == pytest.approx((confusion.diag() / confusion.sum(1)).tolist())


def test_compile_wraps_the_stepping_model_and_checkpoints_the_plain_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[nn.Module] = []

    def fake_compile(
        module: nn.Module,
    ) -> nn.Module:  # inductor takes a minute on a small CPU; the plumbing is ours
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = _tiny()
    train(model, **FAST | {"epochs": 1}, compile=True, out=str(tmp_path / "run"))
    assert compiled == [model]
    assert set(load_checkpoint(tmp_path / "run" / "last.pt")["model"]) == set(model.state_dict())


def test_progress_bars_and_plain_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(_tiny(), **FAST | {"epochs": 1, "log": "bar"}, out=str(tmp_path / "bar"))
    bar = capsys.readouterr()
    train(_tiny(), **FAST | {"epochs": 1, "log": "plain"}, out=str(tmp_path / "plain"))
    plain = capsys.readouterr()
    for captured in (bar, plain):
        assert (
            "epoch 1/1  train loss" in captured.err
            and "img/s" in captured.err
            and captured.out == ""
        )
    assert (
        "training Sequential (740 params) on synthetic: "
        "230 train / 26 validation / 64 test images 3x8x8"
    ) in plain.err


def test_a_damaged_checkpoint_is_refused_on_resume(tmp_path: Path) -> None:
    from archc.trainer.checkpoint import save_checkpoint

    out = tmp_path / "run"
    train(_tiny(), **FAST | {"epochs": 3}, out=str(out))
    state = load_checkpoint(out / "last.pt")
    for damage in (
        {"optimizer": {"state": {}, "param_groups": []}},
        {"model": {"0.weight": torch.zeros(1)}},
        {"history": 3},
    ):
        save_checkpoint(
            out / "last.pt",
            {k: v for k, v in state.items() if k not in ("format", "version")} | damage,
        )
        with pytest.raises(
            CheckpointError,
            match=r"last.pt (is damaged|do not fit)|weights in .*last.pt do not fit",
        ):
            train(_tiny(), **FAST | {"epochs": 3}, out=str(out), resume=True)
