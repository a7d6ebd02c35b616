"""`archc.train(spec_or_module, **config)`: one training run from
Python, returning its result record.

This module wires the pieces together in the order the guarantees need: configuration, the run
lock, the dataset (so a missing dataset fails before any model work), the model and its fit to
the data, then the loop; and it writes result.json, also for a run that diverged.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from archc.compiler.train_config import RECIPES, TrainConfig, cap_to_machine
from archc.trainer.errors import CheckpointError, DivergenceError, TrainError
from archc.trainer.model import Source, resolve_source

if TYPE_CHECKING:
    import torch
    from torch import nn

    from archc.trainer.distributed import DistInfo
    from archc.trainer.feed import Feed
    from archc.trainer.loop import Outcome, Run
    from archc.trainer.model import SpecOrModule

TORCHVISION_PREFIX = "torchvision:"


class TrainResult(dict[str, Any]):
    """What `archc.train` returns: the result record (this dict, as in OUT/result.json) plus the
    trained `model` (after its last epoch) and the per-epoch `history` (the rows of metrics.csv).

    A run launched under torchrun reads both from its last.pt when first asked for (`load`): the
    launcher of `archc train --nproc N` prints only the record, and so never imports torch."""

    def __init__(
        self,
        record: dict[str, Any],
        model: nn.Module | None,
        history: list[dict[str, Any]],
        load: Callable[[], tuple[nn.Module, list[dict[str, Any]]]] | None = None,
    ) -> None:
        super().__init__(record)
        self._model, self._history, self._load = model, history, load

    @property
    def model(self) -> nn.Module | None:
        self._loaded()
        return self._model

    @property
    def history(self) -> list[dict[str, Any]]:
        self._loaded()
        return self._history

    def _loaded(self) -> None:
        if self._load is not None:
            self._model, self._history = self._load()
            self._load = None

    @property
    def record(self) -> dict[str, Any]:
        return dict(self)

    def __repr__(self) -> str:
        from archc.commands.train import result_row

        return (
            f"TrainResult({result_row(self)})"
            if self.get("status") == "completed" and "spec" in self
            else f"TrainResult({self.get('status')})"
        )


def train(
    spec_or_module: SpecOrModule,
    *,
    spec_overrides: dict[str, Any] | None = None,
    plugins: tuple[str, ...] = (),
    input_shape: tuple[int, ...] | list[int] | None = None,
    **config: Any,
) -> TrainResult:
    """Train a spec (path or loaded) or an nn.Module; keyword arguments are TrainConfig fields.

    The spec's `train:` section gives the defaults and **config overrides it; spec_overrides and
    input_shape are `--set` and `--input`. A module is trained in place. Returns a TrainResult (the
    record also written to OUT/result.json, with .model and .history); raises TrainError (a
    DivergenceError when the loss blows up) or archc.errors.SpecError on bad input.
    """
    source = resolve_source(spec_or_module, spec_overrides, plugins, input_shape)
    cfg = resolve_config(source, config)
    from archc.trainer.distributed import from_env

    dist = from_env()
    if (cfg.nproc > 1 or cfg.nnodes > 1) and not dist.active:
        return _launch(source, cfg, config, plugins)
    return _train(source, cfg, config, dist)


def resolve_config(source: Source, overrides: dict[str, Any]) -> TrainConfig:
    """The spec's `train:` section with overrides applied, validated as a whole."""
    base = (
        source.train_defaults.model_dump(exclude_unset=True)
        if source.train_defaults is not None
        else {}
    )
    recipe = RECIPES.get(str(overrides.get("recipe")))
    if recipe is not None:  # a recipe named by a flag outranks the spec's defaults, not other flags
        base = {k: v for k, v in base.items() if k not in recipe and k != "lr"}
    unknown = [k for k in overrides if k not in TrainConfig.model_fields]
    if unknown:
        from archc.errors import did_you_mean

        raise TrainError(
            "unknown training option "
            f"'{unknown[0]}'{did_you_mean(unknown[0], TrainConfig.model_fields)}"
        )
    try:
        cfg, notes = cap_to_machine(TrainConfig.model_validate({**base, **overrides}))
    except ValidationError as exc:
        from archc.errors import option_error_message

        raise TrainError(option_error_message(exc)) from None
    if os.environ.get("RANK", "0") == "0":  # torchrun's workers get the lowered counts: one note
        for note in notes:
            print(note, file=sys.stderr, flush=True)
    return cfg


