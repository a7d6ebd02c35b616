"""`archc diagram`: DOT structure, rendered SVGs, layout promises (checked on
dot's own coordinates), fallbacks.

Rendering tests need graphviz's `dot` (`make setup` installs it) and skip with that reason where
it is missing; the DOT-level tests and the missing-`dot` fallback run everywhere.
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from archc.analysis.diagram import (
    DiagramError,
    GraphvizNotFound,
    elements,
    render,
    skip_inputs,
    to_dot,
)
from archc.api import compile_graph
from archc.ops.base import fmt_shape
from tests.conftest import REPO, TEST_SPECS, archc_here, clean_env

DOT = shutil.which("dot")
needs_dot = pytest.mark.skipif(
    DOT is None, reason="graphviz's `dot` is not installed (make setup installs it)"
)
ZOO = sorted((REPO / "specs").glob("*.yaml"))
# The acceptance trio: the zoo's resnet18 and googlenet (or this suite's copies
# until they land) and a DenseNet.
TRIO = [
    REPO / "specs/resnet18.yaml"
    if (REPO / "specs/resnet18.yaml").exists()
    else TEST_SPECS / "report_resnet18.yaml",
    REPO / "specs/googlenet.yaml"
    if (REPO / "specs/googlenet.yaml").exists()
    else TEST_SPECS / "report_googlenet.yaml",
    TEST_SPECS / "diagram_densenet.yaml",
]


def top_level_names(graph) -> set[str]:
    """Names of the top-level blocks and seqs: what a depth-1 picture must show."""
    return {path for path in graph.scopes if "." not in path}


def svg_text(path: Path) -> str:
    """All text of an SVG, parsed as XML (so the file must be well formed)."""
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    return "\n".join(t for t in root.itertext())


def positions(dot_text: str) -> dict[str, tuple[float, float]]:
    """Node centres as dot lays them out (`dot -Tplain`)."""
    out = subprocess.run(
        [DOT or "dot", "-Tplain"],
        input=dot_text.encode(),
        capture_output=True,
        check=True,
        timeout=120,
    )
    nodes = {}
    for line in out.stdout.decode().splitlines():
        parts = line.split()
        if parts and parts[0] == "node":
            nodes[parts[1]] = (float(parts[2]), float(parts[3]))
    return nodes


@needs_dot
@pytest.mark.parametrize("path", TRIO, ids=lambda p: p.stem)
def test_acceptance_svgs_are_xml_with_block_names_and_shapes(path: Path, tmp_path: Path) -> None:
    graph = compile_graph(path)
    out = render(graph, tmp_path / f"{path.stem}.svg", "svg", depth=1)
    text = svg_text(out)
    for name in top_level_names(graph):
        assert name in text, name
    _, owner = elements(graph, 1)
    crossing = {
        i for node in graph for i in node.inputs if i == "input" or owner[i] is not owner[node.id]
    }
    assert crossing and all(
        fmt_shape(graph.shape_of(i)) in text for i in crossing
    )  # every edge's shape label
    assert fmt_shape(graph.shape_of(graph.output)) in text


@needs_dot
@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_every_zoo_spec_renders_at_depth_one(path: Path, tmp_path: Path) -> None:
    graph = compile_graph(path)
    text = svg_text(render(graph, tmp_path / "x.svg", "svg", depth=1))
    assert all(name in text for name in top_level_names(graph))


def test_depth_folds_blocks_and_merges_identical_chained_ones() -> None:
    graph = compile_graph(TEST_SPECS / "report_resnet50.yaml")
    one = to_dot(graph, depth=1)
    assert "subgraph cluster" not in one and "layer3" in one and "Bottleneck" not in one
    two = to_dot(graph, depth=2)
    assert two.count("subgraph cluster") == 4  # layer1..layer4 open; their blocks fold
    assert "layer2.1 … layer2.3" in two and "Bottleneck(planes=128, stride=1) ×3" in two
    assert "layer3.1 … layer3.5" in two and "×5" in two and "layer2.2" not in two
    order, owner = elements(graph, 2)
    assert (
        owner["layer2.2.conv1"] is owner["layer2.3.bn3"]
        and owner["layer2.0.conv1"] is not owner["layer2.1.conv1"]
    )
    assert len(order) == 7 + 4 * 2  # 7 top-level layers; per stage, its first block and its repeats
    full = to_dot(graph)
    assert full.count("subgraph cluster") == 4 + 16 + 4  # stages, blocks, downsample seqs


def test_blocks_that_differ_in_shape_are_not_merged() -> None:
    """DenseNet's layers share a type and arguments but not input
    channels: each keeps its own box."""
    graph = compile_graph(TEST_SPECS / "diagram_densenet.yaml")
    order, _ = elements(graph, 3)
    dense = [el for el in order if el.key.startswith("features.denseblock1.")]
    assert [el.count for el in dense] == [1] * 6


def test_edges_carry_shapes_and_skips_are_light() -> None:
    graph = compile_graph(TEST_SPECS / "report_resnet18.yaml")
    text = to_dot(graph)
    assert 'label=" 64x56x56"' in text and 'label=" 3x224x224"' in text
    skips = skip_inputs(graph)
    assert ("maxpool", "layer1.0.add") in skips and ("layer1.0.bn2", "layer1.0.add") not in skips
    assert (
        "layer1.1.relu~2",
        "layer2.0.add",
    ) not in skips  # a projection shortcut is a parallel branch
    light = [line for line in text.splitlines() if re.search(r"-> .*weight=1\b", line)]
    assert len(light) == 5  # identity shortcuts: 8 blocks, 3 of them with a projection


def test_heads_input_and_output_are_drawn() -> None:
    graph = compile_graph(TEST_SPECS / "report_googlenet.yaml", aux=True)
    text = to_dot(graph, depth=1)
    assert "<b>input</b>" in text and "<b>output</b>" in text
    assert "<b>aux1</b>" in text and "<b>aux2</b>" in text and "loss ×0.3, train only" in text


@needs_dot
def test_inception_branches_share_a_rank_and_the_main_path_is_straight() -> None:
    graph = compile_graph(TEST_SPECS / "report_googlenet.yaml", aux=True)
    order, _ = elements(graph, 2)
    ids = {el.key: f"n{k}" for k, el in enumerate(order)}
    pos = positions(to_dot(graph, depth=2))
    for block in ("inception3a", "inception4b", "inception5b"):
        ys = {round(pos[ids[f"{block}.branch{b}"]][1], 2) for b in (1, 2, 3, 4)}
        assert len(ys) == 1, (block, ys)
    pos1 = positions(to_dot(graph, depth=1))
    order1, _ = elements(graph, 1)
    main = [f"n{k}" for k, el in enumerate(order1) if not el.key.startswith("aux")]
    xs = {round(pos1[n][0], 1) for n in main}
    assert len(xs) == 1, xs  # the aux heads sit to the side; the trunk is one vertical line


@needs_dot
def test_residual_main_path_stays_straight() -> None:
    graph = compile_graph(TEST_SPECS / "report_resnet18.yaml")
    order, owner = elements(graph, None)
    ids = {id(el): f"n{k}" for k, el in enumerate(order)}
    pos = positions(to_dot(graph))
    trunk = [
        "layer1.0.conv1",
        "layer1.0.bn1",
        "layer1.0.conv2",
        "layer1.0.bn2",
        "layer1.0.add",
        "layer1.0.relu~2",
        "layer1.1.conv1",
        "layer1.1.add",
    ]
    xs = {round(pos[ids[id(owner[n])]][0], 1) for n in trunk}
    assert len(xs) == 1, xs


def test_rankdir_and_bad_arguments() -> None:
    graph = compile_graph(TEST_SPECS / "report_alexnet.yaml")
    assert "rankdir=LR" in to_dot(graph, rankdir="LR")
    with pytest.raises(ValueError, match="rankdir"):
        to_dot(graph, rankdir="XY")
    with pytest.raises(ValueError, match="depth"):
        to_dot(graph, depth=0)
    with pytest.raises(ValueError, match="format"):
        render(graph, "x.gif", "gif")


def test_labels_are_escaped_for_graphviz_html(write_spec) -> None:
    path = write_spec("""
        name: "odd <name> & co"
        input: [3, 16, 16]
        layers:
          - adaptive_avgpool: 2
          - flatten
          - linear: 4
    """)
    text = to_dot(compile_graph(path))
    assert "adaptive_avgpool -&gt; 2" in text and 'digraph "odd <name> & co"' in text
    assert "&lt;name&gt; &amp; co" in text


def test_dot_format_needs_no_graphviz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    graph = compile_graph(TEST_SPECS / "report_alexnet.yaml")
    out = render(graph, tmp_path / "a.dot", "dot", depth=1)
    assert out.read_text() == to_dot(graph, depth=1)
    with pytest.raises(GraphvizNotFound) as info:
        render(graph, tmp_path / "a.svg", "svg")
    assert info.value.dot_path == tmp_path / "a.dot" and "apt-get install graphviz" in str(
        info.value
    )


def test_cli_without_dot_writes_the_dot_file_warns_and_exits_zero(tmp_path: Path) -> None:
    env = clean_env(PATH=str(tmp_path))  # no dot on this PATH
    spec = TEST_SPECS / "report_resnet18.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "archc", "diagram", str(spec), "--format", "png"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report_resnet18.dot").exists() and not (
        tmp_path / "report_resnet18.png"
    ).exists()
    assert (
        "warning" in done.stderr
        and "install graphviz" in done.stderr
        and "Traceback" not in done.stderr
    )


@needs_dot
def test_cli_default_name_suffix_format_and_depth(tmp_path: Path) -> None:
    spec = TEST_SPECS / "report_resnet18.yaml"
    done = archc_here("diagram", str(spec), "--depth", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert svg_text(tmp_path / "report_resnet18.svg")
    png = archc_here(
        "diagram", str(spec), "-o", str(tmp_path / "r.png"), "--rankdir", "LR", cwd=tmp_path
    )
    assert png.returncode == 0 and (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    dot = archc_here("diagram", str(spec), "--format", "dot", "-o", str(tmp_path / "r.gv"))
    assert dot.returncode == 0 and (tmp_path / "r.gv").read_text().startswith("digraph resnet18 {")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--depth", "0"], "expected a positive integer"),
        (["--format", "gif"], "invalid choice"),
        (["--rankdir", "BT"], "invalid choice"),
        (
            ["-o", "tests/specs/report_alexnet.yaml/x.dot", "--format", "dot"],
            "report_alexnet.yaml is not a directory",
        ),
        (["-o", "r.jpg", "--format", "svg"], "--format svg does not match the file name r.jpg"),
        (["-o", "r.gif"], "cannot tell which format to write to r.gif"),
    ],
)
def test_cli_bad_arguments_are_clear_errors(args: list[str], message: str) -> None:
    done = archc_here("diagram", "tests/specs/report_alexnet.yaml", *args)
    assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr


def _fake_dot(folder: Path, body: str) -> None:
    script = folder / "dot"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_dot_failures_and_timeouts_are_diagram_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = compile_graph(TEST_SPECS / "report_alexnet.yaml")
    sleep = shutil.which("sleep") or "/bin/sleep"
    monkeypatch.setenv("PATH", str(tmp_path))
    _fake_dot(tmp_path, 'echo "Error: syntax error in line 1" >&2; exit 3')
    with pytest.raises(
        DiagramError, match=re.escape("dot failed (exit 3): Error: syntax error in line 1")
    ):
        render(graph, tmp_path / "a.svg")
    _fake_dot(tmp_path, f"exec {sleep} 5")
    with pytest.raises(DiagramError, match=r"longer than 0\.5 s"):
        render(graph, tmp_path / "a.svg", timeout=0.5)


def test_the_graph_is_built_with_the_graphviz_package() -> None:
    import graphviz

    from archc.analysis.diagram import diagram

    graph = compile_graph(TEST_SPECS / "report_resnet18.yaml")
    built = diagram(graph, depth=2, dpi=150)
    assert isinstance(built, graphviz.Digraph) and built.source == to_dot(graph, depth=2, dpi=150)
    assert "dpi=150" in built.source and "subgraph cluster_0 {" in built.source


def test_fit_depth_folds_big_networks_and_keeps_small_ones_whole() -> None:
    from archc.analysis.diagram import MAX_BOXES, fit_depth

    small = compile_graph(REPO / "specs" / "lenet5.yaml")
    assert fit_depth(small) is None  # every layer fits
    for name in ("resnet50", "inception_v3"):
        graph = compile_graph(REPO / "specs" / f"{name}.yaml")
        depth = fit_depth(graph)
        assert depth is not None and len(elements(graph, depth)[0]) <= MAX_BOXES
        deeper = (
            None
            if depth + 1 > max(len(n.scope.split(".")) for n in graph if n.scope)
            else depth + 1
        )
        assert len(elements(graph, deeper)[0]) > MAX_BOXES  # the deepest level that fits


def _png_size(path: Path) -> tuple[int, int]:
    import struct

    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


@needs_dot
def test_default_diagrams_are_readable_and_depth_and_dpi_override(tmp_path: Path) -> None:
    for name in (
        "resnet50",
        "inception_v3",
    ):  # 493x14121 and 2906x16153 px when drawn at full depth
        done = archc_here(
            "diagram", str(REPO / "specs" / f"{name}.yaml"), "-o", str(tmp_path / f"{name}.png")
        )
        assert done.returncode == 0, done.stderr
        width, height = _png_size(tmp_path / f"{name}.png")
        assert width <= 1200 and height <= 3000, (name, width, height)
    sharp = archc_here(
        "diagram",
        str(REPO / "specs" / "resnet50.yaml"),
        "--dpi",
        "192",
        "-o",
        str(tmp_path / "sharp.png"),
    )
    assert (
        sharp.returncode == 0
        and _png_size(tmp_path / "sharp.png")[1] > 1.8 * _png_size(tmp_path / "resnet50.png")[1]
    )
    full = archc_here(
        "diagram",
        str(TEST_SPECS / "report_resnet18.yaml"),
        "--depth",
        "all",
        "--format",
        "dot",
        "-o",
        str(tmp_path / "full.dot"),
    )
    boxes = re.findall(r"^\s*n\d+ \[", (tmp_path / "full.dot").read_text(), re.M)
    assert full.returncode == 0 and len(boxes) == len(
        compile_graph(TEST_SPECS / "report_resnet18.yaml").nodes
    )
