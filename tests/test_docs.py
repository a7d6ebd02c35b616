"""The docs stay true: generated op tables and schema are current, examples and documented commands run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archc.docs_gen import SCHEMA_FILE, SPEC_LANGUAGE, between_markers, op_tables
from archc.loader import load_file
from archc.schema import spec_json_schema

REPO = Path(__file__).resolve().parent.parent
ARCHC = [sys.executable, "-m", "archc"]
PLUGIN_DIR = REPO / "examples" / "plugin_op"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra)
    return env


def test_op_tables_are_current() -> None:
    committed = between_markers(SPEC_LANGUAGE.read_text())
    assert committed == op_tables(), "docs/spec-language.md's op tables are stale: run `make docs`"


def test_schema_file_is_current() -> None:
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == json.loads(json.dumps(spec_json_schema())), "archc.schema.json is stale: run `make docs`"


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
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]
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


def test_plugin_example() -> None:
    spec = str(PLUGIN_DIR / "scaled.yaml")
    env = _env(PYTHONPATH=str(PLUGIN_DIR))
    ok = subprocess.run([*ARCHC, "check", spec, "--plugin", "archc_scale_op"], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    missing = subprocess.run([*ARCHC, "check", spec], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert "unknown op" in missing.stderr + missing.stdout


def test_api_tour_runs() -> None:
    result = subprocess.run([sys.executable, str(REPO / "examples" / "api_tour.py")], env=_env(), cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 largest layers" in result.stdout and "epoch 1" in result.stdout
