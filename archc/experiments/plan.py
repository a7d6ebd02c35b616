"""A sweep's plan: every run's spec, overrides and recipe, checked in full before anything trains.

A plan is variants (a spec with fixed overrides: the models of a comparison, or ablations) times
the grid's cartesian product times seeds. Each run's spec is loaded and its shapes inferred, and
its training config validated, so a typo or an impossible value fails in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from archc.compiler.train_config import RUNTIME_FIELDS, TrainConfig
from archc.errors import SpecError, option_error_message
from archc.experiments.errors import ExperimentError
from archc.experiments.grid import (
    MODEL,
    SEED,
    SPEC_PREFIX,
    Axis,
    Value,
    check_axes,
    check_spec_key,
    check_train_key,
    format_value,
    product,
    run_id,
)

if TYPE_CHECKING:
    from archc.compiler.ir import Graph
    from archc.compiler.validate import LoadedSpec


@dataclass(frozen=True)
class Variant:
    """A model in a comparison: a spec file plus fixed spec overrides and training options."""

    name: str
    spec: str
    set: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.spec,
            "set": _plain(self.set),
            "config": _plain(self.config),
        }


@dataclass
class RunSpec:
    """One training run of a sweep: where it goes and exactly what it trains."""

    id: str
    variant: str
    values: dict[str, Any]  # what identifies the run in tables: model, grid values, seed
    spec: str
    set: dict[str, Any]
    config: dict[str, Any]  # TrainConfig overrides on top of the spec's train: section
    params: int = 0
    spec_hash: str = ""  # what the trainer records as spec.hash for this spec and overrides
    recipe: dict[str, Any] = field(default_factory=dict)  # the full resolved training config

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "variant": self.variant,
            "values": _plain(self.values),
            "spec": self.spec,
            "set": _plain(self.set),
            "config": _plain(self.config),
            "params": self.params,
            "spec_hash": self.spec_hash,
        }

    def mismatch(self, record: dict[str, Any]) -> str | None:
        """Why a result record found in this run's directory is not from this run, or None."""
        spec = record.get("spec") or {}
        if spec.get("hash") != self.spec_hash:
            return (
                "it was trained from another spec or other --set values "
                f"({spec.get('name')}, {record.get('overrides', {}).get('spec')})"
            )
        try:
            stored = TrainConfig.model_validate(record.get("config") or {})
        except ValidationError:
            return "its training config is unreadable"
        diff = TrainConfig.model_validate(self.recipe).recipe_differences(stored)
        if diff:
            return "it was trained with " + ", ".join(
                f"{k}={format_value(v[1])} (this run: {format_value(v[0])})"
                for k, v in list(diff.items())[:3]
            )
        return None


@dataclass
class SweepPlan:
    """Everything a sweep will run, and the definition a resumed sweep must match."""

    out: Path
    kind: str
    variants: list[Variant]
    axes: list[Axis]
    seeds: list[int]
    base_config: dict[str, Any]
    base_set: dict[str, Any]
    plugins: tuple[str, ...]
    input_shape: tuple[int, ...] | None
    spec_hashes: dict[str, str]
    runs: list[RunSpec]
    notes: list[str] = field(default_factory=list)

    def definition(self) -> dict[str, Any]:
        """What every run shares; a sweep directory only ever holds runs of one definition."""
        return _plain(
            {
                "variants": [v.as_dict() for v in self.variants],
                "spec_hashes": self.spec_hashes,
                "base_config": self.base_config,
                "base_set": self.base_set,
                "plugins": list(self.plugins),
                "input_shape": list(self.input_shape) if self.input_shape else None,
                "grid_keys": [a.key for a in self.axes],
            }
        )

    def grid(self) -> dict[str, list[Value]]:
        return _plain({a.key: list(a.values) for a in self.axes})


