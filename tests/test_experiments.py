"""archc sweep / compare: grid parsing and checks, resumable sweeps,
failures, tables, CSV and plots.

Training tests use tests/specs/exp_tiny.yaml and exp_mlp.yaml on the bundled digits data (512
train / 200 test images, one epoch): each run takes about a second once the sweep's fork server
has imported torch.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from archc.cli import main
from archc.experiments import Variant, grid_axes, make_plan, sweep
from archc.experiments.errors import ExperimentError
from archc.experiments.grid import parse_axis, run_id, split_values
from archc.experiments.results import RunResult, Stat, render, results_csv, table_rows
from tests.conftest import FORKSERVER, clean_env

pytestmark = FORKSERVER

REPO = Path(__file__).resolve().parent.parent
TINY = str(REPO / "tests" / "specs" / "exp_tiny.yaml")
MLP = str(REPO / "tests" / "specs" / "exp_mlp.yaml")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("curves", "acc_vs_params", "acc_vs_time")


def run_cli(*argv: str) -> tuple[int, str, str]:
    """archc in this process (so the sweep's fork server stays warm
    between tests): (rc, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as exc:
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "sweep.json").read_text())


def statuses(out: Path) -> dict[str, str]:
    return {r["id"]: r["status"] for r in manifest(out)["runs"]}


def result_mtimes(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/result.json")}


def cores() -> int:
    return len(os.sched_getaffinity(0))


# grid parsing and validation: nothing trains ------------------------------------------------------
def test_grid_values_are_yaml_scalars_and_keys_are_normalised() -> None:
    assert parse_axis("lr=0.01,1e-3").values == (0.01, 0.001)
    assert parse_axis("augment=true,false").values == (True, False)
    assert parse_axis("optimizer=sgd,adam").values == ("sgd", "adam")
    assert parse_axis("betas=[0.9,0.99],[0.5,0.9]").values == ([0.9, 0.99], [0.5, 0.9])
    assert parse_axis("batch-size=64,128").key == "batch_size"
    assert parse_axis("set.bn=true,false").key == "set.bn"
    assert split_values("a,'b,c',[1,2]") == ["a", "'b,c'", "[1,2]"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr", "expects KEY=V1,V2"),
        ("lr=0.1,,0.2", "empty value"),
        ("lr=0.1,0.1", "lists 0.1 twice"),
        ("=1,2", "has no key"),
    ],
)
def test_bad_grid_syntax_is_refused(text: str, message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        parse_axis(text)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (["lrr=0.1,0.2"], "unknown grid key 'lrr' (did you mean 'lr'?)"),
        (["set.bnn=true"], "has no parameter 'bnn' (did you mean 'bn'?)"),
        (["out=a,b"], "'out' cannot vary in a sweep"),
        (["lr=0.1", "lr=0.2"], "given twice"),
        (["lr=0.1,-1"], "run lr=-1,seed=0: invalid training option lr"),
        (["optimizer=sgd,sgdd"], "run optimizer=sgdd,seed=0: invalid training option optimizer"),
        (["set.bn=yes"], "run set.bn=yes,seed=0: parameter 'bn' expects bool"),
        (["set.width=0"], "run set.width=0,seed=0:"),
    ],
)
def test_bad_grids_fail_before_anything_trains(
    tmp_path: Path, grid: list[str], message: str
) -> None:
    with pytest.raises(ExperimentError) as info:
        make_plan(tmp_path / "s", [Variant("exp_tiny", TINY)], grid_axes(grid))
    assert message in str(info.value)
    assert not (tmp_path / "s").exists()


def test_cli_reports_a_bad_grid_in_one_line_with_exit_1(tmp_path: Path) -> None:
    rc, out, err = run_cli("sweep", TINY, "--grid", "lrr=0.1,0.2", "--out", str(tmp_path / "s"))
    assert rc == 1 and out == ""
    assert err.strip() == (
        "error: unknown grid key 'lrr' (did you mean 'lr'?); use a training option such as lr, "
        "optimizer, batch_size, augment, or set.PARAM for a spec parameter"
    )
    assert not (tmp_path / "s").exists()
    rc, _, err = run_cli(
        "sweep", TINY, "--grid", "seed=1,2", "--seeds", "2", "--out", str(tmp_path / "s")
    )
    assert rc == 1 and err.startswith(
        "error: give the seeds either as --grid seed=... or as --seeds/--seed, not both"
    )
    rc, _, err = run_cli(
        "sweep", TINY, "--grid", "seed=1,2", "--seed", "3", "--out", str(tmp_path / "s")
    )
    assert rc == 1 and "not both" in err
    rc, _, err = run_cli("compare", "--runs", str(tmp_path))
    assert rc == 1 and "is not a run directory" in err and "Traceback" not in err


