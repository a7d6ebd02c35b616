"""Resource limits: every way a spec could exhaust the machine hits a cap with a positioned error.

Alias bombs, huge flat documents, deep nesting, big repeat counts, node-count explosions through
blocks, deep block nesting, long expressions, oversized files and models that would not fit in
memory. Defaults are the documented ones; the flags (`--max-repeat`, `--max-nodes`,
`--max-depth`, `--force`) lift them.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from archc import api
from archc.cli import main
from archc.compiler import guard, loader
from archc.compiler.expand import Limits
from archc.errors import SpecError
from tests.conftest import REPO, clean_env
from tests.robustness.conftest import assert_positioned, spec_error, yaml_str

HEAD = "input: [3, 8, 8]\nlayers:\n"
MB = 1 << 20


def laughs_seq(levels: int = 10, width: int = 9) -> str:
    """The billion laughs: each anchor lists the previous one
    `width` times (9**10 nodes expanded)."""
    lines = ["lol0: &lol0 [" + ", ".join(['"lol"'] * width) + "]"]
    lines += [
        f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * width) + "]" for i in range(1, levels)
    ]
    return "\n".join(lines) + f"\ninput: *lol{levels - 1}\nlayers: [relu]\n"


def laughs_map(levels: int = 10, width: int = 9) -> str:
    """The same bomb built from mappings, nested inside the params section."""
    lines = ["params:", "  l0: &l0 {" + ", ".join(f"k{j}: lol" for j in range(width)) + "}"]
    lines += [
        f"  l{i}: &l{i} {{" + ", ".join(f"k{j}: *l{i - 1}" for j in range(width)) + "}"
        for i in range(1, levels)
    ]
    return "\n".join(lines) + "\n" + HEAD + "  - relu\n"


def timed(fn: Callable[[], Any], runs: int = 3) -> float:
    """The fastest of a few runs (robust to a busy machine)."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def traced_peak(fn: Callable[[], Any]) -> int:
    """Peak bytes Python allocated while fn ran."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------- YAML documents


@pytest.mark.parametrize("make", [laughs_seq, laughs_map], ids=["sequences", "mappings"])
def test_alias_bomb_is_rejected_in_under_a_second_with_bounded_memory(
    make: Callable[[], str],
) -> None:
    text = make()
    exc = spec_error(api.load, text)
    assert exc.message == "spec expands to more than 10,000 YAML nodes (an alias bomb?)"
    assert_positioned(exc, text)
    assert timed(lambda: spec_error(api.load, text)) < 1.0
    assert traced_peak(lambda: spec_error(api.load, text)) < 16 * MB


def test_alias_budget_is_exact() -> None:
    """Aliases count as the nodes they expand to: a document just inside the budget loads."""
    text = laughs_seq(levels=3, width=9)  # a few hundred nodes once expanded
    size = loader._expanded_size(YAML(typ="rt", pure=True).load(text), {}, 10**9, 0)
    assert loader.load_text(text, max_nodes=size).data["input"]
    with pytest.raises(SpecError, match=f"more than {size - 1:,} YAML nodes"):
        loader.load_text(text, max_nodes=size - 1)


def test_huge_flat_document_stops_parsing_at_the_node_budget() -> None:
    """400,000 list items: parsing stops after the budget instead of building them all."""
    text = "input: [" + ",".join(["1"] * 400_000) + "]\nlayers: [relu]\n"
    assert len(text) < loader.MAX_FILE_BYTES
    exc = spec_error(loader.load_text, text, "flat.yaml", max_nodes=2_000)
    assert exc.message == "spec has more than 2,000 YAML nodes" and (exc.line, exc.col) == (
        1,
        4_003,
    )  # keys count too
    assert (
        timed(lambda: spec_error(loader.load_text, text, max_nodes=2_000), runs=1) < 5.0
    )  # the whole list: minutes


BOMB_PROBE = """
import json, resource, sys, time
from pathlib import Path
from archc.errors import SpecError
from archc.compiler.loader import load_text
load_text(Path(sys.argv[1]).read_text(), "warm-up.yaml")
report = {"baseline_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
for name in sys.argv[2:]:
    text = Path(name).read_text()
    start = time.perf_counter()
    try:
        load_text(text, name)
        error = None
    except SpecError as exc:
        error = exc.message
    report[Path(name).stem] = {"seconds": time.perf_counter() - start, "error": error,
                               "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
print(json.dumps(report))
"""


@pytest.mark.slow
def test_largest_allowed_flat_document_is_bounded_at_the_default_budget(tmp_path: Path) -> None:
    """Just under the 1 MB cap, 490,000 nodes: refused after 10,000 with a few MB, not 700 MB."""
    text = "input: [" + ",".join(["0"] * 490_000) + "]\nlayers: [relu]\n"
    assert len(text) < loader.MAX_FILE_BYTES
    (tmp_path / "flat.yaml").write_text(text)
    report = probe(tmp_path / "flat.yaml")
    assert report["flat"]["error"] == "spec has more than 10,000 YAML nodes"
    assert report["flat"]["peak_kb"] - report["baseline_kb"] < 128 * 1024, report


def probe(*files: Path) -> dict[str, Any]:
    """Load each file in a fresh process after a zoo spec: error, seconds and peak RSS per file."""
    result = subprocess.run(
        [sys.executable, "-c", BOMB_PROBE, str(REPO / "specs" / "resnet18.yaml"), *map(str, files)],
        capture_output=True, text=True, env=clean_env(), timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_alias_bombs_in_a_fresh_process_stay_small(tmp_path: Path) -> None:
    """Peak resident memory of a real process loading the bombs (not just Python's allocations)."""
    files = []
    for name, text in (
        ("laughs_seq", laughs_seq()),
        ("laughs_map", laughs_map()),
        ("laughs_wide", laughs_seq(12, 12)),
    ):
        (tmp_path / f"{name}.yaml").write_text(text)
        files.append(tmp_path / f"{name}.yaml")
    report = probe(*files)
    for name in ("laughs_seq", "laughs_map", "laughs_wide"):
        entry = report[name]
        assert entry["error"] == "spec expands to more than 10,000 YAML nodes (an alias bomb?)"
        assert entry["seconds"] < 5.0, (
            entry
        )  # about 0.02 s on an idle machine; generous for a loaded CI box
        assert entry["peak_kb"] - report["baseline_kb"] < 32 * 1024, report


@pytest.mark.parametrize(
    ("text", "pos"),
    [
        ("input: " + "[" * 300 + "]" * 300 + "\nlayers: [relu]\n", (1, 207)),
        # as deep as you like, the same error: ruamel's look-ahead makes it cost a CPU-second
        pytest.param(
            "input: " + "[" * 20_000 + "]" * 20_000 + "\nlayers: [relu]\n",
            (1, 207),
            marks=pytest.mark.slow,
        ),
        (
            "input: [1]\nlayers:\n" + "".join(" " * (2 * i) + "- \n" for i in range(1, 400)),
            (202, 401),
        ),
        ("params:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 400)), (200, 200)),
    ],
    ids=["flow", "flow_20000", "block_sequences", "block_mappings"],
)
def test_deep_yaml_nesting_is_a_positioned_error(text: str, pos: tuple[int, int]) -> None:
    exc = spec_error(api.load, text)
    assert exc.message == f"YAML nesting deeper than {loader.MAX_DEPTH} levels", exc.render()
    assert (exc.line, exc.col) == pos, exc.render()


def test_nesting_within_the_limit_loads() -> None:
    doc = loader.load_text("x: " + "[" * 150 + "]" * 150 + "\n")
    assert isinstance(doc.data["x"], list)


# --------------------------------------------------------------------------- files


def test_file_size_cap_refuses_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:
        fh.truncate(10 * 1024**3)  # a sparse 10 GiB file: reading it would take the machine down
    monkeypatch.setattr(Path, "read_text", lambda *a, **k: pytest.fail("read an oversized spec"))
    monkeypatch.setattr(Path, "read_bytes", lambda *a, **k: pytest.fail("read an oversized spec"))
    exc = spec_error(api.load, path)
    assert exc.message == f"spec file is {10 * 1024**3:,} bytes; the limit is 1,000,000" and (
        exc.line,
        exc.col,
    ) == (1, 1)
    monkeypatch.undo()
    assert main(["check", str(path)]) == 1
    assert capsys.readouterr().err.startswith(
        f"error: {path}:1:1: spec file is 10,737,418,240 bytes"
    )


def test_a_file_that_is_not_utf8_is_a_positioned_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(HEAD.encode() + "  - {relu: , doc: caf\u00e9}\n".encode("latin-1"))
    exc = spec_error(api.load, path)
    assert exc.message == "not a UTF-8 text file (byte 0xe9)" and (exc.line, exc.col) == (3, 22), (
        exc.render()
    )


def test_file_size_cap_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    text = HEAD + "  - relu\n# " + "x" * 500 + "\n"
    monkeypatch.setattr(loader, "MAX_FILE_BYTES", len(text))
    assert loader.load_text(text).data["layers"] == ["relu"]
    monkeypatch.setattr(loader, "MAX_FILE_BYTES", len(text) - 1)
    exc = spec_error(loader.load_text, text)
    assert exc.message == f"spec is larger than {len(text) - 1:,} bytes" and (
        exc.line,
        exc.col,
    ) == (1, 1)


def test_default_file_cap_in_memory_text() -> None:
    text = HEAD + "  - relu\n#" + "x" * loader.MAX_FILE_BYTES + "\n"
    exc = spec_error(api.load, text)
    assert exc.message == "spec is larger than 1,000,000 bytes"


# --------------------------------------------------------------------------- graph limits


def _cli(tmp_path: Path, text: str, *flags: str) -> tuple[int, str]:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["check", str(path), *flags])
    return rc, err.getvalue()


def test_repeat_count_cap_and_flag(tmp_path: Path) -> None:
    text = HEAD + "  - {relu: , repeat: 4097}\n"
    exc = spec_error(api.compile_graph, text)
    assert exc.message == "repeat count 4097 exceeds the limit of 4096 (--max-repeat)" and (
        exc.line,
        exc.col,
    ) == (3, 22)
    assert len(api.compile_graph(text, limits=Limits(max_repeat=5000)).nodes) == 4097
    rc, err = _cli(tmp_path, text)
    assert rc == 1 and "(--max-repeat)" in err
    assert _cli(tmp_path, text, "--max-repeat", "5000")[0] == 0


def test_astronomical_repeat_count_is_refused_without_looping() -> None:
    text = HEAD + '  - {relu: , repeat: "${10 ** 18}"}\n'
    assert (
        timed(
            lambda: spec_error(
                api.compile_graph, text, limits=Limits(max_repeat=10**18, max_nodes=100)
            ),
            runs=1,
        )
        < 5.0
    )
    exc = spec_error(api.compile_graph, text, limits=Limits(max_repeat=10**18, max_nodes=100))
    assert exc.message == "the network has more than 100 nodes (--max-nodes)"


def test_node_count_cap_and_flag(tmp_path: Path) -> None:
    text = HEAD + "  - seq: [{relu: , repeat: 4000}]\n    repeat: 6\n"
    exc = spec_error(api.compile_graph, text)
    assert exc.message == "the network has more than 20,000 nodes (--max-nodes)"
    assert_positioned(exc, text)
    rc, err = _cli(tmp_path, text)
    assert rc == 1 and "the network has more than 20,000 nodes (--max-nodes)" in err
    # the flag sets the cap (shown on 24 nodes rather than another 24,000)
    small = HEAD + "  - seq: [{relu: , repeat: 4}]\n    repeat: 6\n"
    rc, err = _cli(tmp_path, small, "--max-nodes", "20")
    assert rc == 1 and "the network has more than 20 nodes (--max-nodes)" in err
    assert _cli(tmp_path, small, "--max-nodes", "30")[0] == 0


def block_bomb(levels: int) -> str:
    """Each block calls the next twice: 2**levels layers from a few lines of YAML."""
    blocks = "".join(f"  B{i}:\n    layers: [B{i + 1}, B{i + 1}]\n" for i in range(levels))
    return HEAD + "  - B0\nblocks:\n" + blocks + f"  B{levels}:\n    layers: [relu]\n"


def test_exponential_block_expansion_hits_the_node_cap_quickly() -> None:
    """At a cap of 2,000 nodes: the default's 20,000 are test_node_count_cap_and_flag's."""
    text = block_bomb(40)  # 2**40 relus if nothing stopped it
    limits = Limits(max_nodes=2_000)
    exc = spec_error(api.compile_graph, text, limits=limits)
    assert exc.message == "the network has more than 2,000 nodes (--max-nodes)"
    assert_positioned(exc, text)
    assert timed(lambda: spec_error(api.compile_graph, text, limits=limits), runs=1) < 5.0


def nested_blocks(levels: int, inline: bool = False) -> str:
    flag = "    inline: true\n" if inline else ""
    blocks = "".join(f"  B{i}:\n{flag}    layers: [relu, B{i + 1}]\n" for i in range(levels))
    return HEAD + "  - B0\nblocks:\n" + blocks + f"  B{levels}:\n    layers: [relu]\n"


@pytest.mark.parametrize("inline", [False, True], ids=["blocks", "inline_blocks"])
def test_block_nesting_cap_and_flag(inline: bool, tmp_path: Path) -> None:
    text = nested_blocks(48, inline)  # B0 .. B48: 49 levels
    exc = spec_error(api.compile_graph, text)
    assert exc.message == "blocks nest deeper than 48 levels (--max-depth)"
    assert_positioned(exc, text)
    assert api.compile_graph(nested_blocks(47, inline))
    assert api.compile_graph(text, limits=Limits(max_depth=64))
    assert _cli(tmp_path, text)[0] == 1
    assert _cli(tmp_path, text, "--max-depth", "64")[0] == 0


def test_seq_nesting_counts_toward_the_depth_cap() -> None:
    text = HEAD + "  - " + "seq: [" * 49 + "relu" + "]" * 49 + "\n"
    exc = spec_error(api.compile_graph, text)
    assert exc.message == "blocks nest deeper than 48 levels (--max-depth)" and exc.line == 3


def test_recursive_blocks_are_refused() -> None:
    text = HEAD + "  - A\nblocks:\n  A: {layers: [relu, B]}\n  B: {layers: [A]}\n"
    exc = spec_error(api.compile_graph, text)
    assert (
        exc.message == "block 'A' calls itself (A -> B -> A); blocks cannot be recursive"
        and exc.line == 6
    )


def test_expression_size_cap() -> None:
    at_limit = "max(" + ",".join(["1"] * 497) + ")+2"
    assert len(at_limit) == 1000
    graph = api.compile_graph(
        HEAD + f"  - conv: {{out: {yaml_str('${' + at_limit + '}')}, kernel: 1}}\n"
    )
    assert next(iter(graph)).shape[0] == 3
    over = at_limit + "0"
    exc = spec_error(
        api.compile_graph, HEAD + f"  - conv: {{out: {yaml_str('${' + over + '}')}, kernel: 1}}\n"
    )
    assert exc.message == "expression too long (1001 > 1000 characters)" and exc.line == 3


def test_interpolated_strings_are_capped() -> None:
    text = (
        "params: {s: \"${'"
        + "x" * 900
        + "'}\"}\n"
        + HEAD
        + '  - {relu: , name: "${s + s + s + s + s + s + s + s + s + s + s + s}"}\n'
    )
    exc = spec_error(api.compile_graph, text)
    assert "string result too long (limit is 10000 characters)" in exc.message and exc.line == 4


# --------------------------------------------------------------------------- memory


HUGE = textwrap.dedent("""\
    name: huge
    input: [3, 32, 32]
    layers:
      - conv: {out: 64, kernel: 3, padding: 1}
      - flatten
      - {linear: 10000000, name: fc}
""")


def test_model_too_big_for_memory_is_refused_before_allocation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import archc.compiler.emit

    monkeypatch.setattr(
        archc.compiler.emit,
        "build_module",
        lambda *a, **k: pytest.fail("allocated a model that cannot fit"),
    )
    exc = spec_error(api.build, HUGE)
    assert (
        "needs about 2621.5 GB of weights" in exc.message
        and "refusing to allocate (use --force to try anyway)" in exc.message
    )
    assert "the largest layer is 'fc' (655,370,000,000 params)" in exc.message
    assert (exc.line, exc.col) == (6, 6)  # the layer to fix


def test_memory_guard_cli_and_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(HEAD + "  - conv: {out: 8, kernel: 3}\n  - flatten\n  - linear: 10\n")
    monkeypatch.setattr(
        guard, "available_memory", lambda: 1_000
    )  # pretend the machine has 1 kB free
    assert main(["build", str(path)]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: {path}:")
        and "refusing to allocate (use --force to try anyway)" in err
        and "Traceback" not in err
    )
    assert main(["build", str(path), "--force"]) == 0
    with pytest.raises(SpecError, match="refusing to allocate"):
        api.build(path)
    assert api.build(path, force=True).archc_graph.total_params == 8 * 3 * 9 + 8 + 8 * 36 * 10 + 10


def test_guard_counts_activations_too() -> None:
    graph = api.compile_graph(HEAD + "  - conv: {out: 8, kernel: 1}\n")
    weights, activations = guard.model_bytes(graph, batch=10)
    assert weights == (8 * 3 + 8) * 4 and activations == 10 * 8 * 8 * 8 * 4
    guard.check_fits(graph, batch=10, available=weights + activations)
    with pytest.raises(SpecError, match="refusing to allocate"):
        guard.check_fits(graph, batch=10, available=weights + activations - 1)


def test_train_refuses_a_model_that_cannot_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "huge.yaml"
    spec.write_text(HUGE)
    out = tmp_path / "run"
    rc = main(["train", str(spec), "--dataset", "synthetic", "--synthetic-size", "64,32",
               "--synthetic-classes", "4", "--epochs", "1", "--batch-size", "32", "--log", "quiet",
               "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "refusing to allocate" in err and "Traceback" not in err
    assert not out.exists()  # no lock, no half-made run directory left behind


@pytest.mark.parametrize(
    ("limit", "usage", "expected"),
    [
        ("1073741824\n", "268435456\n", 768 * MB),
        ("max\n", "5\n", None),
        ("9223372036854771712\n", "5\n", None),
        ("100\n", "200\n", 0),
    ],
    ids=["limited", "v2_unlimited", "v1_unlimited", "over_the_limit"],
)
def test_a_container_memory_limit_caps_the_guard(
    limit: str, usage: str, expected: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Inside a container /proc/meminfo shows the host; the cgroup
    limit is what the model may use."""
    (tmp_path / "max").write_text(limit)
    (tmp_path / "current").write_text(usage)
    monkeypatch.setattr(guard, "CGROUP_FILES", (
        (str(tmp_path / "missing"), str(tmp_path / "missing")),
        (str(tmp_path / "max"), str(tmp_path / "current")),
    ))  # fmt: skip
    assert guard.cgroup_headroom() == expected
    monkeypatch.setattr(guard, "_system_available", lambda: 64 * 1024 * MB)
    assert guard.available_memory() == (64 * 1024 * MB if expected is None else expected)
