"""Training recipe: one pydantic model shared by the spec's `train:`
section, the CLI flags and the API.

Kept free of torch so that `archc check` can validate a spec's
`train:` section without importing it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["none", "step", "multistep", "cosine", "onecycle"]
Device = Literal["auto", "cpu", "cuda", "mps"]
AmpDtype = Literal["auto", "bfloat16", "float16"]
# torch's names, as `archc report --dtype` spells them; the short names are accepted too.
DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16"}
LogMode = Literal["auto", "bar", "plain", "quiet"]
DataPath = Literal["auto", "memory", "stream"]
Recipe = Literal["imagenet"]

# Named recipes: defaults for the fields a user does not set (lr scales with the batch size).
# "imagenet" is torchvision's reference recipe for ResNet (references/classification/train.py:
# SGD lr 0.1 per 256 images, momentum 0.9, weight decay 1e-4, 90 epochs, lr / 10 every 30), with
# RandomResizedCrop + flip for training and Resize 256 + CenterCrop 224 for evaluation (those two
# in archc/trainer/stream.py, where the images are transformed).
RECIPES: dict[str, dict[str, Any]] = {
    "imagenet": {
        "epochs": 90, "batch_size": 256, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-4,
        "schedule": "step", "step_size": 30, "gamma": 0.1,
    },
}  # fmt: skip
RECIPE_BASE_LR = 0.1  # per 256 images
_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kb": 2**10,
    "m": 2**20,
    "mb": 2**20,
    "g": 2**30,
    "gb": 2**30,
    "t": 2**40,
    "tb": 2**40,
}

# The trust split. A spec is untrusted input: its `train:` section may describe the model's recipe
# (what is computed), never where files are read or written, which processes start or how much of
# the machine is used. Fields marked RUNNER are given only by the person running archc (flags, the
# Python API); a spec carrying one is refused with a positioned error. The mark lives on the field,
# so the spec check, the JSON schema and the docs all read it from here.
RUNNER: dict[str, Any] = {"runner_only": True}
MAX_IMAGE_SIDE = 16_384  # largest resize / synthetic image side (and channel count)


class TrainConfig(BaseModel):
    """Every knob of `archc train`; a spec's `train:` section sets defaults, flags override them."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)

    dataset: str = Field(
        "synthetic",
        description=(
            "cifar10, cifar100, mnist, fashion_mnist, kmnist, digits, synthetic or imagefolder:PATH"
        ),
    )
    data_dir: str | None = Field(
        None,
        description="where datasets live (default ~/.cache/archc/data)",
        json_schema_extra=RUNNER,
    )
    download: bool = Field(
        True, description="download a missing torchvision dataset", json_schema_extra=RUNNER
    )
    epochs: int = Field(10, ge=1, le=100_000, description="passes over the training set")
    batch_size: int = Field(
        128, ge=1, le=1_000_000, description="global batch size, split across --nproc processes"
    )
    eval_batch_size: int | None = Field(None, ge=1, description="defaults to 2 x batch_size")
    optimizer: Optimizer = Field("sgd", description="sgd (with momentum), adam or adamw")
    lr: float = Field(0.1, gt=0, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: bool = Field(False, description="Nesterov momentum (SGD)")
    weight_decay: float = Field(5e-4, ge=0, description="L2 penalty (decoupled for adamw)")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam/AdamW betas")
    schedule: Schedule = Field(
        "cosine", description="learning-rate schedule, stepped every iteration"
    )
    milestones: list[float] = Field(
        default_factory=lambda: [0.5, 0.75],
        description="multistep: fractions of training (<1) or epochs (>=1)",
    )
    step_size: int = Field(30, ge=1, description="step schedule: epochs between decays")
    gamma: float = Field(0.1, gt=0, description="decay factor of step and multistep")
    warmup_epochs: float = Field(
        0.0, ge=0, description="linear warmup from ~0 (onecycle: the ramp-up length, default 30%)"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cross-entropy label smoothing")
    grad_clip: float | None = Field(None, gt=0, description="clip the gradient norm to this value")
    aux_weight: float = Field(
        0.3,
        ge=0,
        description="loss weight of extra outputs of a plain nn.Module (specs weight each head)",
    )
    augment: bool | None = Field(
        None,
        description=(
            "random crop and flip; default: the dataset's "
            "(crop+flip for CIFAR, crop for MNIST-like)"
        ),
    )
    crop_padding: int | None = Field(
        None, ge=0, description="random-crop padding in pixels; default: the dataset's"
    )
    hflip: bool | None = Field(None, description="random horizontal flips; default: the dataset's")
    resize: tuple[int, int] | None = Field(
        None, description="resize images on the device: H (square) or H,W"
    )
    recipe: Recipe | None = Field(
        None,
        description="a named recipe: its settings are the defaults of those not given (imagenet)",
    )
    data_path: DataPath = Field(
        "auto",
        description=(
            "memory: decode the dataset once into RAM; stream: decode "
            "in loader workers; auto: memory when it fits --memory-limit"
        ),
        json_schema_extra=RUNNER,
    )
    memory_limit: int | str | None = Field(
        None,
        ge=1,
        description=(
            "bytes the decoded dataset may take in memory "
            "(suffixes K, M, G; default half the available memory)"
        ),
        json_schema_extra=RUNNER,
    )
    loader_workers: int | None = Field(
        None,
        ge=0,
        le=256,
        description=(
            "streaming: DataLoader worker processes (default: cores / processes, at most 8)"
        ),
        json_schema_extra=RUNNER,
    )
    checkpoint_every: int | None = Field(
        None,
        ge=1,
        description="also write last.pt every N steps, so --resume continues mid-epoch",
        json_schema_extra=RUNNER,
    )
    amp: bool = Field(False, description="mixed precision (autocast)")
    amp_dtype: AmpDtype = Field(
        "auto", description="autocast dtype; auto: bfloat16 where supported, else float16 on CUDA"
    )
    channels_last: bool | None = Field(
        None,
        description=(
            "channels-last memory format; default: measured "
            "at start-up (contiguous under --deterministic)"
        ),
    )
    compile: bool = Field(False, description="torch.compile the model", json_schema_extra=RUNNER)
    seed: int = Field(
        0, ge=0, lt=2**32, description="random seed of initialisation, data order and augmentation"
    )
    deterministic: bool = Field(False, description="deterministic algorithms only")
    workers: int | None = Field(
        None,
        ge=1,
        description=(
            "CPU threads for torch (default: OMP_NUM_THREADS if "
            "set, else the cores available shared between processes)"
        ),
        json_schema_extra=RUNNER,
    )
    device: Device = Field(
        "auto", description="auto: CUDA, then MPS, then CPU", json_schema_extra=RUNNER
    )
    nproc: int = Field(
        1,
        ge=1,
        le=1024,
        description="processes for data-parallel training on this machine (torchrun)",
        json_schema_extra=RUNNER,
    )
    nnodes: int = Field(
        1,
        ge=1,
        le=100_000,
        description="machines in the run (torchrun's c10d rendezvous at --rdzv-endpoint)",
        json_schema_extra=RUNNER,
    )
    node_rank: int | None = Field(
        None,
        ge=0,
        description="this machine's place among --nnodes (optional with c10d: assigned on arrival)",
        json_schema_extra=RUNNER,
    )
    rdzv_endpoint: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$",
        description="HOST:PORT of the rendezvous, the same on every machine",
        json_schema_extra=RUNNER,
    )
    out: str | None = Field(
        None, description="run directory (default runs/NAME/TIMESTAMP)", json_schema_extra=RUNNER
    )
    resume: bool = Field(
        False, description="continue from OUT/last.pt when it exists", json_schema_extra=RUNNER
    )
    init_from: str | None = Field(
        None,
        description=(
            "initial weights: a state_dict, an archc "
            "checkpoint or torchvision:NAME (published weights)"
        ),
        json_schema_extra=RUNNER,
    )
    pretrained: bool = Field(
        False, description="start from torchvision's published weights for this spec"
    )
    val_split: float = Field(
        0.1,
        ge=0,
        lt=1,
        description=(
            "fraction of the training set held out (stratified, fixed seed) to "
            "choose best.pt and stop early; 0: none, best.pt is the last epoch"
        ),
    )
    patience: int | None = Field(
        None, ge=1, description="stop after this many epochs without a better validation accuracy"
    )
    tensorboard: bool = Field(
        True,
        description="log every epoch's metrics for TensorBoard in OUT/tensorboard",
        json_schema_extra=RUNNER,
    )
    log: LogMode = Field(
        "auto",
        description="auto: progress bars on a terminal, plain lines otherwise",
        json_schema_extra=RUNNER,
    )
    train_subset: int | None = Field(None, ge=1, description="use only the first N training images")
    test_subset: int | None = Field(None, ge=1, description="use only the first N test images")
    synthetic_size: tuple[int, int] = Field(
        (2048, 512), description="synthetic: train and test image counts"
    )
    synthetic_shape: tuple[int, int, int] | None = Field(
        None, description="synthetic: C,H,W (default: the spec's input, else 3,32,32)"
    )
    synthetic_classes: int = Field(10, ge=2, le=100_000, description="synthetic: number of classes")

    @field_validator("amp_dtype", mode="before")
    @classmethod
    def _dtype_alias(cls, value: object) -> object:
        return DTYPE_ALIASES.get(value, value) if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _recipe_defaults(cls, values: Any) -> Any:
        """A named recipe fills the fields not given; its lr is 0.1 per 256 images of the batch."""
        if not isinstance(values, dict) or values.get("recipe") not in RECIPES:
            return values
        filled = {**RECIPES[values["recipe"]], **values}
        if "lr" not in values:
            filled["lr"] = RECIPE_BASE_LR * int(filled["batch_size"]) / 256
        return filled

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _bytes(cls, value: object) -> object:
        """'512M', '2GB', '1.5g' or a number of bytes."""
        if not isinstance(value, str):
            return value
        text = value.strip().lower().replace(" ", "")
        number = text.rstrip("kmgtb")
        unit = text[len(number) :]
        try:
            return int(float(number) * _UNITS[unit])
        except (ValueError, KeyError):
            raise ValueError(f"expected bytes such as 512M or 2G, got {value!r}") from None

    @field_validator("resize", mode="before")
    @classmethod
    def _square_resize(cls, value: object) -> object:
        if isinstance(value, int):
            return (value, value)
        return value

    @field_validator("resize", "synthetic_shape", "synthetic_size")
    @classmethod
    def _positive(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and any(v < 1 for v in value):
            raise ValueError(f"must be positive, got {list(value)}")
        return value

    @field_validator("resize", "synthetic_shape")
    @classmethod
    def _image_sized(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and any(
            v > MAX_IMAGE_SIDE for v in value
        ):  # a recipe may not ask for terabyte images
            raise ValueError(f"sizes are at most {MAX_IMAGE_SIDE}, got {list(value)}")
        return value

    @field_validator("milestones")
    @classmethod
    def _milestones(cls, value: list[float]) -> list[float]:
        if any(m <= 0 for m in value) or value != sorted(value):
            raise ValueError(f"milestones must be positive and increasing, got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer sgd with momentum > 0")
        if self.batch_size % (self.nproc * self.nnodes):
            raise ValueError(
                f"batch_size {self.batch_size} must be divisible "
                f"by nproc x nnodes = {self.nproc * self.nnodes}"
            )
        if self.nnodes > 1 and self.rdzv_endpoint is None:
            raise ValueError("nnodes > 1 needs rdzv_endpoint HOST:PORT, the same on every machine")
        if self.node_rank is not None and self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} must be below nnodes {self.nnodes}")
        if self.patience is not None and self.val_split == 0:
            raise ValueError("patience needs a validation split (val_split > 0) to watch")
        if self.pretrained and self.init_from is not None:
            raise ValueError("give either pretrained or init_from, not both")
        return self

    def recipe_differences(self, other: TrainConfig) -> dict[str, tuple[object, object]]:
        """Fields that change what is computed (not runner-only) and
        differ: {name: (self, other)}."""
        mine, theirs = self.model_dump(), other.model_dump()
        return {
            k: (mine[k], theirs[k])
            for k in mine
            if k not in RUNTIME_FIELDS and mine[k] != theirs[k]
        }


# Runner-only fields, read from their RUNNER mark: they say how and where a run executes, so they
# are refused in a spec, and `--resume` accepts a checkpoint whose config differs only in them.
RUNTIME_FIELDS = frozenset(
    name for name, field in TrainConfig.model_fields.items()
    if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("runner_only")
)  # fmt: skip


def runner_setting_in_spec(section: Mapping[str, object]) -> tuple[str, str] | None:
    """The first setting of a spec's `train:` that only the person running archc may give, as
    (key, message), or None. A spec may name a dataset, never a path (`imagefolder:PATH`)."""
    for key, value in section.items():
        if key in RUNTIME_FIELDS:
            flag = "--" + str(key).replace("_", "-")
            return str(key), (
                f"train: '{key}' is for the person running archc ({flag} or "
                "the Python API), not for a spec: a spec describes the model "
                "and its recipe, never paths, processes or machine resources"
            )
        if key == "dataset" and isinstance(value, str) and ":" in value:
            kind = value.split(":", 1)[0]
            return "dataset", (
                f"train: dataset '{kind}:...' names a path, which only "
                f"the person running archc gives (--dataset {kind}:PATH "
                "or the Python API); a spec may name a built-in dataset"
            )
    return None


def default_threads(processes: int) -> int:
    """Torch threads per process: OMP_NUM_THREADS when set (the usual way to pin them), else the
    cores this process may use shared evenly between the `processes` running on this machine."""
    pinned = os.environ.get("OMP_NUM_THREADS", "")
    if pinned.isdigit() and int(pinned) > 0:
        return int(pinned)
    return max(1, machine_cpus() // max(1, processes))


# (quota, period) files of the CPU cgroup a container runs in: v2 holds both in one file, then v1
_CPU_QUOTA_FILES = (
    ("/sys/fs/cgroup/cpu.max", None),
    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
)


def machine_cpus() -> int:
    """CPUs this process may use: its affinity mask, lowered by a cgroup CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, quota)) if quota is not None else max(1, cores)


def cgroup_cpu_quota() -> int | None:
    """Whole CPUs a cgroup CPU quota allows (rounded up), or None when there is no quota."""
    for quota_file, period_file in _CPU_QUOTA_FILES:
        try:
            fields = Path(quota_file).read_text().split()
            if period_file is not None:
                fields.append(Path(period_file).read_text().strip())
        except OSError:
            continue
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit() and int(fields[1]) > 0:
            return max(1, -(-int(fields[0]) // int(fields[1])))
        return None  # "max" (v2) or -1 (v1): no quota
    return None


def cap_to_machine(cfg: TrainConfig) -> tuple[TrainConfig, list[str]]:
    """cfg with its process and thread counts lowered to the CPUs this machine gives the run, and a
    one-line note per lowered count: more threads or processes than cores only slow a run down
    (64 threads on 2 cores train 50x slower). Raises ValueError when
    the lowered config is invalid."""
    cpus = machine_cpus()
    nproc = min(cfg.nproc, cpus)
    limits = {"nproc": cpus, "workers": max(1, cpus // nproc), "loader_workers": cpus}
    changes = {name: limit for name, limit in limits.items() if (getattr(cfg, name) or 0) > limit}
    notes = [
        (
            f"note: --{name.replace('_', '-')} {getattr(cfg, name)} lowered to {limit}: this "
            f"machine gives archc {cpus} CPU{'s' if cpus != 1 else ''} (affinity and cgroup quota)"
        )
        for name, limit in changes.items()
    ]
    if not changes:
        return cfg, notes
    return TrainConfig.model_validate({**cfg.model_dump(exclude_unset=True), **changes}), notes
