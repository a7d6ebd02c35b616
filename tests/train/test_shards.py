"""Tar shards in the WebDataset format: the writer, the `webdataset` package reading them and
archc reading its shards, training on them (independent of the number of loader workers, exact
mid-epoch resume) and clear errors for damaged shards."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from torch import nn

from archc.trainer.api import train
from archc.trainer.checkpoint import load_checkpoint
from archc.trainer.errors import DataError
from archc.trainer.shards import Shard, ShardFeed, main, read_index, samples, steps_per_epoch
from tests.fake_datasets import write_imagefolder
from tests.train.conftest import weights_of

QUICK = {
    "epochs": 2,
    "batch_size": 8,
    "lr": 0.05,
    "log": "quiet",
    "workers": 1,
    "loader_workers": 0,
    "resize": (8, 8),
    "deterministic": True,
}


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(128, 3),
    )


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    write_imagefolder(tmp_path / "folder", classes=3, train=16, val=4, size=(12, 12))
    assert main([str(tmp_path / "folder"), str(tmp_path / "shards"), "--shard-size", "10"]) == 0
    return tmp_path / "shards"


def test_the_writer_makes_webdataset_layout_shards_and_an_index(shards: Path) -> None:
    index = json.loads((shards / "index.json").read_text())
    assert index["classes"] == ["n00000000", "n00000001", "n00000002"]
    assert [e["count"] for e in index["train"]] == [10, 10, 10, 10, 8] and [
        e["count"] for e in index["val"]
    ] == [10, 2]
    with tarfile.open(shards / "train-000000.tar") as tar:
        names = tar.getnames()
        # a sample's fields, in webdataset's (sorted) order
        assert names[0] == "train000000000.cls" and names[1].startswith("train000000000.")
        assert len(names) == 20 and all(
            n.rsplit(".", 1)[1] in ("jpeg", "png", "cls") for n in names
        )
        labels = {int(tar.extractfile(n).read()) for n in names if n.endswith(".cls")}  # type: ignore[union-attr]
    assert len(labels) > 1  # the one-off shuffle mixes the classes within a shard


def test_webdataset_reads_archcs_shards_and_archc_reads_webdatasets(
    shards: Path, tmp_path: Path
) -> None:
    import webdataset as wds

    def read(paths: list[Path]) -> list[dict[str, object]]:
        urls = [str(p) for p in paths]
        return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))

    index = read_index(shards)
    files = (tmp_path / "folder").rglob("*.*")
    folder = {path.read_bytes(): int(path.parent.name[-1]) for path in files}
    ours = [sample for shard in (*index.train, *index.val) for sample in samples(shard.path, 3)]
    theirs = read([s.path for s in (*index.train, *index.val)])
    image = ("jpeg", "png")
    assert ours == [
        (t["__key__"], next(v for k, v in t.items() if k in image), int(t["cls"]))  # type: ignore[call-overload]
        for t in theirs
    ]
    # every file once, with its class
    assert sorted((data, label) for _, data, label in ours) == sorted(folder.items())
    # shards written by webdataset itself (gzip-compressed, keys in
    # folders), listed in an index.json
    written = tmp_path / "theirs"
    written.mkdir()
    chosen = sorted(folder.items())[:6]
    with wds.ShardWriter(str(written / "part-%03d.tar.gz"), maxcount=4, verbose=0) as sink:
        for i, (data, label) in enumerate(chosen):
            field = "png" if data[:4] == b"\x89PNG" else "jpg"
            sink.write({"__key__": f"set{i % 2}/img{i:03d}", "cls": label, field: data})
    (written / "index.json").write_text(json.dumps({
        "format": "archc-shards", "classes": ["a", "b", "c"], "val": [],
        "train": [{"name": "part-000.tar.gz", "count": 4}, {"name": "part-001.tar.gz", "count": 2}],
    }))  # fmt: skip
    parts = read_index(written).train
    ours = [sample for shard in parts for sample in samples(shard.path, 3)]
    keys = [f"set{i % 2}/img{i:03d}" for i in range(6)]
    assert (
        [key for key, _, _ in ours] == [t["__key__"] for t in read([s.path for s in parts])] == keys
    )
    assert [(data, label) for _, data, label in ours] == chosen


def test_training_on_shards_does_not_depend_on_the_number_of_loader_workers(
    shards: Path, tmp_path: Path
) -> None:
    none = train(_cnn(), dataset=f"shards:{shards}", out=str(tmp_path / "w0"), **QUICK)
    two = train(
        _cnn(),
        dataset=f"shards:{shards}",
        out=str(tmp_path / "w2"),
        **QUICK | {"loader_workers": 2},
    )
    assert none["dataset"]["data_path"] == "stream" and none["dataset"]["test_images"] == 12
    a, b = weights_of(tmp_path / "w0" / "last.pt"), weights_of(tmp_path / "w2" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert none["final_train_loss"] == two["final_train_loss"]


def test_mid_epoch_resume_on_shards_equals_an_uninterrupted_run(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = QUICK | {"dataset": f"shards:{shards}", "checkpoint_every": 2}
    train(_cnn(), **recipe, out=str(tmp_path / "ref"))
    original = ShardFeed.train_batches
    calls = 0

    def interrupted(self: ShardFeed, *args: object):  # type: ignore[no-untyped-def]
        for batch in original(self, *args):  # type: ignore[arg-type]
            nonlocal calls
            calls += 1
            if calls == 9:  # epoch 2 (6 steps each), step 3: after its step-2 checkpoint
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(ShardFeed, "train_batches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_cnn(), **recipe, out=str(tmp_path / "run"))
    monkeypatch.undo()
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 2)
    train(_cnn(), **recipe, out=str(tmp_path / "run"), resume=True)
    ref, got = weights_of(tmp_path / "ref" / "last.pt"), weights_of(tmp_path / "run" / "last.pt")
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_every_process_gets_the_same_number_of_steps_whatever_shards_it_is_dealt() -> None:
    shards = tuple(Shard(Path(f"s{i}.tar"), n) for i, n in enumerate((10, 10, 10, 7, 3)))
    assert steps_per_epoch(shards, 1, 4) == 40 // 4
    assert steps_per_epoch(shards, 2, 4) == (3 + 7) // 4  # the two smallest shards: the worst deal
    with pytest.raises(DataError, match=r"5 train shards for 8 processes; write smaller shards"):
        steps_per_epoch(shards, 8, 4)


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_damaged_shards_and_indexes_are_one_line_errors(shards: Path, tmp_path: Path) -> None:
    index = json.loads((shards / "index.json").read_text())
    index["train"][0]["name"] = "../elsewhere.tar"
    (shards / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match=r"index.json is damaged: bad shard entry"):
        read_index(shards)
    index["train"][0]["name"] = "train-000000.tar"
    (shards / "index.json").write_text(json.dumps(index))
    _tar(shards / "train-000000.tar", {"a.png": b"x", "b.png": b"y", "b.cls": b"1"})
    with pytest.raises(DataError, match=r"sample a lacks its \.cls label"):
        train(_cnn(), dataset=f"shards:{shards}", out=str(tmp_path / "a"), **QUICK)
    _tar(shards / "train-000000.tar", {"a.cls": b"7"})
    with pytest.raises(DataError, match=r"a\.cls is class 7, outside 0\.\.2"):
        train(_cnn(), dataset=f"shards:{shards}", out=str(tmp_path / "b"), **QUICK)
    with pytest.raises(DataError, match=r"shards are read as a stream"):
        train(
            _cnn(),
            dataset=f"shards:{shards}",
            out=str(tmp_path / "c"),
            **QUICK | {"data_path": "memory"},
        )
    with pytest.raises(DataError, match=r"cannot read .*index\.json"):
        train(_cnn(), dataset=f"shards:{tmp_path / 'nowhere'}", out=str(tmp_path / "d"), **QUICK)
