"""The streaming data path: choice by memory budget, exact mid-epoch resume, the imagenet recipe,
bounded memory, and data-parallel agreement with one process."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from archc.compiler.train_config import TrainConfig
from archc.trainer.api import train
from archc.trainer.checkpoint import load_checkpoint
from archc.trainer.distributed import DistInfo
from archc.trainer.errors import CheckpointError, DataError, TrainError
from archc.trainer.evaluate import evaluate
from archc.trainer.runtime import choose_memory_format
from archc.trainer.stream import EpochSampler, ImageFiles, StreamFeed, list_imagefolder
from tests.conftest import FORKSERVER, archc_here
from tests.fake_datasets import write_imagefolder
from tests.robustness import harness as h
from tests.train.conftest import spec_file, weights_of

QUICK = {
    "epochs": 2,
    "batch_size": 8,
    "lr": 0.05,
    "log": "quiet",
    "workers": 1,
    "loader_workers": 0,
    "resize": (8, 8),
}

STREAM_SPEC = """
name: streamer
input: [3, 8, 8]
layers:
  - conv: {out: 8, kernel: 3, padding: 1}
  - relu
  - dropout: 0.2
  - maxpool: 2
  - flatten
  - linear: 3
train:
  batch_size: 8
  epochs: 3
  lr: 0.05
  deterministic: true
