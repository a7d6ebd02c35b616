"""Every command and code example shown in README.md and docs/ runs: docs that rot are defects.

A document's examples run in the order they appear, in one scratch directory holding copies of
specs/, examples/ and docs/, so later examples see what earlier ones wrote (a run, then
`archc evaluate` of its checkpoint; a sweep, then `archc compare --runs` and `archc html` of it):

* every line of a ```bash / ```sh block is a command (synopses with placeholders use ```text);
* every ```python block runs as a script;
* every ```yaml block parses, and one that is a whole spec (`input` and `layers`) compiles;
  every ```json block parses.

Training commands run for real with every documented flag, shrunk by appending
`--train-subset/--test-subset/--batch-size/--epochs` (argparse keeps the last value) and pointed
at small datasets written here in the real on-disk formats (`--data-dir`; nothing is downloaded).
A command that resizes images past 64 pixels for a spec that takes `image_size` runs at 64x64
(`--resize 64 --set image_size=64`; the last --set wins): the same flags, the same code path, a
twelfth of VGG-11's work at 224. `--nproc N` runs as one process: tests/robustness/test_trust.py
launches `archc train --nproc 2` through torchrun and checks it against one process.
`make demo` runs through make with the same caps (DEMO_ARGS); `make test` is the command that runs
this suite, so it is only checked to be what CI runs.

`archc` commands run through `archc.cli.main` in this process; a document's Python examples (and
its `python -c`, `python -m` commands) each run in a process of their own forked from one
interpreter that has imported torch and archc (tests/example_runner.py).
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
import select
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

from archc import api
from archc.compiler.loader import load_text
from archc.compiler.validate import validate
from tests.conftest import FORKSERVER, REPO, clean_env, cpu_profiled
from tests.fake_datasets import write_cifar10, write_fashion_mnist, write_idx

pytestmark = FORKSERVER

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
SHELL = {"bash", "sh"}
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
TRAINING = {"train", "sweep", "compare"}
CAPS = ["--test-subset", "4", "--batch-size", "4", "--epochs", "1"]
TRAIN_IMAGES = 4  # or the largest batch size a grid asks for: training needs one whole batch
RESOLUTION = 64  # pixels: the largest image size a documented training command runs at here
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Example:
    doc: Path
    line: int
    kind: str  # "shell", "python", "yaml" or "json"
    text: str

    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def examples(doc: Path) -> list[Example]:
    """The document's fenced examples in order; a shell block yields one Example per command."""
    text = doc.read_text()
    found = []
    for match in FENCE.finditer(text):
        lang, body = match.group(1), match.group(2)
        first = text.count("\n", 0, match.start(2)) + 1
        if lang in SHELL:
            found += [
                Example(doc, first + offset, "shell", command)
                for offset, command in shell_commands(body)
            ]
        elif lang in {"python", "yaml", "json"}:
            found.append(Example(doc, first, lang, body))
    return found


def shell_commands(body: str) -> list[tuple[int, str]]:
    """(line offset, command) for each command of a shell block; `\\` continues a line."""
    commands, pending, start = [], "", 0
    for offset, line in enumerate(body.splitlines()):
        if not pending:
            start = offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command = (pending + line).strip()
        pending = ""
        if command and not command.startswith("#"):
            commands.append((start, command))
    return commands


def is_training(words: list[str]) -> bool:
    if words[:2] == ["make", "demo"]:
        return True
    if words[:1] == ["torchrun"]:
        return "train" in words
    return len(words) > 1 and words[0] == "archc" and words[1] in TRAINING and "--runs" not in words


def train_images(words: list[str]) -> int:
    batches = [
        int(v)
        for w in words
        if w.startswith(("batch_size=", "batch-size="))
        for v in w.split("=", 1)[1].split(",")
    ]
    return 2 * max([TRAIN_IMAGES, *batches])  # a whole batch left after the validation split


