"""Corrupt, foreign and malicious checkpoints: a clear one-line error, never code execution.

Every bad file is offered through each door a user has: `archc train --resume` (as OUT/last.pt),
`archc evaluate --checkpoint`, `archc train --init-from` and `archc build --init-from`. The
pickle payloads would create a marker file if unpickled; the marker must never appear, the
refused file must be left as it was, and no traceback may reach the user.
"""

from __future__ import annotations

import ast
import io
import pickle
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from archc.cli import main
from tests.conftest import FORKSERVER, REPO
from tests.robustness import harness as h

pytestmark = FORKSERVER

OTHER = h.SPECS / "other.yaml"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished run of tiny.yaml and one of other.yaml (a different network)."""
    base = tmp_path_factory.mktemp("runs")
    for name, spec in (("tiny", h.TINY), ("other", OTHER)):
        rc, output = h.run(h.train_argv(base / name, spec=spec), base / f"{name}.log")
        assert rc == 0, output
    return {"tiny": base / "tiny", "other": base / "other"}


class Payload:
    """Unpickling this calls Path.touch(marker): proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _state(runs: dict[str, Path]) -> dict[str, Any]:
    return torch.load(runs["tiny"] / "last.pt", map_location="cpu", weights_only=True)


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _zip_with_pickle(payload: bytes) -> bytes:
    """A torch-style zip archive whose data.pkl is `payload`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")
    return buffer.getvalue()


def _tampered(runs: dict[str, Path], **changes: Any) -> bytes:
    return _torch_bytes({**_state(runs), **changes})


READABLE = (
    r"is not a readable torch file|is not an archc training checkpoint|holds no model weights"
)
REFUSED = r"refusing to load .*(Python objects|weights_only)"
# name -> (make the bytes, expected error on --resume, on evaluate, on
# --init-from; None: accepted there)
Maker = Callable[[dict[str, Path], Path], bytes]
CASES: dict[str, tuple[Maker, str, str | None, str | None]] = {
    "truncated": (
        lambda r, m: (r["tiny"] / "last.pt").read_bytes()[:5000],
        READABLE,
        READABLE,
        READABLE,
    ),
    "truncated_tail": (
        lambda r, m: (r["tiny"] / "last.pt").read_bytes()[:-64],
        READABLE,
        READABLE,
        READABLE,
    ),
    "empty": (lambda r, m: b"", READABLE, READABLE, READABLE),
    "random_bytes": (
        lambda r, m: bytes(
            torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(1)).tolist()
        ),
        READABLE,
        READABLE,
        READABLE,
    ),
    "zip_of_garbage": (
        lambda r, m: _zip_with_pickle(b"\x80\x04garbage"),
        READABLE,
        READABLE,
        READABLE,
    ),
    "payload_in_checkpoint": (
        lambda r, m: _torch_bytes({**_state(r), "history": Payload(m)}),
        REFUSED,
        REFUSED,
        REFUSED,
    ),
    "payload_as_weights": (
        lambda r, m: _torch_bytes({"conv.weight": Payload(m)}),
        REFUSED,
        REFUSED,
        REFUSED,
    ),
    "raw_pickle_payload": (
        lambda r, m: pickle.dumps(Payload(m), protocol=2),
        REFUSED + "|" + READABLE,
        REFUSED + "|" + READABLE,
        REFUSED + "|" + READABLE,
    ),
    "zip_pickle_payload": (
        lambda r, m: _zip_with_pickle(pickle.dumps(Payload(m), protocol=2)),
        REFUSED + "|" + READABLE,
        REFUSED + "|" + READABLE,
        REFUSED + "|" + READABLE,
    ),
    "plain_state_dict_of_another_model": (
        lambda r, m: _torch_bytes(_state({"tiny": r["other"]})["model"]),
        "is not an archc training checkpoint",
        "do not fit the model",
        "do not fit the model",
    ),
    "checkpoint_of_another_spec": (
        lambda r, m: (r["other"] / "last.pt").read_bytes(),
        r"was trained from a different spec or --set overrides \(robust_other\)",
        "do not fit the model",
        "do not fit the model",
    ),
    "future_version": (
        lambda r, m: _tampered(r, version=99),
        "has checkpoint version 99",
        None,
        None,
    ),
    "incomplete": (
        lambda r, m: _torch_bytes({k: v for k, v in _state(r).items() if k != "optimizer"}),
        "is incomplete: no optimizer",
        None,
        None,
    ),
    "wrong_shapes_same_spec": (
        lambda r, m: _tampered(r, model={**_state(r)["model"], "0.weight": torch.zeros(2, 2)}),
        r"do not fit the model: shape mismatch 1: 0\.weight",
        "do not fit the model",
        "do not fit the model",
    ),
    "damaged_history": (lambda r, m: _tampered(r, history="not a list"), "is damaged", None, None),
    "damaged_normalization": (
        lambda r, m: _tampered(r, normalization={"mean": "x", "std": None}),
        "is damaged",
        "is damaged",
        None,
    ),
    # crafted with the right spec hash: each must be refused before anything is loaded or trained
    "history_rows_missing_columns": (
        lambda r, m: _tampered(r, history=[{"epoch": i + 1} for i in range(h.EPOCHS)]),
        "damaged or crafted: history row 1 lacks numeric train_loss",
        None,
        None,
    ),
    "finished_with_empty_history": (
        lambda r, m: _tampered(r, history=[]),
        r"history has 0 rows for 3 finished epochs",
        None,
        None,
    ),
    "negative_epoch": (lambda r, m: _tampered(r, epoch=-5), r"epoch -5 is not a count", None, None),
    "optimizer_buffer_wrong_shape": (
        lambda r, m: _tampered(r, optimizer=_optimizer(r, buffer=torch.zeros(1))),
        r"optimizer state momentum_buffer of parameter 0 is \[1\]",
        None,
        None,
    ),
    "weight_decay_lots": (
        lambda r, m: _tampered(r, optimizer=_optimizer(r, weight_decay="lots")),
        "optimizer setting weight_decay is 'lots'",
        None,
        None,
    ),
    "complex_weights": (
        lambda r, m: _tampered(r, model=_model(r, lambda w: w.to(torch.complex64))),
        "is complex-valued",
        "is complex-valued",
        "is complex-valued",
    ),
    "sparse_weights": (
        lambda r, m: _tampered(r, model=_model(r, lambda w: w.to_sparse())),
        "weights must be dense",
        "weights must be dense",
        "weights must be dense",
    ),
    "meta_weights": (
        lambda r, m: _tampered(r, model=_model(r, lambda w: w.to("meta"))),
        "meta tensor|" + READABLE,
        "meta tensor|" + READABLE,
        "meta tensor|" + READABLE,
    ),
    "zip_bomb": (
        lambda r, m: _zip_bomb(),
        "is not a torch file: member .* is compressed",
        "is compressed",
        "is compressed",
    ),
}


def _optimizer(
    runs: dict[str, Path], buffer: torch.Tensor | None = None, **group: Any
) -> dict[str, Any]:
    saved = _state(runs)["optimizer"]
    saved["param_groups"][0].update(group)
    if buffer is not None:
        saved["state"][0]["momentum_buffer"] = buffer
    return saved


def _model(
    runs: dict[str, Path], change: Callable[[torch.Tensor], torch.Tensor]
) -> dict[str, torch.Tensor]:
    model = _state(runs)["model"]
    return {**model, "0.weight": change(model["0.weight"])}


def _zip_bomb() -> bytes:
    """A torch-style archive whose data.pkl inflates from ~50 kB to 50 MB (the attack used 2 GB)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\0" * 50_000_000)
        zf.writestr("archive/version", "3\n")
    return buffer.getvalue()