"""


def _cnn(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(128, classes),
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imagenet"
    write_imagefolder(root, classes=3, train=8, val=4, size=(12, 12))
    return root


def test_auto_streams_a_folder_over_the_memory_limit_and_keeps_one_that_fits_in_memory(
    folder: Path, tmp_path: Path
) -> None:
    streamed = train(
        _cnn(), dataset=f"imagefolder:{folder}", memory_limit="1K", out=str(tmp_path / "s"), **QUICK
    )
    held = train(
        _cnn(), dataset=f"imagefolder:{folder}", memory_limit="1G", out=str(tmp_path / "m"), **QUICK
    )
    assert streamed["dataset"]["data_path"] == "stream" and held["dataset"]["data_path"] == "memory"
    for record in (streamed, held):
        assert (
            record["dataset"]["train_images"] == 22
            and record["dataset"]["val_images"] == 2
            and record["dataset"]["test_images"] == 12
        )
        assert record["dataset"]["input_shape"] == [3, 8, 8] and record["epochs_completed"] == 2
    assert streamed["final_test_acc"] > 0.6  # the colours separate the classes on both paths
    assert held["final_test_acc"] > 0.6


def test_streaming_is_for_image_folders_and_the_imagenet_recipe_needs_it(
    folder: Path, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match=r"--data-path stream reads image folders"):
        train(_cnn(), dataset="digits", data_path="stream", out=str(tmp_path / "a"), **QUICK)
    with pytest.raises(
        DataError, match=r"imagenet crops each image at random .* --data-path stream or auto"
    ):
        train(
            _cnn(),
            dataset=f"imagefolder:{folder}",
            recipe="imagenet",
            data_path="memory",
            out=str(tmp_path / "b"),
            **QUICK,
        )


def test_sampler_ranks_split_each_global_batch_and_resume_skips_trained_samples() -> None:
    n, batch = 50, 8
    one = list(EpochSampler(n, 0, 1, seed=3).__iter__())
    ranks = [list(EpochSampler(n, r, 2, seed=3)) for r in range(2)]
    for step in range(n // batch):  # global batch `step` of 2 ranks x 4 = that of one process x 8
        merged = {i for r in ranks for i in r[step * 4 : step * 4 + 4]}
        assert merged == {i for i in one[step * batch : (step + 1) * batch]}
    assert (
        dict(one)[one[0][0]] == dict(ranks[0] + ranks[1])[one[0][0]]
    )  # a sample's seed is the same anywhere
    later = EpochSampler(n, 0, 1, seed=3)
    later.set_position(0, 16)
    assert list(later) == one[16:] and len(later) == n - 16
    later.set_position(1, 0)
    assert [i for i, _ in later] != [i for i, _ in one]  # another epoch, another order


def test_a_sample_is_decoded_and_augmented_identically_from_its_seed(folder: Path) -> None:
    from torchvision.transforms import v2

    listing = list_imagefolder(str(folder))
    files = ImageFiles(
        listing.train,
        3,
        v2.Compose([v2.RandomResizedCrop((6, 6), antialias=True), v2.RandomHorizontalFlip()]),
    )
    a, b, c = files[(5, 123)], files[(5, 123)], files[(5, 124)]
    assert a[0].dtype == torch.uint8 and a[0].shape == (3, 6, 6) and a[1] == listing.train[5][1]
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


def test_a_broken_image_is_one_line_naming_the_file(folder: Path, tmp_path: Path) -> None:
    bad = next((folder / "train").rglob("*.png"))
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"^imagefolder: cannot read .*\.png: "):
        train(
            _cnn(),
            dataset=f"imagefolder:{folder}",
            data_path="stream",
            out=str(tmp_path / "r"),
            **QUICK | {"loader_workers": 1},
        )


def test_mid_epoch_resume_on_the_streaming_path_equals_an_uninterrupted_run(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = QUICK | {
        "epochs": 2,
        "deterministic": True,
        "data_path": "stream",
        "checkpoint_every": 1,
        "dataset": f"imagefolder:{folder}",
        "val_split": 0,
    }  # 24 images, 3 steps an epoch
    train(_cnn(), **recipe, out=str(tmp_path / "ref"))
    original = StreamFeed.train_batches
    calls = 0

    def interrupted(self: StreamFeed, *args: object):  # type: ignore[no-untyped-def]
        for batch in original(self, *args):  # type: ignore[arg-type]
            nonlocal calls
            calls += 1
            if calls == 5:  # epoch 2 of 2, step 2 of 3: after the step-1 checkpoint of epoch 2
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(StreamFeed, "train_batches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_cnn(), **recipe, out=str(tmp_path / "run"))
    monkeypatch.undo()
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 1)
    record = train(_cnn(), **recipe, out=str(tmp_path / "run"), resume=True)
    ref, got = weights_of(tmp_path / "ref" / "last.pt"), weights_of(tmp_path / "run" / "last.pt")
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    reference = json.loads((tmp_path / "ref" / "result.json").read_text())
    assert record["final_train_loss"] == pytest.approx(reference["final_train_loss"], rel=1e-9)
    assert record["final_train_acc"] == reference["final_train_acc"]


def test_the_imagenet_recipe_sets_torchvisions_reference_hyperparameters() -> None:
    cfg = TrainConfig(recipe="imagenet")
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay) == (
        90,
        256,
        0.1,
        0.9,
        1e-4,
    )
    assert (cfg.schedule, cfg.step_size, cfg.gamma) == ("step", 30, 0.1)
    assert TrainConfig(recipe="imagenet", batch_size=1024).lr == pytest.approx(
        0.4
    )  # 0.1 per 256 images
    assert (
        TrainConfig(recipe="imagenet", batch_size=1024, lr=0.2, epochs=5).model_dump()["lr"] == 0.2
    )  # given values win
    assert TrainConfig(recipe="imagenet", memory_limit="1.5G").memory_limit == 1536 * 2**20


def test_imagenet_recipe_trains_and_evaluates_with_its_crops(tmp_path: Path) -> None:
    root = tmp_path / "inet"
    write_imagefolder(root, classes=3, train=6, val=3, size=(20, 24))
    spec = spec_file(tmp_path, STREAM_SPEC, "streamer")
    out = tmp_path / "run"
    result = archc_here("train", str(spec), "--recipe", "imagenet",
                        "--dataset", f"imagefolder:{root}", "--epochs", "1", "--batch-size", "8",
                        "--loader-workers", "1", "--out", str(out), "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout)
    assert (
        record["config"]["lr"] == pytest.approx(0.1 * 8 / 256)
        and record["config"]["schedule"] == "step"
    )
    assert record["dataset"]["data_path"] == "stream" and record["dataset"]["input_shape"] == [
        3,
        8,
        8,
    ]
    assert "imagenet recipe" in result.stderr
    state = load_checkpoint(out / "last.pt")
    assert state["normalization"]["mean"] == pytest.approx(
        [0.485, 0.456, 0.406]
    )  # ImageNet's constants
    # Plain weights on the val folder alone: every image is a test image,
    # through Resize 9 + CenterCrop 8.
    torch.save(state["model"], tmp_path / "weights.pt")
    report = evaluate(
        spec,
        str(tmp_path / "weights.pt"),
        dataset=f"imagefolder:{root / 'val'}",
        recipe="imagenet",
        device="cpu",
        loader_workers=0,
    )
    assert report["test_images"] == 9 and report["classes"] == [
        "n00000000",
        "n00000001",
        "n00000002",
    ]
    checkpoint_report = evaluate(
        spec, str(out / "last.pt"), device="cpu", loader_workers=0
    )  # the recipe and folder it was trained on
    assert checkpoint_report["test_images"] == 9 and checkpoint_report["dataset"] == (
        f"imagefolder:{root}"
    )


def test_memory_format_is_measured_reported_and_kept_on_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = {
        "dataset": "synthetic",
        "synthetic_size": (64, 16),
        "synthetic_shape": (3, 8, 8),
        "synthetic_classes": 3,
        "log": "quiet",
        "workers": 1,
        "batch_size": 16,
        "epochs": 1,
    }
    long_enough = {"epochs": 12, "log": "plain"}  # trains past 4x the trial's images
    measured = train(_cnn(), **recipe | long_enough, out=str(tmp_path / "a"))
    assert measured["memory_format"] in ("channels_last", "contiguous")
    assert "measured a forward+backward of 16 images" in capsys.readouterr().err
    assert (
        train(_cnn(), **recipe, deterministic=True, out=str(tmp_path / "b"))["memory_format"]
        == "contiguous"
    )
    assert (
        train(_cnn(), **recipe, channels_last=True, out=str(tmp_path / "c"))["memory_format"]
        == "channels_last"
    )
    assert load_checkpoint(tmp_path / "a" / "last.pt")["memory_format"] == measured["memory_format"]
    no_feed = None  # a resumed run keeps its checkpoint's choice: no trial, nothing measured
    assert choose_memory_format(TrainConfig(), _cnn(), no_feed, DistInfo(), "channels_last") == (
        "channels_last",
        "",
    )
    assert (
        choose_memory_format(
            TrainConfig(channels_last=False), _cnn(), no_feed, DistInfo(), "channels_last"
        )[0]
        == "contiguous"
    )


def test_the_trial_line_is_in_the_run_log(tiny_spec: Path, tmp_path: Path) -> None:
    """Steps of 32 of the 224 training images (7 an epoch) against 4x the trial's 8 passes of 32
    (1,024 images): 5 epochs repay a trial, 4 do not."""
    result = archc_here("train", str(tiny_spec), "--epochs", "5", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert "memory format: " in result.stderr and "measured a forward+backward" in result.stderr
    result = archc_here("train", str(tiny_spec), "--epochs", "4", "--out", str(tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    assert (
        "memory format: contiguous (a run of 28 steps is too short to repay a timed trial"
        in result.stderr
    )


def test_nnodes_needs_an_endpoint_and_a_run_directory(tiny_spec: Path) -> None:
    with pytest.raises(TrainError, match=r"nnodes > 1 needs rdzv_endpoint"):
        train(tiny_spec, nnodes=2)
    with pytest.raises(TrainError, match=r"--nnodes needs --out"):
        train(tiny_spec, nnodes=2, rdzv_endpoint="127.0.0.1:29400")


def _start(argv: list[str], log: Path) -> h.Child:
    """`archc <argv>` in a child of the robustness harness's forkserver (torch and the trainer
    imported), as h.start does, but as a process of its own runs it on Linux: not daemonic (a
    daemonic process may not start processes) and forking its loader workers, which a forkserver's
    child would otherwise start from the forkserver, as children of another process."""
    process = h.context().Process(target=_forking_child, args=(argv, str(log)))
    process.start()
    return h.Child(process, log)


def _forking_child(argv: list[str], log: str) -> None:
    multiprocessing.set_start_method("fork", force=True)
    h._child(argv, log, None, None)


def _kill_tree(pid: int) -> list[int]:
    """SIGKILL a process and all its descendants (a trainer and its loader workers) at once."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    todo, doomed = [pid], []
    while todo:
        doomed.append(todo.pop())
        todo += children.get(doomed[-1], [])
    for victim in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    return doomed