def default_out(name: str) -> Path:
    """runs/NAME/TIMESTAMP, made unique if two runs start within the same second."""
    base = Path("runs") / name / datetime.now().strftime("%Y%m%d-%H%M%S")
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def _launch(
    source: Source, cfg: TrainConfig, config: dict[str, Any], plugins: tuple[str, ...]
) -> TrainResult:
    """Re-run this training under torchrun with cfg.nproc processes and return rank 0's record."""
    from archc.trainer.distributed import launch

    if source.spec_path is None:
        raise TrainError(
            "nproc or nnodes > 1 needs a spec file (a module cannot be sent "
            "to worker processes); launch your script with torchrun instead"
        )
    if cfg.resume and cfg.out is None:
        raise TrainError("--resume needs --out: the run directory to continue")
    if cfg.nnodes > 1 and cfg.out is None:
        raise TrainError(
            "--nnodes needs --out: one run directory that every "
            "machine names alike (on a shared file system)"
        )
    out = Path(cfg.out) if cfg.out else default_out(source.name)
    cli_args = [
        arg
        for key, value in source.spec_overrides.items()
        for arg in ("--set", f"{key}={json.dumps(value)}")
    ]
    cli_args += [arg for plugin in plugins for arg in ("--plugin", plugin)]
    if source.input_override:
        cli_args += ["--input", ",".join(map(str, source.input_override))]
    capped: dict[str, Any] = {
        key: getattr(cfg, key) for key in ("nproc", "workers", "loader_workers") if key in config
    }
    rc = launch(source.spec_path, cli_args, {**_jsonable(config), **capped, "out": str(out)}, cfg)
    result = out / "result.json"
    record = json.loads(result.read_text()) if result.is_file() else None
    if rc == 0 and record is not None:

        def load() -> tuple[nn.Module, list[dict[str, Any]]]:
            from archc.trainer.checkpoint import load_checkpoint, load_weights

            model = source.build()
            load_weights(model, out / "last.pt")  # the workers' model after the last epoch
            return model, load_checkpoint(out / "last.pt")["history"]

        return TrainResult(record, None, [], load)
    if rc == 0 and cfg.nnodes > 1:  # rank 0 ran on another machine and wrote the record there
        return TrainResult({"status": "completed", "out": str(out), "elsewhere": True}, None, [])
    if record is not None and record.get("status") == "diverged":
        raise DivergenceError(record["error"])
    raise TrainError(f"distributed training exited with code {rc}; see the messages above")