def resolution_cap(words: list[str], work: Path) -> list[str]:
    """`--resize 64 --set image_size=64` for `archc train SPEC --resize N` with N past 64 on a spec
    that takes `image_size`; nothing otherwise."""
    if "--resize" not in words or words[:2] != ["archc", "train"]:
        return []
    size = int(words[words.index("--resize") + 1])
    if size <= RESOLUTION or "image_size" not in api.load(work / words[2]).model.params:
        return []
    return ["--resize", str(RESOLUTION), "--set", f"image_size={RESOLUTION}"]


def write_datasets(root: Path) -> None:
    """CIFAR-10, MNIST and Fashion-MNIST in torchvision's layouts, a few dozen images each."""
    write_cifar10(root, per_batch=8)
    write_fashion_mnist(root)
    rng = np.random.default_rng(1)
    raw = root / "MNIST" / "raw"
    write_idx(raw, "train", rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), np.arange(64) % 10)
    write_idx(raw, "t10k", rng.integers(0, 256, (32, 28, 28), dtype=np.uint8), np.arange(32) % 10)


def scratch_directory(tmp: Path) -> Path:
    work = tmp / "work"
    for folder in ("specs", "examples", "docs"):
        shutil.copytree(REPO / folder, work / folder)
    write_datasets(tmp / "data")
    return work


def doc_env() -> dict[str, str]:
    """The venv's tools on PATH; one torch thread per process, since
    pytest runs tests side by side."""
    return clean_env(PATH=f"{VENV_BIN}:{clean_env()['PATH']}", OMP_NUM_THREADS="1")


def run_shell(
    example: Example, runner: ExampleRunner, data: Path
) -> subprocess.CompletedProcess[str]:
    work = runner.work
    words = shlex.split(example.text, comments=True)
    caps = [
        *CAPS,
        "--train-subset",
        str(train_images(words)),
        "--data-dir",
        str(data),
        "--no-download",
    ]
    if words[0] == "make":
        return run_make(example, words, caps, work)
    if not is_training(words):
        caps = []
    else:
        caps += resolution_cap(words, work) + (["--nproc", "1"] if "--nproc" in words else [])
    if words[0] == "archc":
        return run_archc_here([*words[1:], *caps], work)
    if words[0] == "python":
        return runner.run(words[1:])
    if words[0] == "torchrun":
        argv = [str(VENV_BIN / "torchrun"), *words[1:], *caps]
    else:
        pytest.fail(
            f"{example.where()}: no runner for `{words[0]}` "
            f"commands; add one to {Path(__file__).name}"
        )
    return subprocess.run(
        argv, cwd=work, env=doc_env(), capture_output=True, text=True, timeout=600
    )


def run_archc_here(argv: list[str], work: Path) -> subprocess.CompletedProcess[str]:
    """An `archc` command through `archc.cli.main`, in this process (the entry point is that call;
    tests/test_cli_compile.py runs `python -m archc` itself): each command would otherwise
    spend seconds of CPU importing torch again. Output and exit status
    as a subprocess gives them."""
    from archc.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(work), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help, usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["archc", *argv], code, out.getvalue(), err.getvalue())


