"""Grid axes: `KEY=V1,V2` parsing, key checks with did-you-mean, the cartesian product and run ids.

A key is a TrainConfig field (`lr`, `batch_size`, `augment`, ...) or `set.PARAM` for a spec
parameter; values are YAML scalars, so `true`, `1e-3` and `[0.9, 0.99]` mean what they say.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from archc.compiler.train_config import TrainConfig
from archc.errors import SpecError, did_you_mean
from archc.experiments.errors import ExperimentError

SPEC_PREFIX = "set."
SEED = "seed"
MODEL = "model"
# TrainConfig fields a sweep sets itself for every run, with the reason shown when a grid names one.
MANAGED = {
    "out": "each run gets its own directory under the sweep's --out",
    "resume": "a sweep always resumes unfinished runs",
    "log": "each run logs plain lines to its train.log",
}
MAX_ID_LENGTH = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


# A grid value as plain JSON data (what a YAML scalar or flow list parses to).
Value = None | bool | int | float | str | list["Value"] | dict[str, "Value"]


@dataclass(frozen=True)
class Axis:
    """One grid dimension: a key and the values it takes, in the order given."""

    key: str
    values: tuple[object, ...]  # grid Values from the command line, any values from Python

    @property
    def is_spec(self) -> bool:
        return self.key.startswith(SPEC_PREFIX)

    @property
    def param(self) -> str:
        """The spec parameter of a `set.PARAM` axis."""
        return self.key[len(SPEC_PREFIX) :]


def normalize_key(key: str) -> str:
    """`batch-size` and `batch_size` name the same option, as on the command line; spec
    parameters keep their spelling."""
    key = key.strip()
    if key.startswith(SPEC_PREFIX):
        return SPEC_PREFIX + key[len(SPEC_PREFIX) :].strip()
    return key.replace("-", "_")


def split_values(raw: str) -> list[str]:
    """Split on commas outside brackets and quotes: `0.1,[0.9,0.99],'a,b'` has three values."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(raw):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(raw[start:i])
            start = i + 1
    parts.append(raw[start:])
    return [p.strip() for p in parts]


def parse_scalar(raw: str) -> Value:
    """A YAML scalar (or flow list) as plain JSON data."""
    from archc.compiler.validate import parse_override

    try:
        value = parse_override(f"value={raw}")[1]
    except SpecError as exc:
        raise ExperimentError(f"cannot read grid value {raw!r}: {exc.message}") from None
    return json.loads(json.dumps(value))


def parse_axis(text: str) -> Axis:
    """`KEY=V1,V2,...` -> Axis; the key is normalised but not yet checked against a spec."""
    if "=" not in text:
        raise ExperimentError(f"--grid expects KEY=V1,V2,..., got {text!r}")
    key, raw = text.split("=", 1)
    key = normalize_key(key)
    if not key or key == SPEC_PREFIX:
        raise ExperimentError(f"--grid {text!r} has no key")
    tokens = split_values(raw)
    if any(t == "" for t in tokens):
        raise ExperimentError(f"--grid {key}: empty value in {raw!r}")
    values = tuple(parse_scalar(t) for t in tokens)
    seen: list[Value] = []
    for value in values:
        if value in seen:
            raise ExperimentError(f"--grid {key} lists {format_value(value)} twice")
        seen.append(value)
    return Axis(key, values)


def check_train_key(key: str, where: str = "grid key") -> None:
    """Refuse keys that are not TrainConfig fields, or that the sweep manages itself."""
    if key in MANAGED:
        raise ExperimentError(f"{where} '{key}' cannot vary in a sweep: {MANAGED[key]}")
    if key not in TrainConfig.model_fields:
        hint = did_you_mean(key, [k for k in TrainConfig.model_fields if k not in MANAGED])
        raise ExperimentError(
            f"unknown {where} '{key}'{hint}; use a training option such as lr, "
            "optimizer, batch_size, augment, or set.PARAM for a spec parameter"
        )


def check_spec_key(key: str, params: dict[str, Any], spec_name: str) -> None:
    """Refuse `set.PARAM` for a parameter the spec does not declare."""
    param = key[len(SPEC_PREFIX) :]
    if param not in params:
        known = ", ".join(params) or "none"
        raise ExperimentError(
            f"{spec_name} has no parameter "
            f"'{param}'{did_you_mean(param, params)}; its parameters: {known}"
        )


def check_axes(axes: list[Axis]) -> None:
    """Keys must be distinct after normalisation, and training keys must exist."""
    seen: set[str] = set()
    for axis in axes:
        if axis.key in seen:
            raise ExperimentError(
                f"--grid {axis.key} is given twice; list all its values in one --grid"
            )
        seen.add(axis.key)
        if not axis.is_spec:
            check_train_key(axis.key)


def product(axes: list[Axis]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, the last axis varying fastest."""
    return [
        dict(zip([a.key for a in axes], combo, strict=True))
        for combo in itertools.product(*(a.values for a in axes))
    ]


def format_value(value: object) -> str:
    """The value as it would be typed: true, 0.001, sgd, [0.9, 0.99]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def run_id(values: dict[str, Any]) -> str:
    """A readable, filesystem-safe directory name for a grid point: `optimizer=adam,lr=0.01,seed=0`.

    Unsafe characters become `_`; an over-long name is cut and suffixed with a hash of the point so
    that it stays unique.
    """
    parts = [value_slug(v) if k == MODEL else f"{k}={value_slug(v)}" for k, v in values.items()]
    slug = ",".join(parts) or "run"
    if slug.startswith("."):
        slug = "_" + slug[1:]
    if len(slug) > MAX_ID_LENGTH:
        digest = hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]
        slug = f"{slug[: MAX_ID_LENGTH - 11]}-{digest}"
    return slug


def value_slug(value: object) -> str:
    return _UNSAFE.sub("_", format_value(value))