def _train(source: Source, cfg: TrainConfig, given: dict[str, Any], dist: DistInfo) -> TrainResult:
    from archc.trainer import distributed
    from archc.trainer.checkpoint import RUN_FILES, load_checkpoint, remove_stale_temps
    from archc.trainer.lock import RunLock
    from archc.trainer.loop import fit
    from archc.trainer.runtime import resolve_device, runtime_settings

    wall_start = time.perf_counter()
    if cfg.resume and cfg.out is None:
        raise TrainError("--resume needs --out: the run directory to continue")
    out = Path(cfg.out) if cfg.out else default_out(source.name)
    device = resolve_device(cfg.device, dist.local_rank)
    created_out = not out.exists()
    try:
        with contextlib.ExitStack() as stack:
            lock = stack.enter_context(RunLock(out)) if dist.main else None
            stack.enter_context(runtime_settings(cfg, device, dist.local_world))
            stack.callback(distributed.shutdown, distributed.init(dist, device))
            resume_state = None
            if cfg.resume and (out / "last.pt").is_file():
                resume_state = load_checkpoint(out / "last.pt")
                _check_resumable(resume_state, source, cfg, out)
            elif dist.main and (
                found := [name for name in RUN_FILES if os.path.lexists(out / name)]
            ):
                raise TrainError(
                    f"{out} already holds a run ({', '.join(found)}); "
                    "pass --resume to continue it or choose another --out"
                )
            if lock is not None:
                remove_stale_temps(out, lock.previous.get("token"))
            run, info = _prepare(source, cfg, dist, device, out, resume_state)
            if resume_state is not None:
                step = resume_state.get("step") or 0
                where = (
                    f"at epoch {resume_state['epoch'] + 1}, step {step + 1}"
                    if step
                    else f"after epoch {resume_state['epoch']}"
                )
                run.reporter.message(f"resuming {out / 'last.pt'} {where}")
            elif cfg.resume:
                run.reporter.message(f"--resume: no checkpoint in {out} yet, starting at epoch 1")
            try:
                outcome = fit(run, resume_state)
            except DivergenceError as exc:
                if dist.main:
                    _record_failure(out, source, cfg, given, info, str(exc))
                raise
            except RuntimeError as exc:
                if _out_of_memory(exc):
                    raise TrainError(
                        f"out of memory on {device} at batch size "
                        f"{cfg.batch_size}; lower --batch-size or --resize"
                    ) from None
                raise
            finally:
                run.reporter.close()
                run.feed.close()
            record = _record(source, cfg, given, info, outcome, device, dist, out, wall_start)
            if dist.main:
                from archc.trainer.metrics import write_result

                write_result(out, record)
                chosen = (
                    (
                        f"best validation acc {record['best_val_acc']:.2%} at epoch "
                        f"{record['best_epoch']} (test {record['best_test_acc']:.2%})"
                    )
                    if record["best_val_acc"] is not None
                    else (
                        f"test acc {record['best_test_acc']:.2%} (no "
                        "validation split: best.pt is the last epoch)"
                    )
                )
                run.reporter.message(
                    f"done: {chosen}, final test {record['final_test_acc']:.2%}, "
                    f"{record['images_per_s']:.0f} img/s; {out}"
                )
            return TrainResult(record, run.model, [dict(row) for row in outcome.history])
    finally:
        if created_out and dist.main:
            with contextlib.suppress(OSError):
                # only succeeds when the run wrote nothing: no empty directories from failed starts
                out.rmdir()


def _out_of_memory(exc: RuntimeError) -> bool:
    import torch

    text = str(exc)
    return (
        isinstance(exc, torch.OutOfMemoryError)
        or "can't allocate memory" in text
        or "not enough memory" in text
    )


def _check_resumable(state: dict[str, Any], source: Source, cfg: TrainConfig, out: Path) -> None:
    spec = state.get("spec") or {}
    if spec.get("hash") != source.source_hash:
        raise CheckpointError(
            f"{out / 'last.pt'} was trained from a different spec or "
            f"--set overrides ({spec.get('name')}); use another --out"
        )
    try:
        stored = TrainConfig.model_validate(state["config"])
    except ValidationError:
        raise CheckpointError(f"{out / 'last.pt'} holds an unreadable training config") from None
    diff = cfg.recipe_differences(stored)
    if diff:
        shown = ", ".join(f"{k}={v[1]!r} (now {v[0]!r})" for k, v in list(diff.items())[:4])
        raise CheckpointError(
            f"{out / 'last.pt'} was trained with {shown}; "
            "resume with the same settings or use another --out"
        )