def _wait_until_gone(pids: list[int], timeout: float = 60) -> None:
    """Until no thread of those processes is left running, so that nothing of a killed run still
    runs when it is resumed: a process's first thread may be a zombie before its last ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for pid in pids:
            for stat in Path(f"/proc/{pid}/task").glob("[0-9]*/stat"):
                with contextlib.suppress(OSError, ValueError):
                    states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        if all(state == "Z" for state in states):
            return
        time.sleep(0.01)
    raise AssertionError(f"processes {pids} still running {timeout} s after SIGKILL")


@FORKSERVER
@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_on_the_streaming_path_equals_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    root = tmp_path / "inet"
    # 60 steps an epoch: epoch 2's mid-epoch checkpoints stay on disk long enough to be seen
    write_imagefolder(root, classes=3, train=160, val=4, size=(16, 16))
    spec = spec_file(tmp_path, STREAM_SPEC, "streamer")
    flags = [
        "--dataset",
        f"imagefolder:{root}",
        "--data-path",
        "stream",
        "--loader-workers",
        "2",
        "--checkpoint-every",
        "5",  # mid-epoch checkpoints, a kill between two of them redoing up to four steps
        "--no-pages",
    ]
    # Only the killed run needs a process of its own: a child of the robustness harness's
    # forkserver (torch and the trainer imported), whose loader workers are its children. The
    # reference and the resume run in this one.
    reference = archc_here("train", str(spec), *flags, "--out", str(tmp_path / "ref"))
    assert reference.returncode == 0, reference.stderr[-3000:]
    run = tmp_path / "run"
    child = _start(["train", str(spec), *flags, "--out", str(run), "--log", "plain"],
                   tmp_path / "run.log")  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and child.process.is_alive():
            with contextlib.suppress(CheckpointError):  # a checkpoint replaced while read
                state = load_checkpoint(run / "last.pt") if (run / "last.pt").is_file() else {}
                if state.get("epoch", 0) >= 1 and state.get("step"):
                    break  # in the middle of epoch 2
            time.sleep(0.01)
        assert child.process.is_alive(), (
            f"the run ended before a checkpoint of epoch 2 was seen:\n{child.output()}"
        )
        doomed = _kill_tree(child.pid)  # the trainer and its loader workers at once
        child.process.join(60)
    finally:
        child.kill()
    assert child.process.exitcode == -signal.SIGKILL, child.output()
    _wait_until_gone(doomed)
    state = load_checkpoint(run / "last.pt")
    assert state["step"] > 0 and state["epoch"] < 3, "the kill came after the run ended"
    result = archc_here("train", str(spec), *flags, "--out", str(run), "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming" in result.stderr and ", step " in result.stderr
    ref, got = weights_of(tmp_path / "ref" / "last.pt"), weights_of(run / "last.pt")
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


@FORKSERVER
@pytest.mark.slow
def test_streaming_peak_memory_does_not_grow_with_the_number_of_images(tmp_path: Path) -> None:
    """A folder whose decoded size is over the run's memory limit trains and evaluates one epoch;
    four times the images leave the peak resident memory (trainer and workers) where it was.

    Each run is `archc train` in a child of the robustness harness's forkserver: it starts where
    a trainer stands after its imports, without paying them, and its peak memory (and its loader
    workers') is its own."""
    spec = spec_file(tmp_path, STREAM_SPEC, "streamer")
    peaks = {}
    small = tmp_path / "inet60"
    write_imagefolder(small, classes=3, train=60, val=15, size=(96, 96))
    for image in small.glob("*/*/*"):  # four times the files: each linked under four names
        folder = tmp_path / "inet240" / image.parent.relative_to(small)
        folder.mkdir(parents=True, exist_ok=True)
        for copy in range(4):
            os.link(image, folder / f"{copy}_{image.name}")
    for count in (60, 240):  # per class, 3 classes of 96x96 RGB: 5.0 MiB and 19.9 MiB decoded
        root, out = tmp_path / f"inet{count}", tmp_path / f"run{count}"
        child = _start(["train", str(spec), "--dataset", f"imagefolder:{root}",
                        "--memory-limit", "4M", "--epochs", "1", "--batch-size", "32",
                        "--loader-workers", "2", "--out", str(out), "--no-pages"],
                       tmp_path / f"run{count}.log")  # fmt: skip
        rc, output = child.wait(600), child.output()
        assert rc == 0, output[-3000:]
        record = json.loads((out / "result.json").read_text())
        assert (
            record["dataset"]["data_path"] == "stream"
            and "over the memory budget of 4.0 MiB" in output
        )
        assert record["epochs_completed"] == 1 and record["dataset"]["test_images"] == 3 * (
            count // 4
        )
        peaks[count] = (record["peak_memory_bytes"], record["peak_loader_workers_rss_bytes"])
    decoded_growth = 3 * 180 * 96 * 96 * 3 * 1.25  # the extra train and test pixels
    for small, large in zip(peaks[60], peaks[240], strict=True):
        assert large - small < decoded_growth / 3, (peaks, decoded_growth)


class _Viewer(nn.Module):
    """Calls .view on an activation: fine when contiguous, an error under channels_last."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.fc(y.view(y.shape[0], -1))


class _Sample:
    train_images = 4096

    def sample(self) -> torch.Tensor:
        return torch.zeros(2, 3, 8, 8)


def test_the_trial_declines_channels_last_for_a_model_it_breaks() -> None:
    choice, line = choose_memory_format(
        TrainConfig(batch_size=4), _Viewer(), _Sample(), DistInfo(), None
    )
    assert choice == "contiguous" and "channels_last fails in this model" in line
    choice, line = choose_memory_format(
        TrainConfig(batch_size=4), _cnn(), _Sample(), DistInfo(), None
    )
    assert (
        choice in ("contiguous", "channels_last")
        and "measured a forward+backward of 4 images" in line
    )


def test_a_step_checkpoint_of_the_first_epoch_resumes_exactly_on_the_memory_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any evaluation (no best accuracy yet), and with the batched in-memory augmentation."""
    from archc.trainer.feed import MemoryFeed

    recipe = {"dataset": "synthetic", "synthetic_size": (64, 16), "synthetic_shape": (3, 8, 8),
              "synthetic_classes": 3, "batch_size": 16, "epochs": 2, "lr": 0.05, "log": "quiet",
              "workers": 1, "deterministic": True, "checkpoint_every": 1}  # fmt: skip
    train(_cnn(), **recipe, out=str(tmp_path / "ref"))
    original = MemoryFeed.train_batches
    calls = 0

    def interrupted(self: MemoryFeed, *args: object):  # type: ignore[no-untyped-def]
        for batch in original(self, *args):  # type: ignore[arg-type]
            nonlocal calls
            calls += 1
            if calls == 3:  # epoch 1, step 3: after its step-2 checkpoint
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(MemoryFeed, "train_batches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_cnn(), **recipe, out=str(tmp_path / "run"))
    monkeypatch.undo()
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (state["epoch"], state["step"], state["history"]) == (0, 2, [])
    train(_cnn(), **recipe, out=str(tmp_path / "run"), resume=True)
    ref, got = weights_of(tmp_path / "ref" / "last.pt"), weights_of(tmp_path / "run" / "last.pt")
    assert all(torch.equal(ref[k], got[k]) for k in ref)
