"""Stage 2, validate: check a loaded document against the pydantic models, resolve parameters.

The result, `LoadedSpec`, is what `archc.load()` returns: a typed spec with its parameters
resolved (defaults, then overrides), its input shape and its training defaults.
"""

from __future__ import annotations

import hashlib
import json
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from archc.compiler import expr
from archc.compiler.loader import (
    Document,
    LDict,
    is_union_tag,
    key_position,
    load_file,
    load_text,
    locate,
    position_of,
)
from archc.compiler.spec import SpecModel
from archc.compiler.train_config import TrainConfig, runner_setting_in_spec
from archc.errors import Complaint, Loc, Pos, SpecError, complaints, did_you_mean
from archc.ops.base import MAX_DIM


@dataclass
class LoadedSpec:
    """A validated spec with resolved parameters; compile it with
    `archc.build` or `archc.analyze`."""

    model: SpecModel
    document: Document
    params: dict[str, Any]
    overrides: dict[str, Any]
    input_shape: tuple[int, ...]
    train: TrainConfig | None
    plugins: tuple[str, ...] = field(default=())
    variant: str | None = None  # the zoo name this spec was loaded by, when a family's variant

    @property
    def name(self) -> str:
        return self.variant or self.model.name or Path(self.document.source.path).stem

    @property
    def path(self) -> str:
        return self.document.source.path

    @property
    def source_hash(self) -> str:
        """sha256 of the spec text and the overrides: identifies exactly what was built."""
        digest = hashlib.sha256(self.document.source.text.encode())
        digest.update(json.dumps(self.overrides, sort_keys=True, default=str).encode())
        return digest.hexdigest()


def pydantic_error(
    exc: ValidationError, root: object, where: str = "", model: type[BaseModel] = SpecModel
) -> SpecError:
    """Every complaint of pydantic as one positioned SpecError: one report per place in the spec
    (whichever member of a union complained), and a misspelled key rather than the key it misses."""
    errors = complaints(exc)
    misspelled = {e.loc[:-1] for e in errors if e.kind == "extra_forbidden"}
    reports: list[SpecError] = []
    member: dict[Loc, int | str] = {}  # a union's place -> the member whose complaints are shown
    seen: set[Loc] = set()
    for err in errors:
        loc = err.loc
        if err.kind == "missing" and loc[:-1] in misspelled:
            continue
        tag = next((k for k, step in enumerate(loc) if is_union_tag(step)), len(loc))
        if tag < len(loc) and member.setdefault(loc[:tag], loc[tag]) != loc[tag]:
            continue
        plain = tuple(step for step in loc if not is_union_tag(step))
        if plain in seen:
            continue
        seen.add(plain)
        reports.append(
            _pydantic_report(err, root, prefix=f"{where}: " if where else "", model=model)
        )
    return SpecError.several(reports)


def _pydantic_report(
    err: Complaint, root: object, prefix: str, model: type[BaseModel]
) -> SpecError:
    loc, kind = err.loc, err.kind
    if kind == "extra_forbidden":
        parent_path, key = loc[:-1], loc[-1]
        parent = _walk(root, parent_path)
        siblings = _known_keys(model, parent_path)
        return SpecError(
            f"{prefix}unknown key '{key}'{did_you_mean(str(key), siblings)}",
            key_position(parent, key) or locate(root, loc),
        )
    if kind == "missing":
        dotted = ".".join(str(p) for p in loc)
        hint = (
            " (the input shape without the batch, e.g. input: [3, 32, 32])"
            if loc == ("input",)
            else ""
        )
        return SpecError(f"{prefix}missing required key '{dotted}'{hint}", locate(root, loc[:-1]))
    dotted = ".".join(_spec_path(root, loc))
    value = err.value
    shown = f", got {value!r}" if not isinstance(value, (dict, list)) else ""
    return SpecError(f"{prefix}{dotted}: {err.message}{shown}", locate(root, loc))


def _walk(root: object, path: Loc) -> object:
    node = root
    for step in path:
        try:
            node = node[step]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            break
    return node


def _spec_path(root: object, loc: tuple[Any, ...]) -> list[str]:
    """pydantic's loc without its union tags ('int', 'InitRule'); keys
    present in the spec always stay."""
    parts, node = [], root
    for step in loc:
        if (isinstance(node, dict) and step in node) or (
            isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)
        ):
            parts.append(str(step))
            node = node[step]
        elif not is_union_tag(step):
            parts.append(str(step))
            node = None
    return parts


