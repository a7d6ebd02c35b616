"""OUT/sweep.json: a sweep's definition, grid and per-run status, written atomically.

A sweep directory holds runs of one definition (specs, fixed options, grid keys). Running again
with the same definition resumes it; new grid values or seeds add runs; anything else is refused
before training, because the results table would mix runs of different experiments.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from archc.experiments.errors import ExperimentError
from archc.experiments.files import write_file
from archc.experiments.plan import SweepPlan
from archc.experiments.rundir import MANIFEST, read_json

FORMAT = "archc-sweep"
VERSION = 1


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest in out, None when there is none; ExperimentError
    when it is not a sweep manifest."""
    path = out / MANIFEST
    if not path.exists():
        return None
    data = read_json(path)
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or not isinstance(data.get("runs"), list)
    ):
        raise ExperimentError(
            f"{path} is not a readable archc sweep manifest; move it away or choose another --out"
        )
    if data.get("version") != VERSION:
        raise ExperimentError(
            f"{path} has manifest version {data.get('version')}; this archc reads version {VERSION}"
        )
    return data


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_file(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def new_manifest(plan: SweepPlan) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": plan.kind,
        "created": now,
        "updated": now,
        "definition": plan.definition(),
        "grid": plan.grid(),
        "seeds": list(plan.seeds),
        "runs": [{**run.as_dict(), "status": "pending", "error": None} for run in plan.runs],
    }


def merge(existing: dict[str, Any] | None, plan: SweepPlan) -> dict[str, Any]:
    """The manifest for running plan in a directory that may already hold a sweep.

    Runs already recorded keep their entries (also those the new grid no longer names: their
    results stay part of this sweep); new grid values and seeds are appended.
    """
    fresh = new_manifest(plan)
    if existing is None:
        return fresh
    check_same_definition(existing["definition"], fresh["definition"], plan.out)
    runs = {r["id"]: r for r in existing["runs"]}
    for run in fresh["runs"]:
        if run["id"] in runs:
            kept = runs[run["id"]]
            if {k: kept.get(k) for k in ("spec", "set", "config")} != {
                k: run[k] for k in ("spec", "set", "config")
            }:
                raise ExperimentError(
                    f"{plan.out / MANIFEST} records run {run['id']} "
                    "with other settings; choose another --out"
                )
        else:
            runs[run["id"]] = run
    grid = {k: list(v) for k, v in existing.get("grid", {}).items()}
    for key, values in fresh["grid"].items():
        grid[key] = grid.get(key, []) + [v for v in values if v not in grid.get(key, [])]
    seeds = list(existing.get("seeds", [])) + [
        s for s in fresh["seeds"] if s not in existing.get("seeds", [])
    ]
    return {**existing, "grid": grid, "seeds": seeds, "runs": list(runs.values())}


def check_same_definition(old: dict[str, Any], new: dict[str, Any], out: Path) -> None:
    """Refuse, naming the first difference, to add runs of another
    experiment to a sweep directory."""
    if old == new:
        return
    labels = {
        "variants": "specs or models",
        "spec_hashes": "spec file contents",
        "base_config": "fixed training options",
        "base_set": "--set overrides",
        "plugins": "plugins",
        "input_shape": "--input",
        "grid_keys": "grid keys",
    }
    advice = "rerun with the same options to resume it, or choose another --out"
    for key, label in labels.items():
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key == "spec_hashes" and isinstance(before, dict) and isinstance(after, dict):
            changed = sorted(k for k in after if before.get(k) != after[k])
            raise ExperimentError(
                f"{out}: the spec of {', '.join(changed)} changed since this sweep started; "
                "its runs would mix two models; choose another --out"
            )
        if isinstance(before, dict) and isinstance(after, dict):
            shown = "; ".join(
                f"{k}: {_shown(before, k)} -> {_shown(after, k)}"
                for k in sorted(set(before) | set(after))
                if before.get(k) != after.get(k)
            )
            raise ExperimentError(f"{out} holds a sweep with other {label} ({shown}); {advice}")
        raise ExperimentError(
            f"{out} holds a sweep with other {label} "
            f"({_short(before)}, now {_short(after)}); {advice}"
        )
    raise ExperimentError(f"{out} holds a different sweep; choose another --out")


def _shown(values: dict[str, Any], key: str) -> str:
    return _short(values[key]) if key in values else "unset"


def _short(value: object, limit: int = 120) -> str:
    text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."