def test_run_ids_are_readable_safe_and_unique(tmp_path: Path) -> None:
    assert run_id({"optimizer": "adam", "lr": 0.01, "seed": 0}) == "optimizer=adam,lr=0.01,seed=0"
    assert run_id({"model": "resnet-BN", "seed": 1}) == "resnet-BN,seed=1"
    assert run_id({"betas": [0.9, 0.99]}) == "betas=_0.9,0.99_"
    assert run_id({"dataset": "imagefolder:/data/x y"}) == "dataset=imagefolder__data_x_y"
    long = run_id({"dataset": "imagefolder:/" + "a" * 300})
    assert len(long) <= 120 and long != run_id({"dataset": "imagefolder:/" + "a" * 299})
    # Two values that sanitise to the same name still get two directories.
    plan = make_plan(
        tmp_path / "s",
        [Variant("exp_tiny", TINY)],
        grid_axes({"dataset": ["imagefolder:/a b", "imagefolder:/a_b"]}),
    )
    ids = [r.id for r in plan.runs]
    assert len(set(ids)) == 2 and all(i.startswith("dataset=imagefolder__a_b") for i in ids)


def test_plan_is_the_cartesian_product_times_seeds(tmp_path: Path) -> None:
    plan = make_plan(
        tmp_path / "s",
        [Variant("exp_tiny", TINY)],
        grid_axes(["optimizer=sgd,adam", "set.bn=true,false"]),
        seeds=[0, 1],
        base_config={"epochs": 2},
    )
    assert [r.id for r in plan.runs][:3] == [
        "optimizer=sgd,set.bn=true,seed=0",
        "optimizer=sgd,set.bn=true,seed=1",
        "optimizer=sgd,set.bn=false,seed=0",
    ]
    assert len(plan.runs) == 8
    run = plan.runs[3]
    assert run.set == {"bn": False} and run.config == {"epochs": 2, "optimizer": "sgd", "seed": 1}
    assert run.params == 1370 and plan.runs[0].params == 1386  # 16 BN parameters fewer


def test_compare_notes_when_the_specs_recipes_differ(tmp_path: Path) -> None:
    lenet = str(REPO / "specs" / "lenet_d2l.yaml")
    plan = make_plan(
        tmp_path / "c", [Variant("tiny", TINY), Variant("lenet", lenet)], base_config={"epochs": 1}
    )
    assert len(plan.notes) == 1
    assert plan.notes[0].startswith(
        "lenet trains with a different recipe than tiny (dataset fashion_mnist vs digits, "
    )
    assert "epochs" not in plan.notes[0]  # given for all, so the same
    plan = make_plan(tmp_path / "c", [Variant("tiny", TINY), Variant("mlp", MLP)])
    assert plan.notes == []


def test_mean_and_sample_std_over_seeds(tmp_path: Path) -> None:
    def run(seed: int, acc: float, status: str = "done") -> RunResult:
        record = {
            "status": "completed",
            "spec": {"name": "m"},
            "params": 2000,
            "final_test_acc": acc,
            "best_test_acc": acc,
            "final_train_loss": 1.0,
            "train_time_s": 2.0 + seed,
            "epochs_completed": 3,
            "peak_memory_bytes": 5e8,
        }
        return RunResult(
            f"lr=0.1,seed={seed}",
            tmp_path,
            {"lr": 0.1, "seed": seed},
            status,
            None if status == "done" else "boom",
            record if status == "done" else None,
        )

    runs = [
        run(0, 0.90),
        run(1, 0.92),
        run(2, 0.94),
        run(3, 0.5, "failed"),
        RunResult("lr=1.0,seed=0", tmp_path, {"lr": 1.0, "seed": 0}, "diverged", "nan"),
    ]
    assert Stat.of([90.0, 92.0, 94.0]) == Stat(92.0, 2.0, 3)
    header, rows = table_rows(runs)
    assert header[:3] == ["lr", "runs", "params (k)"]
    by = dict(zip(header, rows[0], strict=True))
    assert (
        by["test acc (%)"] == "92.00 ± 2.00"
        and by["runs"] == "3/4 (1 failed)"
        and by["train time (s)"] == "3.0 ± 1.0"
    )
    assert dict(zip(header, rows[1], strict=True))["test acc (%)"] == "—"
    table = read_csv_text(results_csv(runs))
    assert (
        table[0]["test_acc_mean"] == "92"
        and table[0]["test_acc_std"] == "2"
        and table[0]["failed"] == "1"
    )
    assert table[1]["diverged"] == "1" and table[1]["test_acc_mean"] == ""
    assert "92.00 ± 2.00" in render(runs, "table")