def make_plan(
    out: str | Path,
    variants: list[Variant],
    axes: list[Axis] = (),  # type: ignore[assignment]
    seeds: list[int] | None = None,
    base_config: dict[str, Any] | None = None,
    base_set: dict[str, Any] | None = None,
    plugins: tuple[str, ...] = (),
    input_shape: tuple[int, ...] | None = None,
    kind: str = "sweep",
) -> SweepPlan:
    """Check and expand a sweep; raises ExperimentError (or SpecError) naming the first problem."""
    axes = list(axes)
    base_config = dict(base_config or {})
    base_set = dict(base_set or {})
    if not variants:
        raise ExperimentError("nothing to run: give at least one spec")
    names = [v.name for v in variants]
    for name in names:
        if not name or names.count(name) > 1:
            raise ExperimentError(f"model names must be distinct and non-empty, got {names}")
    check_axes(axes)
    for key in base_config:
        check_train_key(key, "training option")
    seed_axis = next((a for a in axes if a.key == SEED), None)
    if seed_axis is not None and (seeds is not None or SEED in base_config):
        raise ExperimentError(
            "give the seeds either as --grid seed=... or as --seeds/--seed, not both"
        )
    if seed_axis is not None:
        seeds = [_seed(v) for v in seed_axis.values]
        axes = [a for a in axes if a.key != SEED]
    elif seeds is None:
        seeds = [int(base_config.pop(SEED, 0))]
    base_config.pop(SEED, None)
    loader = _SpecCache(plugins, input_shape)
    spec_hashes = {}
    for variant in variants:
        declared = loader.params(variant.spec)
        for key in [*base_set, *variant.set]:
            check_spec_key(SPEC_PREFIX + key, declared, variant.spec)
        for axis in axes:
            if axis.is_spec:
                check_spec_key(axis.key, declared, variant.spec)
        for key in variant.config:
            check_train_key(key, f"training option of {variant.name}")
        spec_hashes[variant.name] = loader.text_hash(variant.spec)

    runs: list[RunSpec] = []
    for variant in variants:
        for point in product(axes):
            for seed in seeds:
                spec_set = {
                    **base_set,
                    **variant.set,
                    **{
                        k[len(SPEC_PREFIX) :]: v
                        for k, v in point.items()
                        if k.startswith(SPEC_PREFIX)
                    },
                }
                config = {
                    **base_config,
                    **variant.config,
                    **{k: v for k, v in point.items() if not k.startswith(SPEC_PREFIX)},
                    SEED: seed,
                }
                values = ({MODEL: variant.name} if len(variants) > 1 else {}) | point | {SEED: seed}
                runs.append(
                    RunSpec(run_id(values), variant.name, values, variant.spec, spec_set, config)
                )
    _disambiguate(runs)
    for run in runs:
        run.params, run.spec_hash, run.recipe = loader.check(run)
    plan = SweepPlan(
        Path(out),
        kind,
        list(variants),
        axes,
        list(seeds),
        base_config,
        base_set,
        tuple(plugins),
        tuple(input_shape) if input_shape else None,
        spec_hashes,
        runs,
    )
    plan.notes = _recipe_notes(plan, loader)
    return plan


