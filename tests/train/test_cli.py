"""`archc train` / `archc evaluate` as a user runs them: exit codes,
one-line errors, printed rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archc.cli import main
from tests.conftest import archc_here, run_archc


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """`cli(*args) -> (exit code, stdout, stderr)`: the real entry point, in this process (fast)."""

    def run(*args: str) -> tuple[int, str, str]:
        rc = main(list(args))
        captured = capsys.readouterr()
        return rc, captured.out, captured.err

    return run


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def test_help_lists_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("train", "evaluate"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--dataset", "--data-dir", "--optimizer", "--nesterov", "--schedule",
                 "--warmup-epochs", "--augment", "--no-augment", "--resize", "--amp",
                 "--channels-last", "--compile", "--deterministic", "--nproc", "--out", "--resume",
                 "--init-from", "--device", "--set", "--checkpoint"):  # fmt: skip
        assert flag in text, flag


@pytest.mark.slow  # a real `archc train` process; the in-process tests cover its parts
def test_train_prints_the_result_row_and_evaluate_reports(
    cli, tiny_spec: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = run_archc(
        "train", str(tiny_spec), "--out", str(out), "--epochs", "1", "--set", "num_classes=4"
    )  # a real process
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.startswith("tiny  synthetic  epochs 1  best ")
        and result.stdout.count("\n") == 1
    )
    assert "epoch 1/1  train loss" in result.stderr  # plain progress lines when not on a terminal
    pages = {"diagram.svg", "report.md", "report.html"}  # the runs elsewhere mostly skip them
    assert pages <= {p.name for p in out.iterdir()} and f"the run is in {out}" in result.stderr
    record = json.loads((out / "result.json").read_text())
    assert record["overrides"] == {
        "spec": {"num_classes": 4},
        "input": None,
        "train": {"out": str(out), "epochs": 1},
    }
    rc, text, _ = cli("evaluate", str(tiny_spec), "--checkpoint", str(out / "best.pt"), "--json")
    assert rc == 0 and json.loads(text)["test_acc"] == record["best_test_acc"]
    rc, text, _ = cli("evaluate", str(tiny_spec), "--checkpoint", str(out / "best.pt"))
    assert rc == 0 and "per-class accuracy:" in text and "confusion matrix" in text


def test_offline_dataset_is_one_line_and_exit_1(cli, tiny_spec: Path, tmp_path: Path) -> None:
    rc, _, err = cli("train", str(tiny_spec), "--dataset", "cifar10", "--data-dir",
                     str(tmp_path / "none"), "--no-download",
                     "--out", str(tmp_path / "run"))  # fmt: skip
    assert rc == 1
    line = _one_error_line(err)
    assert "--data-dir" in line and "digits, synthetic, imagefolder:PATH" in line
    assert not (tmp_path / "run").exists()


def test_shape_mismatch_is_one_line_and_its_advice_works(
    cli, tiny_spec: Path, tmp_path: Path
) -> None:
    rc, _, err = cli(
        "train",
        str(tiny_spec),
        "--synthetic-shape",
        "1,8,8",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
    )
    assert rc == 1
    line = _one_error_line(err)
    assert line == "error: tiny takes input 3x8x8 but synthetic gives 1x8x8; pass --input 1,8,8"
    advice = line.split("; pass ")[1].split()
    rc, _, err = cli(
        "train",
        str(tiny_spec),
        "--synthetic-shape",
        "1,8,8",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
        *advice,
    )
    assert rc == 0, err


def test_size_mismatch_advice_is_checked_by_compiling(cli, tmp_path: Path) -> None:
    # lenet_d2l cannot compile at digits' 8x8 (its convolutions shrink it to
    # nothing): only --resize is offered
    rc, _, err = cli(
        "train", "specs/lenet_d2l.yaml", "--dataset", "digits", "--out", str(tmp_path / "run")
    )
    assert rc == 1 and _one_error_line(err).endswith(
        "takes input 1x28x28 but digits gives 1x8x8; pass --resize 28"
    )
    # resnet20 (3x32x32) on digits: the digits' own shape works (global pooling),
    # and so does 1 channel at 32x32
    rc, _, err = cli(
        "train", "specs/resnet20.yaml", "--dataset", "digits", "--out", str(tmp_path / "run")
    )
    assert rc == 1 and _one_error_line(err).endswith(
        "pass --input 1,8,8 or pass --input 1,32,32 --resize 32"
    )


def test_input_changing_the_rank_is_refused(tmp_path: Path) -> None:
    for command in (
        ["train", "specs/lenet_d2l.yaml", "--dataset", "digits", "--out", str(tmp_path / "run")],
        ["build", "specs/lenet_d2l.yaml"],
        ["report", "specs/lenet_d2l.yaml"],
        ["sweep", "specs/lenet_d2l.yaml", "--dry-run", "--out", str(tmp_path / "sweep")],
    ):
        result = archc_here(*command, "--input", "1,28")
        assert result.returncode == 1, command
        assert result.stderr.strip().endswith(
            "an input override changes sizes, not the number of dimensions"
        ), result.stderr
        assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_divergence_exits_1_with_a_clear_message(cli, tiny_spec: Path, tmp_path: Path) -> None:
    rc, _, err = cli("train", str(tiny_spec), "--lr", "1e12", "--out", str(tmp_path / "run"))
    assert rc == 1
    assert _one_error_line(err).startswith("error: training diverged: the loss is ")
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "diverged"


def test_bad_input_is_one_line(cli, tiny_spec: Path, tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    rc, _, err = cli("evaluate", str(tiny_spec), "--checkpoint", str(tmp_path / "junk.pt"))
    assert rc == 1 and "is not a readable torch file" in _one_error_line(err)
    rc, _, err = cli(
        "train", str(tiny_spec), "--nesterov", "--momentum", "0", "--out", str(tmp_path / "x")
    )
    assert rc == 1 and "nesterov needs optimizer sgd with momentum > 0" in _one_error_line(err)
    rc, _, err = cli("train", str(tiny_spec), "--set", "no_such_param=1")
    assert rc == 1 and "no_such_param" in err and "Traceback" not in err
    rc, _, err = cli("train", str(tiny_spec), "--resize", "0")
    assert rc == 1 and "invalid training option resize: must be positive" in _one_error_line(err)