def _known_keys(model: object, parent_path: Loc) -> list[str]:
    keyed = False  # the previous step was a dict field: this step is one of its keys
    for step in parent_path:
        if keyed:
            keyed = False
            continue
        fields = getattr(model, "model_fields", None)
        if fields is None or step not in fields:
            return []
        annotation = fields[step].annotation
        keyed = getattr(annotation, "__origin__", None) is dict
        model = next(
            (
                a
                for a in getattr(annotation, "__args__", (annotation,))
                if hasattr(a, "model_fields")
            ),
            None,
        )
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def parse_override(text: str) -> tuple[str, Any]:
    """'k=v' from the command line; v is read as a YAML scalar (10, 0.5, true, relu)."""
    if "=" not in text:
        raise SpecError(f"--set expects key=value, got '{text}'")
    key, raw = text.split("=", 1)
    key = key.strip()
    doc = load_text(f"value: {raw}" if raw.strip() else "value: null", "<--set>")
    return key, doc.data["value"]


def _check_override_type(name: str, default: Any, value: Any) -> Any:
    """Catch the mistakes that matter (a string for a number, a number for a flag); a number's
    default also admits a list, as kernel sizes do (3 or [1, 7])."""
    if default is None or value is None:
        return value
    if isinstance(default, bool) != isinstance(value, bool):
        raise SpecError(f"parameter '{name}' expects {type(default).__name__}, got {value!r}")
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    number = (int, float)
    if isinstance(default, number) and not isinstance(value, (*number, list)):
        raise SpecError(f"parameter '{name}' expects a number, got {value!r}")
    if isinstance(default, str) and not isinstance(value, str):
        raise SpecError(f"parameter '{name}' expects a string, got {value!r}")
    return value


