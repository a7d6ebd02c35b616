"""The pages of a finished `archc train` run, written into its directory: the model's diagram,
its per-layer report and the run's HTML page (results, curves, diagram, table).

They are made by the same commands a user would run (`archc diagram`, `archc report`, `archc
html`), in this process, so they look exactly like those; a page that cannot be made (no graphviz,
a full disk) is a note, never a failed run.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

PAGES = (("diagram", "diagram.svg"), ("report", "report.md"), ("page", "report.html"))


def write_pages(record: dict[str, Any]) -> tuple[list[tuple[str, Path]], list[str]]:
    """([(kind, file) written], [notes]) for the run of `record` (a result.json).

    Written holding the run's lock, like everything else in the directory: a kill while a page
    is written leaves its temporary file named by the token the lock records, which the next
    run of the directory removes."""
    from archc.trainer.errors import TrainError
    from archc.trainer.lock import RunLock

    try:
        with RunLock(Path(record["out"])):
            return _write_pages(record)
    except TrainError as exc:  # another `archc train` took the directory meanwhile
        return [], [f"no pages: {exc}"]


def _write_pages(record: dict[str, Any]) -> tuple[list[tuple[str, Path]], list[str]]:
    from archc.atomic import atomic_write_bytes
    from archc.cli import main

    out = Path(record["out"])
    spec = record["spec"].get("path")
    spec_args = [
        arg
        for key, value in (record["overrides"].get("spec") or {}).items()
        for arg in ("--set", f"{key}={json.dumps(value)}")
    ]
    if record["overrides"].get("input"):
        spec_args += ["--input", ",".join(map(str, record["overrides"]["input"]))]
    commands = {
        "diagram": ["diagram", str(spec), "-o", str(out / "diagram.svg"), *spec_args],
        "report": ["report", str(spec), "--format", "markdown", *spec_args],
        "page": ["html", str(out), "-o", str(out / "report.html")],
    }
    written, notes = [], []
    for kind, name in PAGES:
        if kind != "page" and spec is None:
            continue  # a plain nn.Module has no spec to draw
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                rc = main(commands[kind])
            except (OSError, ValueError) as exc:
                rc, stderr = 1, io.StringIO(str(exc))
        if kind == "report" and rc == 0:
            try:
                atomic_write_bytes(out / name, stdout.getvalue().encode())
            except OSError as exc:
                rc, stderr = 1, io.StringIO(f"cannot write {out / name}: {exc.strerror or exc}")
        if rc == 0 and (out / name).is_file():
            written.append((kind, out / name))
        else:
            reason = stderr.getvalue().strip().splitlines()
            notes.append(f"no {name}: {reason[-1] if reason else 'see archc ' + commands[kind][0]}")
    return written, notes