def read_csv_text(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# one 2x2 sweep, trained once for the tests below --------------------------------------------------
@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, str]:
    out = tmp_path_factory.mktemp("sweep") / "grid"
    rc, stdout, stderr = run_cli(
        "sweep",
        TINY,
        "--grid",
        "optimizer=sgd,adam",
        "--grid",
        "set.bn=true,false",
        "--jobs",
        "2",
        "--out",
        str(out),
        "--format",
        "markdown",
    )
    return out, rc, stdout, stderr


def test_sweep_2x2_writes_table_csv_markdown_and_plots(swept: tuple[Path, int, str, str]) -> None:
    out, rc, stdout, stderr = swept
    assert rc == 0, stderr
    lines = stdout.strip().splitlines()
    assert lines[0].startswith(
        "| optimizer | set.bn | runs | params (k) | epochs | train loss | test acc (%) |"
    )
    assert [line.split(" | ")[:2] for line in lines[2:]] == [
        ["| sgd", "true"],
        ["| sgd", "false"],
        ["| adam", "true"],
        ["| adam", "false"],
    ]
    rows = read_csv(out / "results.csv")
    assert [(r["optimizer"], r["set.bn"], r["done"]) for r in rows] == [
        ("sgd", "true", "1"),
        ("sgd", "false", "1"),
        ("adam", "true", "1"),
        ("adam", "false", "1"),
    ]
    assert [int(r["params"]) for r in rows] == [1386, 1370, 1386, 1370]
    for r in rows:
        assert (
            0 <= float(r["test_acc_mean"]) <= 100
            and float(r["train_time_s_mean"]) > 0
            and r["test_acc_std"] == ""
        )
    per_run = read_csv(out / "runs.csv")
    assert {r["id"] for r in per_run} == set(statuses(out)) and all(
        r["status"] == "done" for r in per_run
    )
    md = (out / "results.md").read_text()
    assert (
        "| optimizer | set.bn | runs |" in md
        and "![test accuracy and train loss per epoch](curves.png)" in md
    )
    for name in PLOTS:
        assert (out / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
        root = ET.parse(out / f"{name}.svg").getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    legend = ET.tostring(ET.parse(out / "curves.svg").getroot(), encoding="unicode")
    assert len(legend) > 1000
    assert statuses(out) == {
        i: "done"
        for i in (
            "optimizer=sgd,set.bn=true,seed=0",
            "optimizer=sgd,set.bn=false,seed=0",
            "optimizer=adam,set.bn=true,seed=0",
            "optimizer=adam,set.bn=false,seed=0",
        )
    }
    for run_dir in out.glob("optimizer=*"):
        record = json.loads((run_dir / "result.json").read_text())
        assert record["config"]["workers"] == max(1, cores() // 2)  # --jobs 2 shares the cores
        assert (run_dir / "train.log").read_text().startswith("=== archc sweep run ")
        assert record["overrides"]["spec"] == {"bn": "set.bn=true" in run_dir.name}


def test_rerun_skips_finished_runs(swept: tuple[Path, int, str, str]) -> None:
    out = swept[0]
    before = result_mtimes(out)
    rc, stdout, stderr = run_cli(
        "sweep",
        TINY,
        "--grid",
        "optimizer=sgd,adam",
        "--grid",
        "set.bn=true,false",
        "--jobs",
        "2",
        "--out",
        str(out),
        "--format",
        "csv",
    )
    assert rc == 0, stderr
    assert "4 of 4 runs already finished; skipping them" in stderr and "training" not in stderr
    assert result_mtimes(out) == before and len(before) == 4
    assert len(read_csv_text(stdout)) == 4


def test_rerun_with_another_recipe_is_refused(swept: tuple[Path, int, str, str]) -> None:
    out = swept[0]
    rc, _, err = run_cli(
        "sweep",
        TINY,
        "--grid",
        "optimizer=sgd,adam",
        "--grid",
        "set.bn=true,false",
        "--epochs",
        "2",
        "--out",
        str(out),
    )
    assert rc == 1
    assert err.strip().splitlines() == [
        f"error: {out} holds a sweep with other fixed training options (epochs: "
        "unset -> 2); rerun with the same options to resume it, or choose another --out"
    ]


def test_a_run_directory_from_another_experiment_is_not_taken_as_a_result(
    swept: tuple[Path, int, str, str], tmp_path: Path
) -> None:
    import shutil

    source = swept[0] / "optimizer=sgd,set.bn=true,seed=0"
    shutil.copytree(source, tmp_path / "s" / source.name)
    rc, _, err = run_cli(
        "sweep",
        TINY,
        "--grid",
        "optimizer=sgd",
        "--grid",
        "set.bn=true",
        "--lr",
        "0.05",
        "--out",
        str(tmp_path / "s"),
    )
    assert rc == 1
    assert err.strip() == (
        f"error: {tmp_path / 's' / source.name} holds a run that does not belong to this sweep: "
        "it was trained with lr=0.1 (this run: 0.05); move it away or choose another --out"
    )
    assert (tmp_path / "s" / source.name / "result.json").read_bytes() == (
        source / "result.json"
    ).read_bytes()


def test_compare_runs_tabulates_existing_runs(
    swept: tuple[Path, int, str, str], tmp_path: Path
) -> None:
    out = swept[0]
    rc, stdout, stderr = run_cli(
        "compare", "--runs", str(out), "--format", "json", "--out", str(tmp_path / "t")
    )
    assert rc == 0, stderr
    data = json.loads(stdout)
    assert len(data["runs"]) == 4 and len(data["groups"]) == 4
    assert (tmp_path / "t" / "results.md").is_file() and (
        tmp_path / "t" / "acc_vs_time.svg"
    ).is_file()
    # Plain run directories (no manifest) are labelled by what differs
    # between them: here the optimizer.
    rc, stdout, _ = run_cli(
        "compare",
        "--runs",
        str(out / "optimizer=sgd,set.bn=true,seed=0"),
        str(out / "optimizer=adam,set.bn=true,seed=0"),
        "--format",
        "csv",
    )
    rows = read_csv_text(stdout)
    assert rc == 0 and [r["optimizer"] for r in rows] == ["sgd", "adam"]


# failures, divergence, crashes and interruptions --------------------------------------------------
@pytest.mark.slow
def test_failed_and_diverged_runs_are_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    # batch_size 1000 exceeds the training split: a failure only the trainer finds (the plan cannot)
    out = tmp_path / "s"
    args = (
        "sweep",
        TINY,
        "--grid",
        "batch_size=64,1000",
        "--grid",
        "lr=0.1,1e10",
        "--out",
        str(out),
        "--format",
        "csv",
    )
    rc, stdout, err = run_cli(*args)
    assert rc == 1
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(
            "error: 2 of 4 runs failed (batch_size=1000,lr=0.1,seed=0, "
            "batch_size=1000,lr=10000000000.0,seed=0)"
        )
    )
    assert statuses(out) == {
        "batch_size=64,lr=0.1,seed=0": "done",
        "batch_size=64,lr=10000000000.0,seed=0": "diverged",
        "batch_size=1000,lr=0.1,seed=0": "failed",
        "batch_size=1000,lr=10000000000.0,seed=0": "failed",
    }
    failed = out / "batch_size=1000,lr=0.1,seed=0"
    error = json.loads((failed / "failure.json").read_text())["error"]
    assert error.startswith("the training set has ") and error.endswith(
        "fewer than one batch of 1000; lower --batch-size"
    )
    assert {r["id"]: r["error"] for r in manifest(out)["runs"]}[
        "batch_size=1000,lr=0.1,seed=0"
    ] == error
    assert (
        "training diverged"
        in {r["id"]: r["error"] for r in manifest(out)["runs"]}[
            "batch_size=64,lr=10000000000.0,seed=0"
        ]
    )
    runs = {r["id"]: r for r in read_csv(out / "runs.csv")}
    assert runs["batch_size=1000,lr=0.1,seed=0"]["error"] == error
    assert {r["batch_size"]: r["runs"] for r in read_csv_text(stdout) if r["lr"] == "0.1"} == {
        "64": "1",
        "1000": "1",
    }
    # A rerun leaves failed runs alone unless asked; --retry-failed trains them
    # again, keeping the old record.
    rc, _, err = run_cli(*args)
    assert rc == 1 and "4 of 4 runs already finished" in err
    rc, _, err = run_cli(*args, "--retry-failed")
    assert rc == 1 and "2 of 4 runs already finished" in err
    assert (failed / "failure.1.json").is_file() and (failed / "failure.json").is_file()


def test_dry_run_finds_a_dataset_that_does_not_fit_before_anything_trains(tmp_path: Path) -> None:
    out = tmp_path / "s"
    # lenet_d2l takes 1x28x28, digits are 1x8x8: found by the plan, with the fix that works
    rc, _, err = run_cli(
        "compare",
        "specs/lenet_d2l.yaml",
        TINY,
        "--dataset",
        "digits",
        "--dry-run",
        "--out",
        str(out),
    )
    assert rc == 1 and err.strip() == (
        "error: run lenet_d2l,seed=0: lenet_d2l takes input 1x28x28 but digits gives "
        "1x8x8; pass --resize 28"
    )
    rc, _, err = run_cli(
        "sweep", TINY, "--grid", "set.num_classes=10,5", "--dry-run", "--out", str(out)
    )
    assert rc == 1 and err.strip() == (
        "error: run set.num_classes=5,seed=0: exp_tiny outputs 5 classes but digits has 10; "
        "pass --set num_classes=10"
    )
    rc, _, err = run_cli(
        "sweep",
        "specs/resnet20.yaml",
        "--dataset",
        "cifar100",
        "--input",
        "3,16,16",
        "--resize",
        "16",
        "--dry-run",
        "--out",
        str(out),
    )
    assert rc == 1 and err.strip().endswith(
        "resnet20 outputs 10 classes but cifar100 has 100; pass --set num_classes=100"
    )
    rc, text, err = run_cli(
        "sweep",
        "specs/resnet20.yaml",
        "--dataset",
        "digits",
        "--input",
        "1,8,8",
        "--dry-run",
        "--out",
        str(out),
    )
    assert rc == 0 and "1 runs in" in text, err
    assert not out.exists()  # nothing trained, nothing written


@pytest.mark.slow
def test_a_crashed_training_process_is_a_failed_run_not_a_crashed_sweep(tmp_path: Path) -> None:
    out = tmp_path / "s"
    outcome: list[Any] = []
    worker = threading.Thread(
        target=lambda: outcome.append(
            sweep(TINY, {"epochs": [60, 1]}, out=out, echo=lambda _: None)
        )
    )
    worker.start()
    lock = out / "epochs=60,seed=0" / "archc.lock"
    deadline = time.monotonic() + 120
    pid = None
    while pid is None and time.monotonic() < deadline and worker.is_alive():
        with contextlib.suppress(OSError, ValueError, KeyError):
            pid = json.loads(lock.read_text())["pid"]
        time.sleep(0.02)
    assert pid is not None, "the first run never started"
    os.kill(pid, signal.SIGKILL)  # the sweep's own child, found through the run lock it holds
    worker.join(120)
    assert not worker.is_alive()
    result = outcome[0]
    assert statuses(out) == {"epochs=60,seed=0": "failed", "epochs=1,seed=0": "done"}
    error = {r["id"]: r["error"] for r in result.runs}["epochs=60,seed=0"]
    assert error.startswith("the training process killed by signal SIGKILL (9)")


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_and_trains_only_what_is_missing(tmp_path: Path) -> None:
    out = tmp_path / "s"
    grid = {"lr": [0.05, 0.1, 0.2]}
    argv = [
        sys.executable,
        "-m",
        "archc",
        "sweep",
        TINY,
        "--grid",
        "lr=0.05,0.1,0.2",
        "--epochs",
        "4",
        "--train-subset",
        "1400",
        "--out",
        str(out),
    ]
    # As a user's shell starts it: a clean environment (nothing an earlier test left in os.environ)
    # and SIGINT at its default disposition.
    proc = subprocess.Popen(
        argv,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=clean_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = list(out.glob("*/result.json"))
            partial = [p for p in out.glob("*/last.pt") if not (p.parent / "result.json").exists()]
            if done and partial:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the sweep finished before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the sweep and its children
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr.decode()
    assert b"interrupted" in stderr and b"Traceback" not in stderr
    before = result_mtimes(out)
    state = statuses(out)
    assert set(state.values()) <= {"done", "partial", "pending"} and "partial" in state.values()
    assert {k for k, v in state.items() if v == "done"} == set(before)
    resumed = [k for k, v in state.items() if v == "partial"]

    outcome = sweep(TINY, grid, out=out, epochs=4, train_subset=1400, echo=lambda _: None)
    assert sorted(outcome.trained) == sorted(k for k in state if k not in before)
    assert sorted(outcome.skipped) == sorted(before)
    assert all(v == "done" for v in statuses(out).values())
    assert {k: v for k, v in result_mtimes(out).items() if k in before} == before
    for run in resumed:
        record = json.loads((out / run / "result.json").read_text())
        assert record["resumed_from_epoch"] >= 1 and record["epochs_completed"] == 4
        assert (
            len((out / run / "metrics.csv").read_text().splitlines()) == 5
        )  # header + one row per epoch
    assert len(read_csv(out / "results.csv")) == 3


# comparisons --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_compare_trains_each_spec_with_the_same_recipe_and_averages_seeds(tmp_path: Path) -> None:
    out = tmp_path / "c"
    rc, stdout, err = run_cli(
        "compare", TINY, MLP, "--seeds", "2", "--lr", "0.05", "--out", str(out), "--format", "csv"
    )
    assert rc == 0, err
    rows = read_csv_text(stdout)
    assert [(r["model"], r["done"], r["params"]) for r in rows] == [
        ("exp_tiny", "2", "1386"),
        ("exp_mlp", "2", "1210"),
    ]
    assert all(r["test_acc_std"] != "" for r in rows)  # two seeds: a standard deviation
    assert sorted(statuses(out)) == [
        "exp_mlp,seed=0",
        "exp_mlp,seed=1",
        "exp_tiny,seed=0",
        "exp_tiny,seed=1",
    ]
    for run_dir in out.glob("exp_*"):
        config = json.loads((run_dir / "result.json").read_text())["config"]
        assert config["lr"] == 0.05 and config["seed"] == int(run_dir.name[-1])
    rc, stdout, _ = run_cli(
        "compare",
        TINY,
        MLP,
        "--seeds",
        "2",
        "--lr",
        "0.05",
        "--out",
        str(out),
        "--format",
        "markdown",
    )
    assert rc == 0 and "± " in stdout


def test_dry_run_lists_the_runs_and_trains_nothing(tmp_path: Path) -> None:
    rc, stdout, _ = run_cli(
        "sweep",
        TINY,
        "--grid",
        "batch_size=32,64",
        "--seeds",
        "2",
        "--dry-run",
        "--out",
        str(tmp_path / "s"),
    )
    assert rc == 0
    assert stdout.splitlines()[0] == f"4 runs in {tmp_path / 's'}:"
    assert "batch_size=64,seed=1" in stdout and "1,386 params  pending" in stdout
    assert not (tmp_path / "s").exists()


def test_jobs_are_capped_to_the_cpus_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[int] = []

    class Recorder:  # stands in for the scheduler: records how many parallel runs it was given
        def __init__(
            self, plan: Any, manifest: Any, todo: Any, jobs: int, echo: Any, outcome: Any
        ) -> None:
            started.append(jobs)

        def run(self) -> None:
            pass

    sweep_module = importlib.import_module(
        "archc.experiments.sweep"
    )  # the package exports a function of this name

    monkeypatch.setattr(sweep_module, "machine_cpus", lambda: 2)
    monkeypatch.setattr(sweep_module, "_Scheduler", Recorder)
    plan = make_plan(tmp_path / "s", [Variant("exp_tiny", TINY)], grid_axes(["lr=0.1,0.2"]))
    lines: list[str] = []
    sweep_module.run_sweep(plan, jobs=64, echo=lines.append, write_results=False)
    sweep_module.run_sweep(plan, jobs=2, echo=lines.append, write_results=False)
    assert started == [2, 2]
    assert lines == [
        "note: --jobs 64 lowered to 2: this machine gives archc 2 CPUs (affinity and cgroup quota)"
    ]
