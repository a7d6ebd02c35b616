"""Comparisons: the models of `archc compare SPEC...`, and tables of runs that already exist.

Runs gathered from several directories (`archc compare --runs`) are labelled by what differs
between them: the spec, the training options that change what is computed, and spec overrides;
runs equal in all of that but their seed are one row, averaged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from archc.compiler.train_config import RUNTIME_FIELDS
from archc.experiments.errors import ExperimentError
from archc.experiments.grid import MODEL, SEED, SPEC_PREFIX
from archc.experiments.plan import Variant
from archc.experiments.results import RunResult, load_run, load_sweep
from archc.experiments.rundir import MANIFEST, is_run_dir


def spec_variants(specs: list[str]) -> list[Variant]:
    """One variant per spec file, named by the file's stem (made unique with its parent folder)."""
    names = [Path(s).stem for s in specs]
    variants = []
    for spec, name in zip(specs, names, strict=True):
        if names.count(name) > 1:
            name = f"{Path(spec).parent.name}/{name}"
        variants.append(Variant(name, spec))
    if len({v.name for v in variants}) != len(variants):
        raise ExperimentError(f"the same spec is given twice: {', '.join(specs)}")
    return variants


def collect_runs(dirs: list[str | Path]) -> list[RunResult]:
    """Runs from run directories, sweep directories, or folders of
    run directories (e.g. runs/NAME)."""
    runs: list[RunResult] = []
    loose: list[RunResult] = []  # runs outside any manifest, labelled by their differences
    for item in dirs:
        path = Path(item)
        if not path.is_dir():
            raise ExperimentError(f"no such directory: {path}")
        if (path / MANIFEST).is_file():
            runs += load_sweep(path)
            continue
        if is_run_dir(path):
            found = [load_run(path, None, _run_name(path))]
        else:
            children = sorted(p for p in path.iterdir() if p.is_dir() and is_run_dir(p))
            if not children:
                raise ExperimentError(
                    f"{path} is not a run directory (no result.json), a sweep (no {MANIFEST}) "
                    "or a folder of runs"
                )
            found = [load_run(p, None, _run_name(p)) for p in children]
        runs += found
        loose += found
    seen: set[Path] = set()
    unique = []
    for run in runs:
        key = run.dir.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(run)
    label_by_differences([r for r in loose if any(r is u for u in unique)])
    return unique


def _run_name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def label_by_differences(runs: list[RunResult]) -> None:
    """Set each run's values to its spec name plus the recipe options and --set
    values that differ between runs."""
    records = [r.record or {} for r in runs]
    configs = [rec.get("config", {}) for rec in records]
    keys: list[str] = []
    for cfg in configs:
        keys += [k for k in cfg if k not in keys and k not in RUNTIME_FIELDS and k != SEED]
    varying = [k for k in keys if len({_key(c.get(k)) for c in configs}) > 1]
    sets = [rec.get("overrides", {}).get("spec", {}) for rec in records]
    set_keys: list[str] = []
    for s in sets:
        set_keys += [k for k in s if k not in set_keys]
    varying_sets = [k for k in set_keys if len({_key(s.get(k)) for s in sets}) > 1]
    for run, rec, cfg, spec_set in zip(runs, records, configs, sets, strict=True):
        values: dict[str, Any] = {MODEL: rec.get("spec", {}).get("name", run.id)}
        values |= {k: cfg.get(k) for k in varying}
        values |= {SPEC_PREFIX + k: spec_set.get(k, "(default)") for k in varying_sets}
        if not rec:
            values[MODEL] = run.id
        values[SEED] = cfg.get(SEED)
        run.values = values


def _key(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)