def _prepare(
    source: Source,
    cfg: TrainConfig,
    dist: DistInfo,
    device: torch.device,
    out: Path,
    resume_state: dict[str, Any] | None,
) -> tuple[Run, dict[str, Any]]:
    """Dataset, model, transforms and reporter for the loop, checked against each other."""
    import torch

    from archc.trainer import distributed
    from archc.trainer.checkpoint import load_weights
    from archc.trainer.feed import open_feed
    from archc.trainer.loop import Run
    from archc.trainer.model import check_fit, count_macs, count_params, head_weights
    from archc.trainer.progress import make_reporter
    from archc.trainer.runtime import amp_dtype, choose_memory_format

    constants = None
    if resume_state is not None:
        try:
            norm = resume_state["normalization"]
            constants = (
                torch.tensor(norm["mean"], dtype=torch.float32),
                torch.tensor(norm["std"], dtype=torch.float32),
            )
        except (KeyError, TypeError, ValueError, RuntimeError):
            raise CheckpointError(
                f"{out / 'last.pt'} is damaged: no usable normalization constants"
            ) from None
    if dist.local_rank != 0:
        distributed.barrier(dist)  # local rank 0 downloads first
    stored_path = resume_state.get("data_path") if resume_state is not None else None
    feed = open_feed(cfg, source.input_shape, dist, device, constants, stored_path=stored_path)
    if dist.active and dist.local_rank == 0:
        distributed.barrier(dist)
    mean, std = feed.mean, feed.std
    if mean.shape != (feed.channels,) or std.shape != (feed.channels,):
        raise CheckpointError(
            f"{out / 'last.pt'} normalises {mean.numel()} channels, {feed.name} has {feed.channels}"
        )
    torch.manual_seed(cfg.seed)
    model = source.build()
    model.to(device)
    sample = feed.sample()
    check_fit(source, model, sample, feed.name, feed.num_classes)
    init_note = None
    init_from = cfg.init_from or ""
    if resume_state is None and (init_from or cfg.pretrained):
        if cfg.pretrained or init_from.startswith(TORCHVISION_PREFIX):
            from archc.pretrained import load_pretrained
            from archc.trainer.checkpoint import checkpoint_errors

            name = None if cfg.pretrained else init_from.removeprefix(TORCHVISION_PREFIX)
            with checkpoint_errors():
                init_note = load_pretrained(model, source.name, name)
        else:
            load_weights(model, init_from)
    reporter = make_reporter(cfg.log, dist.main)
    if init_note:
        reporter.message(init_note)
    stored_format = resume_state.get("memory_format") if resume_state is not None else None
    memory_format, why = choose_memory_format(cfg, model, feed, dist, stored_format)
    if memory_format == "channels_last":
        model.to(memory_format=torch.channels_last)
    feed.pipeline.channels_last = memory_format == "channels_last"
    if why:
        reporter.message(why)
    if feed.note:
        reporter.message(feed.note)
    autocast, note = amp_dtype(cfg, device)
    if note:
        reporter.message(note)
    input_shape = tuple(int(d) for d in sample.shape[1:])
    info: dict[str, Any] = {
        "params": count_params(model),
        "macs": count_macs(model, input_shape),
        "dataset": {
            "name": feed.name,
            "train_images": feed.train_images,
            "val_images": feed.val_images,
            "test_images": feed.test_images,
            "input_shape": list(input_shape),
            "classes": feed.num_classes,
            "crop_padding": feed.crop_padding,
            "hflip": feed.hflip,
            "data_path": feed.path,
        },
        "memory_format": memory_format,
        "amp_dtype": str(autocast).removeprefix("torch.") if autocast is not None else None,
    }
    reporter.message(
        f"training {source.name} ({info['params']:,} params) on {feed.name}: "
        f"{feed.train_images} train / {feed.val_images} validation / {feed.test_images} test "
        f"images {'x'.join(map(str, input_shape))}, {feed.num_classes} classes, {feed.path}; "
        f"{device}{' x' + str(dist.world) if dist.active else ''}"
        f"{', ' + info['amp_dtype'] if autocast else ''}; out {out}"
    )
    run = Run(
        cfg=cfg,
        model=model,
        feed=feed,
        device=device,
        autocast=autocast,
        dist=dist,
        out=out,
        reporter=reporter,
        head_weights=head_weights(model),
        normalization={"mean": mean.tolist(), "std": std.tolist()},
        spec_info=source.describe(),
        memory_format=memory_format,
        dataset_info=_dataset_info(feed, cfg, input_shape),
    )
    return run, info