def run_make(
    example: Example, words: list[str], caps: list[str], work: Path
) -> subprocess.CompletedProcess[str]:
    target = words[1:]
    if target == ["test"]:
        ci = (REPO / ".ci" / "run").read_text()
        assert re.search(r"^make test$", ci, re.M), ".ci/run must run the README's test command"
        return subprocess.CompletedProcess(words, 0, "", "")
    if target != ["demo"]:
        pytest.fail(f"{example.where()}: no runner for `make {' '.join(target)}`")
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        pytest.skip(
            "`make demo` is checked from the repository's .venv (run the suite with `make test`)"
        )
    demo_args = shlex.join([*caps, "--out", str(work / "runs" / "demo"), "--log", "plain"])
    return subprocess.run(
        ["make", "--no-print-directory", "demo", f"DEMO_ARGS={demo_args}"],
        cwd=REPO,
        env=doc_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def imported(code: str) -> set[str]:
    """The modules a script imports at its top level, outside this repository's scratch copy."""
    found = set()
    for node in ast.parse(code).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return {m for m in found if m.split(".")[0] not in ("specs", "examples", "docs")}


def run_python(example: Example, runner: ExampleRunner) -> subprocess.CompletedProcess[str]:
    script = runner.work / f"example_{example.doc.stem}_{example.line}.py"
    script.write_text(example.text)
    return runner.run([script.name])


class ExampleRunner:
    """tests/example_runner.py for one document, started at its first Python example: each
    example runs in a fork of an interpreter that has imported what the examples import."""

    def __init__(self, work: Path, examples: list[Example]) -> None:
        self.work, self.process = work, None
        self.preload = sorted(
            {module for e in examples if e.kind == "python" for module in imported(e.text)}
        )

    def run(self, argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`python ARGV` (a script, `-c CODE`, `-m MODULE`) in `work`, as a subprocess gives it."""
        if self.process is None:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("example_runner.py")), *self.preload],
                cwd=self.work,
                env=doc_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        streams = {name: self.work / f".example.{name}" for name in ("stdout", "stderr")}
        request = {"argv": argv, **{name: str(path) for name, path in streams.items()}}
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        reply = json.loads(self.process.stdout.readline()) if ready else {"returncode": -9}
        if not ready:
            self.close()
        out, err = (path.read_text() if path.exists() else "" for path in streams.values())
        return subprocess.CompletedProcess(["python", *argv], reply["returncode"], out, err)

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.communicate()
            self.process = None


def check_data(example: Example) -> None:
    if example.kind == "json":
        json.loads(example.text)
        return
    data = YAML(typ="safe").load(example.text)
    if isinstance(data, dict) and "input" in data and "layers" in data:
        api.compile_graph(validate(load_text(example.text, path=example.where())))


def doc_param(doc: Path) -> object:
    heavy = any(
        e.kind == "python"
        or (e.kind == "shell" and is_training(shlex.split(e.text, comments=True)))
        for e in examples(doc)
    )
    return pytest.param(
        doc, id=str(doc.relative_to(REPO)), marks=[pytest.mark.slow] if heavy else []
    )


@pytest.mark.parametrize("doc", [doc_param(d) for d in DOCS if examples(d)])
def test_documented_examples_run(doc: Path, tmp_path: Path) -> None:
    runner = ExampleRunner(scratch_directory(tmp_path), examples(doc))
    try:
        for example in examples(doc):
            if example.kind in {"yaml", "json"}:
                check_data(example)
                continue
            with cpu_profiled(f"{example.where()}: {example.text[:60]}"):
                result = (
                    run_shell(example, runner, tmp_path / "data")
                    if example.kind == "shell"
                    else run_python(example, runner)
                )
            assert result.returncode == 0, (
                f"{example.where()}: exit {result.returncode}\n{example.text}\n"
                f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
            )
    finally:
        runner.close()


def test_every_command_has_an_example_in_the_cli_reference() -> None:
    from archc.cli import COMMANDS

    shown = {
        shlex.split(e.text)[1]
        for e in examples(REPO / "docs" / "cli.md")
        if e.kind == "shell" and e.text.startswith("archc ")
    }
    assert set(COMMANDS) <= shown, f"docs/cli.md has no example of: {sorted(set(COMMANDS) - shown)}"


def test_docs_name_only_files_that_exist() -> None:
    """Paths of this repository quoted in the docs (`archc/x.py`, `specs/y.yaml`, ...) exist."""
    pattern = re.compile(
        r"(?<![\w/.-])((?:archc|specs|tests|examples|benchmarks|docs|scripts)/[\w./-]*\w)(?![\w*])"
    )
    missing = []
    for doc in DOCS:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            for path in pattern.findall(line):
                if not (REPO / path).exists() and not (doc.parent / path).exists():
                    missing.append(f"{doc.relative_to(REPO)}:{n}: {path}")
    assert not missing, "\n".join(missing)
