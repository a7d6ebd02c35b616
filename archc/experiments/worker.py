"""The child process of a sweep: one training run, its output in
train.log, its failure in failure.json.

Sweeps start children from a fork server that imported this module, and with it torch and the
trainer, once; each run then starts in milliseconds in a fresh process, so a crash takes down only
its run and the peak-memory figure of each run is its own.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# Imported here so that the fork server pays for them once, not every run: torch, the trainer,
# torch._dynamo (torch.optim imports it on first use), torchvision (for the result's versions) and
# scikit-learn (the digits dataset).
import sklearn.datasets
import sklearn.model_selection  # noqa: F401
import torch
import torch._dynamo
import torchvision  # noqa: F401

import archc.api
import archc.compiler.emit  # noqa: F401
from archc.compiler.validate import load  # noqa: F401
from archc.errors import SpecError
from archc.experiments.rundir import LOG, write_failure
from archc.trainer.api import train
from archc.trainer.augment import BatchPipeline  # noqa: F401
from archc.trainer.checkpoint import save_checkpoint  # noqa: F401
from archc.trainer.data import load_dataset  # noqa: F401
from archc.trainer.errors import DivergenceError, TrainError
from archc.trainer.loop import fit  # noqa: F401
from archc.trainer.metrics import library_versions  # noqa: F401

with contextlib.suppress(ImportError):  # TensorBoard logging, an optional package
    import torch.utils.tensorboard  # noqa: F401

EXIT_FAILED = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


def run_job(job: dict[str, Any]) -> None:
    """Train job['config'] (with out set) and exit with a code the sweep can read; never raises."""
    os.chdir(job["cwd"])
    out = Path(job["config"]["out"])
    out.mkdir(parents=True, exist_ok=True)
    _redirect_output(out / LOG)
    print(
        f"=== archc sweep run {job['id']} (pid {os.getpid()}, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}) ===",
        flush=True,
    )
    try:
        train(
            job["spec"],
            spec_overrides=job["set"],
            plugins=tuple(job["plugins"]),
            input_shape=job.get("input_shape"),
            **job["config"],
        )
    except DivergenceError as exc:  # the trainer recorded it in result.json
        print(f"diverged: {exc}", flush=True)
        sys.exit(EXIT_DIVERGED)
    except (TrainError, SpecError) as exc:
        message = str(exc).splitlines()[0]
        print(f"error: {message}", flush=True)
        write_failure(out, message, EXIT_FAILED)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(EXIT_INTERRUPTED)
    except (
        Exception
    ) as exc:  # a bug somewhere: keep the traceback in the log, the gist in failure.json
        traceback.print_exc()
        write_failure(out, f"{type(exc).__name__}: {exc} (traceback in {out / LOG})", 1)
        sys.exit(1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _redirect_output(path: Path) -> None:
    """Send this process's stdout and stderr (also from C code) to the run's log, appending."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