def _seed(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ExperimentError(f"seeds must be non-negative integers, got {format_value(value)}")
    return value


def _disambiguate(runs: list[RunSpec]) -> None:
    """Points whose names sanitise to the same slug get a hash of their values appended."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.id] = counts.get(run.id, 0) + 1
    for run in runs:
        if counts[run.id] > 1:
            digest = hashlib.sha1(
                json.dumps(_plain(run.values), sort_keys=True).encode()
            ).hexdigest()[:8]
            run.id = f"{run.id}-{digest}"


class _SpecCache:
    """Loads each (spec, overrides) once: validation, shape inference
    and the spec's train: defaults."""

    def __init__(self, plugins: tuple[str, ...], input_shape: tuple[int, ...] | None) -> None:
        self.plugins = tuple(plugins)
        self.input_shape = input_shape
        self.loaded: dict[str, LoadedSpec] = {}

    def load(self, spec: str, spec_set: dict[str, Any]) -> LoadedSpec:
        from archc.compiler.validate import load

        key = json.dumps([spec, _plain(spec_set)], sort_keys=True)
        if key not in self.loaded:
            if not Path(spec).is_file():
                raise ExperimentError(f"no such spec file: {spec}")
            self.loaded[key] = load(spec, spec_set, self.plugins)
        return self.loaded[key]

    def params(self, spec: str) -> dict[str, Any]:
        return self.load(spec, {}).params

    def text_hash(self, spec: str) -> str:
        return hashlib.sha256(self.load(spec, {}).document.source.text.encode()).hexdigest()

    def config(self, spec: str, spec_set: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
        loaded = self.load(spec, spec_set)
        base = loaded.train.model_dump(exclude_unset=True) if loaded.train is not None else {}
        return TrainConfig.model_validate({**base, **overrides})

    def check(self, run: RunSpec) -> tuple[int, str, dict[str, Any]]:
        """Validate the run's spec, shapes and config: (parameter
        count, spec hash, resolved config)."""
        from archc.api import compile_graph, fingerprint

        try:
            loaded = self.load(run.spec, run.set)
            graph = compile_graph(loaded, input_shape=self.input_shape)
        except SpecError as exc:
            raise ExperimentError(f"run {run.id}: {str(exc).splitlines()[0]}") from None
        try:
            config = self.config(run.spec, run.set, run.config)
        except ValidationError as exc:
            raise ExperimentError(f"run {run.id}: {option_error_message(exc)}") from None
        problem = _misfit(loaded, graph, config, self.input_shape)
        if problem:
            raise ExperimentError(f"run {run.id}: {problem}")
        return (
            int(graph.total_params),
            fingerprint(loaded, self.input_shape),
            config.model_dump(mode="json"),
        )


def _misfit(
    loaded: LoadedSpec, graph: Graph, config: TrainConfig, input_shape: tuple[int, ...] | None
) -> str | None:
    """Why the run's model cannot train on its dataset (input shape or class count), or None: the
    trainer's own check, made before anything trains."""
    from archc.api import with_input
    from archc.trainer.fit import dataset_input, mismatch

    given, classes = dataset_input(config, tuple(graph.input_shape))
    if given is not None and tuple(given) != tuple(graph.input_shape):
        return mismatch(with_input(loaded, input_shape), given, config.dataset)
    out = graph.shape_of(graph.output)
    if classes is not None and len(out) == 1 and out[0] != classes:
        return (
            f"{graph.name} outputs {out[0]} classes but {config.dataset} "
            f"has {classes}; pass --set num_classes={classes}"
        )
    return None


def _recipe_notes(plan: SweepPlan, loader: _SpecCache) -> list[str]:
    """Warn when the models of a comparison train with different recipes
    (their train: sections differ)."""
    if len(plan.variants) < 2:
        return []
    configs = {}
    for v in plan.variants:
        overrides = {**plan.base_config, **v.config}
        configs[v.name] = loader.config(v.spec, {**plan.base_set, **v.set}, overrides)
    first_name, first = next(iter(configs.items()))
    notes = []
    for name, cfg in list(configs.items())[1:]:
        diff = {
            k: d
            for k, d in cfg.recipe_differences(first).items()
            if k not in RUNTIME_FIELDS and k != SEED
        }
        given = (
            set(plan.base_config)
            | set(plan.variants[0].config)
            | set(next(v for v in plan.variants if v.name == name).config)
        )
        diff = {k: d for k, d in diff.items() if k not in given}
        if diff:
            shown = ", ".join(
                f"{k} {format_value(d[0])} vs {format_value(d[1])}"
                for k, d in list(diff.items())[:4]
            )
            notes.append(
                f"{name} trains with a different recipe than {first_name} ({shown}) "
                "from its spec's train: section; pass the option to use one recipe"
            )
    return notes


def _plain(value: object) -> Any:
    """JSON-shaped copy (tuples to lists, YAML containers to dicts and lists)."""
    return json.loads(json.dumps(value, default=str))
