"""Checkpoints: atomic writes that survive interruption, and loads that refuse anything odd."""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
import torch
from torch import nn

from archc.trainer import checkpoint as ck
from archc.trainer.errors import CheckpointError
from tests.train.conftest import tiny_cnn

STATE = {k: 0 for k in ck.REQUIRED}


def _state(epoch: int) -> dict[str, object]:
    return {**STATE, "epoch": epoch, "model": tiny_cnn().state_dict()}


def test_round_trip(tmp_path: Path) -> None:
    ck.save_checkpoint(tmp_path / "last.pt", _state(3))
    loaded = ck.load_checkpoint(tmp_path / "last.pt")
    assert loaded["epoch"] == 3 and loaded["format"] == ck.FORMAT
    assert list(tmp_path.iterdir()) == [tmp_path / "last.pt"]


def test_interrupted_write_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    ck.save_checkpoint(path, _state(1))

    def half_then_killed(obj: object, f: object) -> None:
        f.write(b"PK\x03\x04 partial")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(ck.torch, "save", half_then_killed)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(path, _state(2))
    monkeypatch.undo()
    assert ck.load_checkpoint(path)["epoch"] == 1
    assert list(tmp_path.iterdir()) == [path]


def test_disk_full_is_a_clear_error_and_keeps_the_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    ck.save_checkpoint(path, _state(1))

    def full(obj: object, f: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ck.torch, "save", full)
    with pytest.raises(
        CheckpointError,
        match=(
            r"cannot write checkpoint .*last.pt: No space "
            r"left on device; the previous checkpoint is kept"
        ),
    ):
        ck.save_checkpoint(path, _state(2))
    monkeypatch.undo()
    assert ck.load_checkpoint(path)["epoch"] == 1


def test_best_is_a_link_to_the_saved_file_that_the_next_save_leaves_intact(
    tmp_path: Path,
) -> None:
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    ck.save_checkpoint(last, _state(1))
    ck.link_checkpoint(last, best)
    assert best.stat().st_ino == last.stat().st_ino  # written once
    ck.save_checkpoint(last, _state(2))
    assert ck.load_checkpoint(best)["epoch"] == 1 and ck.load_checkpoint(last)["epoch"] == 2
    ck.link_checkpoint(last, best)
    assert ck.load_checkpoint(best)["epoch"] == 2
    assert sorted(tmp_path.iterdir()) == [best, last]  # no temp file left


def test_best_is_a_copy_where_the_file_system_has_no_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    ck.save_checkpoint(last, _state(1))

    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(ck.os, "link", no_links)
    ck.link_checkpoint(last, best)
    assert best.stat().st_ino != last.stat().st_ino
    assert ck.load_checkpoint(best)["epoch"] == 1
    assert sorted(tmp_path.iterdir()) == [best, last]


def test_a_failed_link_is_a_clear_error_and_keeps_the_previous_best(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    ck.save_checkpoint(last, _state(1))
    ck.link_checkpoint(last, best)
    ck.save_checkpoint(last, _state(2))

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ck.os, "link", full)
    monkeypatch.setattr(ck.shutil, "copyfile", full)
    with pytest.raises(
        CheckpointError,
        match=r"cannot write checkpoint .*best.pt: No space left on device; the previous",
    ):
        ck.link_checkpoint(last, best)
    monkeypatch.undo()
    assert ck.load_checkpoint(best)["epoch"] == 1
    assert sorted(tmp_path.iterdir()) == [best, last]


def _writer(path: Path, report: Connection) -> None:
    """Save a 32 MB checkpoint over and over; report the temp-file token, then each epoch."""
    from archc.atomic import process_token

    report.send(process_token())
    big = torch.randn(8_000_000)
    epoch = 0
    while True:
        epoch += 1
        ck.save_checkpoint(path, {**STATE, "epoch": epoch, "model": {"w": big}})
        report.send(epoch)