def _dataset_info(feed: Feed, cfg: TrainConfig, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """What `archc predict` needs to prepare an image as the training images were: the class names,
    the stored image shape and the --resize applied to it (streamed
    images come at the model's size)."""
    data = getattr(feed, "data", None)
    stored = list(data.shape) if data is not None else list(input_shape)
    return {
        "name": feed.name,
        "classes": list(feed.classes),
        "image_shape": stored,
        "resize": list(cfg.resize) if cfg.resize and data is not None else None,
    }


def _base_record(
    source: Source, cfg: TrainConfig, given: dict[str, Any], info: dict[str, Any]
) -> dict[str, Any]:
    from archc.trainer.metrics import library_versions

    return {
        "spec": {"name": source.name, "hash": source.source_hash, "path": source.spec_path},
        "overrides": {
            "spec": source.spec_overrides,
            "input": list(source.input_override) if source.input_override else None,
            "train": _jsonable(given),
        },
        "config": cfg.model_dump(mode="json"),
        "seed": cfg.seed,
        "params": info["params"],
        "macs": info["macs"],
        "dataset": info["dataset"],
        "versions": library_versions(),
    }


def _record_failure(
    out: Path,
    source: Source,
    cfg: TrainConfig,
    given: dict[str, Any],
    info: dict[str, Any],
    error: str,
) -> None:
    from archc.trainer.metrics import write_result

    with contextlib.suppress(TrainError):
        write_result(
            out, {"status": "diverged", "error": error, **_base_record(source, cfg, given, info)}
        )


def _record(
    source: Source,
    cfg: TrainConfig,
    given: dict[str, Any],
    info: dict[str, Any],
    outcome: Outcome,
    device: torch.device,
    dist: DistInfo,
    out: Path,
    wall_start: float,
) -> dict[str, Any]:
    from archc.trainer.metrics import peak_memory

    last = outcome.history[-1]
    best_row: dict[str, Any] = next(
        (row for row in outcome.history if row["epoch"] == outcome.best_epoch), {}
    )
    memory, memory_kind = peak_memory(device)
    return {
        "status": "completed",
        **_base_record(source, cfg, given, info),
        "epochs_completed": last["epoch"],
        "stopped_early": outcome.stopped_early,
        "best_epoch": outcome.best_epoch,
        "best_val_acc": outcome.best_val_acc,
        "best_test_acc": outcome.best_test_acc,
        **{f"best_{k}": best_row[k] for k in ("val_top5", "test_top5") if k in best_row},
        "final_test_acc": last["test_acc"],
        "final_test_loss": last["test_loss"],
        "final_train_acc": last["train_acc"],
        "final_train_loss": last["train_loss"],
        "train_time_s": outcome.train_time_s,
        "wall_time_s": time.perf_counter() - wall_start,
        "images_per_s": outcome.images / outcome.train_time_s if outcome.train_time_s else 0.0,
        "peak_memory_bytes": memory,
        "peak_memory_kind": memory_kind,
        "device": str(device),
        "device_name": _device_name(device),
        "amp_dtype": info["amp_dtype"],
        "memory_format": info["memory_format"],
        "peak_loader_workers_rss_bytes": _children_peak_rss(),
        "world_size": dist.world,
        "resumed_from_epoch": outcome.resumed_from,
        "out": str(out),
    }


def _children_peak_rss() -> int:
    """The largest peak resident set of this process's finished children (loader workers)."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _device_name(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(values, default=str))
