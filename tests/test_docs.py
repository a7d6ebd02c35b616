"""The docs stay true: generated op tables and schema are current,
examples and documented commands run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from archc.compiler.loader import load_file
from archc.docs_gen import SCHEMA_FILE, SPEC_LANGUAGE, between_markers, op_tables
from archc.schema import spec_json_schema
from tests.conftest import clean_env

REPO = Path(__file__).resolve().parent.parent
ARCHC = [sys.executable, "-m", "archc"]
PLUGIN_DIR = REPO / "examples" / "plugin_op"


def test_op_tables_are_current() -> None:
    committed = between_markers(SPEC_LANGUAGE.read_text())
    assert committed == op_tables(), "docs/spec-language.md's op tables are stale: run `make docs`"


def test_schema_file_is_current() -> None:
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == json.loads(json.dumps(spec_json_schema())), (
        "archc.schema.json is stale: run `make docs`"
    )


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _plain(value):
    """LDict/LList -> dict/list (the validator checks types with isinstance, but keep it plain)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize("path", sorted((REPO / "specs").glob("*.yaml")), ids=lambda p: p.stem)
def test_zoo_specs_validate_against_schema(validator, path: Path) -> None:
    data = _plain(load_file(path).data)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)
    ]
    assert not errors, "\n".join(errors[:5])


def test_schema_rejects_misspelled_top_level_key(validator) -> None:
    data = _plain(load_file(REPO / "specs" / "lenet5.yaml").data)
    data["layres"] = data.pop("layers")
    assert not validator.is_valid(data)


def test_schema_rejects_misspelled_op_argument(validator) -> None:
    data = {"input": [3, 8, 8], "layers": [{"conv": {"out": 4, "kernal": 3}}, "flatten"]}
    assert not validator.is_valid(data)
    data["layers"][0]["conv"] = {"out": 4, "kernel": 3}
    assert validator.is_valid(data)


@pytest.mark.slow
def test_plugin_example() -> None:
    spec = str(PLUGIN_DIR / "scaled.yaml")
    env = clean_env(PYTHONPATH=str(PLUGIN_DIR))
    ok = subprocess.run(
        [*ARCHC, "check", spec, "--plugin", "archc_scale_op"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    missing = subprocess.run(
        [*ARCHC, "check", spec], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert "unknown op" in missing.stderr + missing.stdout


@pytest.mark.slow
def test_api_tour_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "api_tour.py")],
        env=clean_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 largest layers" in result.stdout and "epoch 1" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("script", ["compare_small_cnns.py", "lenet_hyperparameter_grid.py"])
def test_experiment_scripts_run(tmp_path: Path, script: str) -> None:
    """The scripts behind docs/experiments.md, as a one-epoch smoke run into tmp_path."""
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / script),
            "--quick",
            "--runs",
            str(runs),
            "--docs",
            str(docs),
        ],
        env=clean_env(OMP_NUM_THREADS="1"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert {"results.md", "results.csv", "curves.png", "report.html"} <= {
        p.name for p in docs.iterdir()
    }
    assert "| " in (docs / "results.md").read_text()


def _install_metadata(site: Path, entry_points: str) -> None:
    """What `pip install examples/plugin_op` leaves for importlib.metadata:
    a dist-info with entry points."""
    info = site / "archc_scale_op-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: archc-scale-op\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.mark.slow
def test_plugin_package_entry_point_registers_the_op(tmp_path: Path) -> None:
    import tomllib

    project = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text())
    group = project["project"]["entry-points"]["archc.ops"]
    _install_metadata(tmp_path, "[archc.ops]\n" + "".join(f"{k} = {v}\n" for k, v in group.items()))
    env = clean_env(PYTHONPATH=f"{tmp_path}:{PLUGIN_DIR}")
    result = subprocess.run(
        [*ARCHC, "check", str(PLUGIN_DIR / "scaled.yaml")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_installed_plugin_is_a_clear_error(tmp_path: Path) -> None:
    _install_metadata(tmp_path, "[archc.ops]\nscale = archc_no_such_module\n")
    result = subprocess.run(
        [*ARCHC, "check", str(PLUGIN_DIR / "scaled.yaml")],
        env=clean_env(PYTHONPATH=str(tmp_path)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        "cannot load op plugin 'archc_no_such_module' (archc.ops entry point of archc-scale-op)"
        in result.stderr
    )


def test_op_argument_types_read_like_python() -> None:
    from archc.commands.docs import describe_ops

    rows = {row["name"]: {a["name"]: a["type"] for a in row["args"]} for row in describe_ops()}
    assert rows["conv"]["padding"] == "int | list[int] | 'same' | 'valid'"
    assert (rows["conv"]["bias"], rows["bn"]["momentum"], rows["maxpool"]["stride"]) == (
        "bool",
        "float | null",
        "int | list[int] | null",
    )


def test_sources_are_named_by_what_they_are() -> None:
    """Docs, specs, examples and the package cite their source posts
    by subject, never as 'seed 00N'."""
    import re

    pattern = re.compile(r"seed[ _-]?00[0-4]", re.I)
    roots = [REPO / "README.md", REPO / "docs", REPO / "examples", REPO / "specs", REPO / "archc"]
    files = [
        p for root in roots for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file()
    ]
    offenders = []
    for path in files:
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if pattern.search(text) or pattern.search(path.name):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
