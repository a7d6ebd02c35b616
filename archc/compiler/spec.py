"""Stage 2, validate: the pydantic models of a spec file, the single source of truth for its keys.

Layer lists are validated item by item by the expander (their keys are op and block names, known
only at run time), so here they are `list[Any]`; everything else is typed. `archc schema` emits
the JSON Schema of these models, with the layer grammar filled in from the op registry.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from archc.compiler.train_config import TrainConfig

Scalar = int | float | bool | str | None
# lists and mappings may nest: stage tables such as [{planes: 64, blocks: 3}, ...]
ParamValue = Scalar | list[Any] | dict[str, Any]

InitScheme = Literal[
    "torch",
    "kaiming_normal",
    "kaiming_uniform",
    "xavier_normal",
    "xavier_uniform",
    "normal",
    "trunc_normal",
    "uniform",
    "zeros",
    "ones",
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class InitRule(Strict):
    """How to initialise the weights of one kind of layer; biases become `bias`."""

    scheme: InitScheme = "torch"
    mode: Literal["fan_in", "fan_out"] = "fan_in"
    nonlinearity: Literal["relu", "leaky_relu", "linear", "sigmoid", "tanh", "selu"] = "leaky_relu"
    a: float = Field(0.0, description="negative slope for kaiming with leaky_relu")
    mean: float = 0.0
    std: float = Field(0.01, gt=0)
    low: float = -0.1
    high: float = 0.1
    gain: float = Field(1.0, gt=0)
    bias: float | None = Field(0.0, description="constant for biases; null keeps torch's default")

    model_config = ConfigDict(extra="forbid", defer_build=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounds_in_order(self) -> InitRule:
        if self.scheme == "uniform" and not self.low < self.high:
            raise ValueError(f"uniform needs low < high, got low {self.low} and high {self.high}")
        return self

    def weight_source(self, tensor: str) -> str:
        """The `nn.init` call of this rule on a weight, as Python source
        (the generated model runs it)."""
        kaiming = "".join(
            f", {k}={v!r}"
            for k, v, default in (
                ("a", self.a, 0.0),
                ("mode", self.mode, "fan_in"),
                ("nonlinearity", self.nonlinearity, "leaky_relu"),
            )
            if v != default
        )
        calls = {
            "kaiming_normal": f"kaiming_normal_({tensor}{kaiming})",
            "kaiming_uniform": f"kaiming_uniform_({tensor}{kaiming})",
            "xavier_normal": f"xavier_normal_({tensor}, gain={self.gain!r})",
            "xavier_uniform": f"xavier_uniform_({tensor}, gain={self.gain!r})",
            "normal": f"normal_({tensor}, mean={self.mean!r}, std={self.std!r})",
            "trunc_normal": (
                f"trunc_normal_({tensor}, mean={self.mean!r}, "
                f"std={self.std!r}, a={-2 * self.std!r}, b={2 * self.std!r})"
            ),
            "uniform": f"uniform_({tensor}, {self.low!r}, {self.high!r})",
            "zeros": f"zeros_({tensor})",
            "ones": f"ones_({tensor})",
            "torch": "",
        }
        return f"nn.init.{calls[self.scheme]}" if calls[self.scheme] else ""


class InitSpec(Strict):
    """Per-layer-kind initialisation. A bare scheme name is shorthand for {scheme: name}."""

    conv: InitRule | InitScheme = "torch"
    linear: InitRule | InitScheme = "torch"
    norm: InitRule | InitScheme = "torch"

    @field_validator("norm")
    @classmethod
    def _norm_has_no_fan(cls, value: InitRule | str) -> InitRule | str:
        scheme = value.scheme if isinstance(value, InitRule) else value
        if scheme.startswith(("kaiming", "xavier")):
            raise ValueError(
                f"{scheme} needs a fan-in, which the 1-D weights of norm layers lack; "
                "use normal, trunc_normal, uniform, ones, zeros or torch"
            )
        return value

    def rule(self, kind: str) -> InitRule:
        value = getattr(self, kind)
        return value if isinstance(value, InitRule) else InitRule(scheme=value)


class BlockDef(Strict):
    """A reusable, parameterised group of layers: `blocks: {Name: {params: ..., layers: ...}}`."""

    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="arguments with defaults; null means required"
    )
    layers: list[Any] = Field(min_length=1)
    inline: bool = Field(
        False, description="splice the layers into the caller's namespace instead of a child module"
    )
    module_order: list[str] = Field(
        default_factory=list,
        description=(
            "child modules in the order the block declares them (its state_dict "
            "order) where that differs from the order they run: [norm1, attn, "
            "norm2, mlp] for a post-norm block; the others keep their places"
        ),
    )
    doc: str | None = None


class SpecModel(Strict):
    """A whole spec file."""

    name: str | None = None
    description: str | None = None
    input: list[int | str] = Field(
        min_length=1, max_length=4, description="input shape without the batch, e.g. [3, 32, 32]"
    )
    input_layout: list[Literal["C", "H", "W", "D", "L"]] | None = Field(
        None,
        description=(
            "what each input dimension is, e.g. [L, D] for tokens or "
            "[H, W, C] for a channels-last map; without it the input is "
            "only a shape and layouts start at the first op that has one"
        ),
    )
    params: dict[str, ParamValue] = Field(default_factory=dict)
    blocks: dict[str, BlockDef] = Field(default_factory=dict)
    layers: list[Any] = Field(min_length=1)
    train: dict[str, Any] | None = Field(
        None, description="the trainer's defaults (see TrainConfig)"
    )
    init: InitSpec | None = None
    variants: dict[str, dict[str, ParamValue]] = Field(
        default_factory=dict,
        description=(
            "named parameter sets of a family spec: "
            "archc.load('resnet152') loads this file with them"
        ),
    )


__all__ = ["BlockDef", "InitRule", "InitSpec", "SpecModel", "TrainConfig"]