def _error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _install(case: str, runs: dict[str, Path], tmp_path: Path) -> tuple[Path, Path, bytes]:
    """(run directory holding the bad last.pt, marker, the bad bytes)."""
    out = tmp_path / "run"
    shutil.copytree(runs["tiny"], out)
    (out / "result.json").unlink()
    marker = tmp_path / "pwned"
    data = CASES[case][0](runs, marker)
    (out / "last.pt").write_bytes(data)
    return out, marker, data


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_refuses_a_bad_checkpoint(
    case: str, runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, marker, data = _install(case, runs, tmp_path)
    rc = main(h.train_argv(out, "--resume", "--log", "quiet"))
    line = _error_line(capsys.readouterr().err)
    assert rc == 1 and str(out / "last.pt") in line and re.search(CASES[case][1], line), line
    assert not marker.exists()
    assert (out / "last.pt").read_bytes() == data, "the refused checkpoint was modified"
    assert not (out / "archc.lock").exists() and not (out / "result.json").exists()


@pytest.mark.parametrize("case", sorted(CASES))
def test_evaluate_refuses_a_bad_checkpoint(
    case: str, runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, marker, _ = _install(case, runs, tmp_path)
    expected = CASES[case][2]
    rc = main(["evaluate", str(h.TINY), "--checkpoint", str(out / "last.pt"), "--json"])
    captured = capsys.readouterr()
    if expected is None:
        assert rc == 0, captured.err
    else:
        line = _error_line(captured.err)
        assert rc == 1 and re.search(expected, line), line
    assert not marker.exists()


@pytest.mark.parametrize("case", sorted(CASES))
def test_init_from_refuses_a_bad_file(
    case: str, runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, marker, _ = _install(case, runs, tmp_path)
    expected = CASES[case][3]
    new = tmp_path / "new"
    argv = ["--init-from", str(out / "last.pt"), "--epochs", "1", "--log", "quiet", "--no-pages"]
    rc = main(h.train_argv(new, *argv))
    captured = capsys.readouterr()
    if expected is None:
        assert rc == 0, captured.err
    else:
        line = _error_line(captured.err)
        assert rc == 1 and re.search(expected, line), line
        assert not new.exists()  # nothing left behind by a refused start
    assert not marker.exists()


@pytest.mark.parametrize(
    "case",
    [
        "truncated",
        "random_bytes",
        "payload_as_weights",
        "zip_pickle_payload",
        "checkpoint_of_another_spec",
    ],
)
def test_build_init_from_refuses_a_bad_file(
    case: str, runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, marker, _ = _install(case, runs, tmp_path)
    rc = main(["build", str(h.TINY), "--init-from", str(out / "last.pt")])
    line = _error_line(capsys.readouterr().err)
    assert rc == 1 and line.startswith("error: --init-from: ") and str(out / "last.pt") in line, (
        line
    )
    assert not marker.exists()


def test_the_payloads_do_run_when_unpickled_unsafely(runs: dict[str, Path], tmp_path: Path) -> None:
    """Control: the payload files are live, so the tests above prove refusal, not a dud payload."""
    for case in ("payload_in_checkpoint", "raw_pickle_payload"):
        marker = tmp_path / f"{case}-ran"
        data = CASES[case][0](runs, marker)
        if data[:2] == b"PK":
            torch.load(io.BytesIO(data), weights_only=False)
        else:
            pickle.loads(data)  # the point of the control
        assert marker.exists(), case


def _reloads_own_bytes(call: ast.Call) -> bool:
    """`torch.jit.load(io.BytesIO(buffer.getvalue()))`: export verification
    reloading what it just serialised."""
    return bool(call.args) and ast.unparse(call.args[0]) == "io.BytesIO(buffer.getvalue())"


def test_every_torch_load_in_archc_uses_weights_only() -> None:
    """A static guard: archc never unpickles with weights_only=False, nor with pickle itself."""
    offenders = []
    for path in sorted((REPO / "archc").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name.endswith(("torch.load", "torch.jit.load")) and not _reloads_own_bytes(node):
                kw = {k.arg: k.value for k in node.keywords}
                if not (
                    isinstance(kw.get("weights_only"), ast.Constant)
                    and kw["weights_only"].value is True
                ):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
            if name in (
                "pickle.load",
                "pickle.loads",
                "pickle.Unpickler",
                "marshal.loads",
                "shelve.open",
                "dill.load",
                "eval",
            ):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, "\n".join(offenders)


def test_resume_with_another_recipe_is_refused(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    shutil.copytree(runs["tiny"], out)
    before = (out / "last.pt").read_bytes()
    assert main(h.train_argv(out, "--resume", "--lr", "0.5", "--log", "quiet")) == 1
    line = _error_line(capsys.readouterr().err)
    assert f"{out / 'last.pt'} was trained with lr=0.05 (now 0.5)" in line, line
    assert (out / "last.pt").read_bytes() == before