def resolve_params(
    declared: LDict,
    overrides: dict[str, Any],
    where: str = "parameter",
    given_at: Any = None,
    outer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Defaults in order (a default may use earlier parameters), overrides replacing them.

    `given_at` is the mapping the overrides were written in (a block call's arguments), for
    positions; `outer` the names defaults may read besides earlier parameters (a block's: the spec
    parameters and the shape of its input).
    """
    for key in overrides:
        if key not in declared:
            raise SpecError(
                f"unknown {where} '{key}'{did_you_mean(key, declared)}; "
                f"known: {', '.join(declared) or 'none'}"
            )
    env: dict[str, Any] = {}
    visible = ChainMap(env, dict(outer or {}))
    for key, default in declared.items():
        if key in overrides:
            try:
                rendered = render(default, visible, position_of(declared, key))
                env[key] = _check_override_type(key, rendered, overrides[key])
            except SpecError as exc:
                raise SpecError(
                    exc.message, position_of(given_at, key) if given_at is not None else None
                ) from None
        else:
            env[key] = render(default, visible, position_of(declared, key))
    return env


def render(value: Any, env: Any, pos: Pos | None) -> Any:
    """Evaluate `${...}` inside a value, as a positioned SpecError on failure."""
    try:
        return expr.render(value, env)
    except expr.ExprError as exc:
        raise SpecError(exc.message, _shift(pos, value, exc.offset)) from None


def _shift(pos: Pos | None, value: object, offset: int) -> Pos | None:
    """Point the caret at the offending character of a one-line expression when we can."""
    if pos is None or not isinstance(value, str) or "${" not in value:
        return pos
    line = pos.source.line(pos.line) or ""
    start = line.find(value, pos.col - 1)
    if start < 0:
        return pos
    inner = value.find("${") + 2
    return Pos(pos.source, pos.line, start + inner + offset + 1)


def validate(
    document: Document,
    overrides: dict[str, Any] | None = None,
    plugins: tuple[str, ...] = (),
    variant: str | None = None,
) -> LoadedSpec:
    """Validate a document and resolve its parameters and input shape."""
    overrides = dict(overrides or {})
    data = document.data
    try:
        model = SpecModel.model_validate(dict(data))
    except ValidationError as exc:
        raise SpecError.several(
            [pydantic_error(exc, data), *_independent_errors(document, exc, overrides, plugins)]
        ) from None
    params_raw = data.get("params", LDict())
    if not isinstance(params_raw, LDict):
        params_raw = LDict()
        params_raw.pos, params_raw.key_pos, params_raw.value_pos = None, {}, {}
    _check_variants(data.get("variants"), params_raw)
    params = resolve_params(params_raw, overrides)
    errors: list[SpecError] = []  # the input shape and the train section are checked independently
    input_raw = data["input"]
    shape: list[Any] = []
    try:
        shape = render(list(input_raw), params, position_of(data, "input"))
        bad = [
            i
            for i, d in enumerate(shape)
            if not (isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_DIM)
        ]
        if bad:
            raise SpecError(
                "input must be positive integers of at most "
                f"2^40 (channels first, no batch), got {shape}",
                position_of(input_raw, bad[0]),
            )
    except SpecError as exc:
        errors.append(exc)
    input_ok = not errors
    train = None
    if data.get("train") is not None:
        try:
            train = _train_config(data["train"], params, position_of(data, "train"))
        except SpecError as exc:
            errors.append(exc)
    if errors:
        if input_ok:  # only the train section failed: the network's own errors too
            errors += _network_errors(
                LoadedSpec(model, document, params, overrides, tuple(shape), None, plugins)
            )
        raise SpecError.several(errors)
    return LoadedSpec(model, document, params, overrides, tuple(shape), train, plugins, variant)


NETWORK_KEYS = ("input", "params", "blocks", "layers", "variants")


def _independent_errors(
    document: Document, exc: ValidationError, overrides: dict[str, Any], plugins: tuple[str, ...]
) -> list[SpecError]:
    """When pydantic refused only keys the network does not depend on (a misspelled top-level key,
    `init`, `train`), the errors of the train section and of the network
    itself, reported with them."""
    data = document.data
    if any(err.loc and err.loc[0] in NETWORK_KEYS for err in complaints(exc)):
        return []
    try:
        params = resolve_params(data.get("params") or LDict(), overrides)
        shape = render(list(data["input"]), params, position_of(data, "input"))
    except (SpecError, TypeError, KeyError):
        return []
    errors: list[SpecError] = []
    if isinstance(data.get("train"), LDict) and not any(
        err.loc[:1] == ("train",) for err in complaints(exc)
    ):
        try:
            _train_config(data["train"], params, position_of(data, "train"))
        except SpecError as train_exc:
            errors.append(train_exc)
    if all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        name = data.get("name") if isinstance(data.get("name"), str) else None
        model = SpecModel.model_construct(name=name, input=list(shape), layers=list(data["layers"]))
        errors += _network_errors(
            LoadedSpec(model, document, params, overrides, tuple(shape), None, plugins)
        )
    return errors


def _network_errors(spec: LoadedSpec) -> list[SpecError]:
    """The expansion's errors of a spec whose other sections failed:
    every error of a file at once."""
    from archc.compiler.expand import expand

    try:
        expand(spec)
    except SpecError as exc:
        return [exc]
    return []


def _check_variants(variants: Any, declared: LDict) -> None:
    """Every parameter a variant sets is declared in `params:` (a typo would select nothing)."""
    for table in (variants or {}).values():
        for key in table or {}:
            if key not in declared:
                raise SpecError(
                    f"variant sets unknown parameter '{key}'{did_you_mean(key, declared)}",
                    key_position(table, key),
                )


def _train_config(raw: Any, params: dict[str, Any], pos: Pos | None) -> TrainConfig:
    train_raw = render(dict(raw), params, pos)
    refused = runner_setting_in_spec(train_raw)
    if refused is not None:
        raise SpecError(refused[1], key_position(raw, refused[0]))
    try:
        return TrainConfig.model_validate(train_raw)
    except ValidationError as exc:
        raise pydantic_error(exc, raw, "train", TrainConfig) from None


def load(
    path_or_text: str | Path, overrides: dict[str, Any] | None = None, plugins: tuple[str, ...] = ()
) -> LoadedSpec:
    """Load and validate a spec from a path, a zoo name (`resnet152`, see archc.zoo) or YAML text
    (when it contains a newline)."""
    from archc import ops, zoo

    for plugin in plugins:
        ops.load_plugin(plugin)
    if isinstance(path_or_text, str) and "\n" in path_or_text:
        document = load_text(path_or_text)
    elif zoo.is_name(path_or_text):
        found = zoo.resolve(str(path_or_text))
        # the variant's values become overrides, so a run records everything needed to rebuild it
        overrides = {**found.params, **(overrides or {})}
        return validate(
            load_file(found.path), overrides, plugins, found.name if found.family else None
        )
    else:
        document = load_file(path_or_text)
    return validate(document, overrides, plugins)