def test_sigkill_during_writes_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    receive, send = multiprocessing.Pipe(duplex=False)
    context = multiprocessing.get_context("fork")  # a copy of this process: no torch import again
    writer = context.Process(target=_writer, args=(path, send), daemon=True)
    writer.start()
    try:
        token = receive.recv()  # the writer's temp-file token, as its run lock records it
        receive.recv()  # one complete checkpoint exists
        time.sleep(0.15)  # now somewhere inside a later write
        writer.kill()  # SIGKILL
        writer.join(timeout=30)
    finally:
        writer.kill()
    assert writer.exitcode == -signal.SIGKILL
    assert ck.load_checkpoint(path)["epoch"] >= 1
    (tmp_path / ".last.pt.tmp-123").write_text("a user's file that only looks like a temp file")
    ck.remove_stale_temps(tmp_path, token)
    assert sorted(tmp_path.iterdir()) == [tmp_path / ".last.pt.tmp-123", path]


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    torch.save(tiny_cnn().state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="is not an archc training checkpoint"):
        ck.load_checkpoint(tmp_path / "plain.pt")
    torch.save({"format": ck.FORMAT, "version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="checkpoint version 99"):
        ck.load_checkpoint(tmp_path / "future.pt")
    torch.save({"format": ck.FORMAT, "version": ck.VERSION, "model": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="is incomplete: no optimizer"):
        ck.load_checkpoint(tmp_path / "partial.pt")


def test_corrupt_and_truncated_files_are_refused(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):  # a small fuzz: torch.load fails on noise with many exception types
        noise = torch.randint(
            0,
            256,
            (int(torch.randint(1, 4096, (1,), generator=gen)),),
            dtype=torch.uint8,
            generator=gen,
        )
        (tmp_path / "noise.pt").write_bytes(noise.numpy().tobytes())
        with pytest.raises(CheckpointError, match=r"is not a readable torch file|refusing to load"):
            ck.load_checkpoint(tmp_path / "noise.pt")
    ck.save_checkpoint(tmp_path / "last.pt", _state(1))
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is not a readable torch file"):
        ck.load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        ck.load_checkpoint(tmp_path / "missing.pt")


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_pickle_payload_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"format": ck.FORMAT, "model": Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"refusing to load .*weights_only=True"):
        ck.load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refusing to load"):
        ck.load_weights(tiny_cnn(), tmp_path / "evil.pt")
    assert not marker.exists()


def test_load_weights_accepts_the_usual_containers(tmp_path: Path) -> None:
    source = tiny_cnn()
    wrapped = {f"module.{k}": v for k, v in source.state_dict().items()}
    for i, obj in enumerate(
        [
            source.state_dict(),
            {"net": source.state_dict(), "acc": 0.9},
            wrapped,
            _state(1) | {"model": source.state_dict()},
        ]
    ):
        torch.save(obj, tmp_path / f"{i}.pt")
        target = tiny_cnn()
        ck.load_weights(target, tmp_path / f"{i}.pt")
        assert all(
            torch.equal(a, b)
            for a, b in zip(source.state_dict().values(), target.state_dict().values(), strict=True)
        )


def test_load_weights_names_missing_unexpected_and_misshaped_keys(tmp_path: Path) -> None:
    state = tiny_cnn(classes=5).state_dict()
    del state["0.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as info:
        ck.load_weights(tiny_cnn(), tmp_path / "w.pt")
    message = str(info.value)
    assert "missing 1: 0.bias" in message and "unexpected 1: extra.weight" in message
    assert (
        "shape mismatch 2: 4.weight [5, 128] vs model [4, 128], 4.bias [5] vs model [4]" in message
        and "\n" not in message
    )


def test_load_weights_needs_tensors(tmp_path: Path) -> None:
    torch.save({"acc": 0.5}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="holds no model weights"):
        ck.load_weights(nn.Linear(2, 2), tmp_path / "w.pt")


class _FakeCuda:
    """torch.cuda on a machine with 8 GPUs, this process on device 3 (a rank's own GPU)."""

    def __init__(self) -> None:
        self.touched: list[str] = []
        self.restored: list[torch.Tensor] = []

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return True

    def get_rng_state(self, device: str = "cuda") -> torch.Tensor:
        self.touched.append(f"get {device}")
        return torch.tensor([3], dtype=torch.uint8)

    def get_rng_state_all(self) -> list[torch.Tensor]:
        self.touched.append("get all")  # opens a context on every GPU: must not happen
        return [torch.tensor([d], dtype=torch.uint8) for d in range(8)]

    def set_rng_state(self, state: torch.Tensor, device: str = "cuda") -> None:
        self.restored.append(state)


def test_cuda_rng_is_this_processs_own_device_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU here: torch.cuda's RNG calls are stood in for. A rank saves and restores the state of
    its own device (ranks seed and draw alike), never every device's; an older checkpoint's list
    of every device's states gives device 0's, the one rank 0 trained on."""
    fake = _FakeCuda()
    monkeypatch.setattr(torch, "cuda", fake)
    state = ck.rng_state()
    assert fake.touched == ["get cuda"] and state["cuda"].tolist() == [3]
    ck.set_rng_state(state)
    every_device = [torch.tensor([d], dtype=torch.uint8) for d in range(8)]
    ck.set_rng_state({"torch": state["torch"], "cuda": every_device})
    assert [int(s) for s in fake.restored] == [3, 0]
