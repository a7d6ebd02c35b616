"""`archc report`: static per-layer figures checked against torchvision,
FlopCounterMode and torchinfo.

The acceptance figures (MACs of resnet18, alexnet, vgg16, googlenet), FLOPs of every
torchvision-parity spec against a real forward under FlopCounterMode, params against torchvision,
per-layer shapes and params against torchinfo.summary, receptive fields against the input
gradient's support, the depth tree, every output format, and that none of it imports torch.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from archc.analysis.report import CONVENTIONS, render, report_rows, si, totals
from archc.api import compile_graph
from tests.conftest import REPO, TEST_SPECS, archc_here, run_python, spec_size

ZOO = REPO / "specs"

# The acceptance figures; a zoo spec and this suite's own fixture must both give them.
ACCEPTANCE_MACS = {
    "resnet18": 1_814_073_344,
    "alexnet": 714_188_480,
    "vgg16": 15_470_264_320,
    "googlenet": 1_498_376_192,
}
FIXTURES = {
    "resnet18": "report_resnet18",
    "alexnet": "report_alexnet",
    "vgg16": "report_vgg16",
    "googlenet": "report_googlenet",
    "resnet50": "report_resnet50",
    "densenet121": "diagram_densenet",
}
HEAVY_MACS, HEAVY_PARAMS = (
    2 * 10**9,
    2 * 10**7,
)  # a real forward above these takes seconds on 2 cores: `slow`


def zoo(name: str) -> Path:
    path = ZOO / f"{name}.yaml"
    if not path.exists():
        pytest.skip(f"zoo spec {path.relative_to(REPO)} is not written yet")
    return path


def fixture(name: str) -> Path:
    return TEST_SPECS / f"{FIXTURES[name]}.yaml"


def parity_specs() -> list[object]:
    """Zoo specs that declare torchvision parity, plus this suite's
    fixtures; heavy ones run under `slow`."""
    from archc.zoo import published

    # family specs (resnet.yaml: resnet18 ... wide_resnet101_2) are checked per
    # variant in test_torchvision_zoo
    paths = [
        p
        for p in sorted(ZOO.glob("*.yaml"))
        if "torchvision parity" in p.read_text() and p.stem in published()
    ]
    paths += [fixture(name) for name in FIXTURES]
    out = []
    for path in paths:
        macs, params = spec_size(path)
        heavy = macs > HEAVY_MACS or params > HEAVY_PARAMS
        out.append(
            pytest.param(
                path,
                id=str(path.relative_to(REPO).with_suffix("")),
                marks=[pytest.mark.slow] if heavy else [],
            )
        )
    return out


def torchvision_name(path: Path) -> str:
    if path.parent == ZOO:
        return path.stem
    return next(name for name, stem in FIXTURES.items() if stem == path.stem)


# acceptance figures -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ACCEPTANCE_MACS))
def test_acceptance_macs_of_the_zoo_specs(name: str) -> None:
    tot = totals(compile_graph(zoo(name)))
    assert tot["macs"] == ACCEPTANCE_MACS[name]
    assert tot["flops"] == 2 * ACCEPTANCE_MACS[name]


@pytest.mark.parametrize("name", sorted(ACCEPTANCE_MACS))
def test_acceptance_macs_of_the_fixture_specs(name: str) -> None:
    tot = totals(compile_graph(fixture(name)))
    assert tot["macs"] == ACCEPTANCE_MACS[name]


@pytest.mark.parametrize("path", parity_specs())
def test_flops_equal_flop_counter_mode_and_params_equal_torchvision(path: Path) -> None:
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    from archc.api import build

    graph = compile_graph(path)
    tot = totals(graph)
    with torch.device(
        "meta"
    ):  # FLOPs and shapes need no values: nothing is initialised or computed
        model = build(path).eval()
        counter = FlopCounterMode(display=False)
        with counter:
            model(torch.empty(1, *graph.input_shape))
    assert counter.get_total_flops() == tot["flops"]

    name = torchvision_name(path)
    kwargs = (
        {"aux_logits": bool(graph.heads), "init_weights": False}
        if name in ("googlenet", "inception_v3")
        else {}
    )
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)(**kwargs).eval()
        counter = FlopCounterMode(display=False)
        with counter:
            reference(torch.empty(1, *graph.input_shape))
    assert tot["params"] == sum(p.numel() for p in reference.parameters())
    assert tot["flops"] == counter.get_total_flops()


@pytest.mark.parametrize(
    ("path", "overrides"),
    [
        (TEST_SPECS / "report_resnet18.yaml", {}),
        (TEST_SPECS / "report_googlenet.yaml", {"aux": True}),
        (TEST_SPECS / "diagram_densenet.yaml", {"growth": 8}),
        (TEST_SPECS / "lang_unet.yaml", {}),
    ],
)
def test_shapes_and_params_match_torchinfo_summary(
    path: Path, overrides: dict[str, object]
) -> None:
    """Every leaf module call torchinfo records has our row's output
    shape and params, in call order."""
    import torch
    import torchinfo

    from archc.api import build

    graph = compile_graph(path, **overrides)
    torch.manual_seed(0)
    model = build(path, **overrides)
    summary = torchinfo.summary(
        model,
        input_size=(1, *graph.input_shape),
        verbose=0,
        depth=100,
        mode="train",
        col_names=("output_size", "num_params"),
    )
    assert summary.total_params == totals(graph)["params"]
    names = {id(module): name for name, module in model.named_modules()}
    seen: dict[str, list[tuple[int, ...]]] = {}
    for info in summary.summary_list:
        name = names.get(id(info.module))
        if name and info.is_leaf_layer:
            seen.setdefault(name, []).append(tuple(info.output_size[1:]))
    rows = {r.name: r for r in report_rows(graph)}
    expected: dict[str, list[tuple[int, ...]]] = {}
    for node in graph:
        if node.module is not None:
            expected.setdefault(node.module, []).append(rows[node.id].shape)
    assert seen == expected
    by_module = {
        names[id(info.module)]: info.num_params
        for info in summary.summary_list
        if id(info.module) in names
    }
    for row in report_rows(graph, depth=2):
        if row.name in by_module and row.kind != "layer":
            assert row.params == by_module[row.name], row.name


# the tree -------------------------------------------------------------------------------------
def test_depth_one_folds_top_level_blocks_with_subtotals() -> None:
    graph = compile_graph(fixture("resnet18"))
    rows = report_rows(graph, depth=1)
    assert [r.name for r in rows] == [
        "conv1",
        "bn1",
        "relu",
        "maxpool",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "avgpool",
        "9",
        "fc",
    ]
    layer1 = rows[4]
    assert layer1.collapsed and layer1.kind == "seq" and layer1.level == 0
    members = [n for n in graph if n.scope.startswith("layer1")]
    assert layer1.params == sum(n.params for n in members) == 147_968
    assert layer1.macs == sum(n.macs for n in members)
    assert layer1.shape == (64, 56, 56) and layer1.layers == len(members)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, None])
def test_rows_that_are_not_open_blocks_partition_the_totals(depth: int | None) -> None:
    """At every depth, layers plus folded blocks count each node once: they sum to the totals."""
    graph = compile_graph(fixture("googlenet"), aux=True)
    rows = [r for r in report_rows(graph, depth=depth) if not r.expanded]
    tot = totals(graph)
    assert sum(r.params for r in rows) == tot["params"]
    assert sum(r.buffers for r in rows) == tot["non_trainable"]
    assert sum(r.macs for r in rows) == tot["macs_with_train_heads"]
    assert sum(r.macs for r in rows if not r.train_only) == tot["macs"]
    assert sum(r.layers for r in rows) == len(graph.nodes)
    assert all(r.level < depth for r in report_rows(graph, depth=depth)) if depth else True


def test_levels_follow_block_nesting_and_blocks_name_their_type() -> None:
    graph = compile_graph(fixture("resnet18"))
    rows = {r.name: r for r in report_rows(graph)}
    assert (
        rows["layer1"].level == 0
        and rows["layer1.0"].level == 1
        and rows["layer1.0.conv1"].level == 2
    )
    assert rows["layer2.0.downsample"].level == 2 and rows["layer2.0.downsample.0"].level == 3
    assert (
        rows["layer1.0"].op == "BasicBlock planes=64 stride=1" and rows["layer1.0"].kind == "block"
    )
    assert rows["layer1.0.relu~2"].leaf == "relu~2"


def test_connected_to_names_merge_inputs_and_non_sequential_reads() -> None:
    rows = {r.name: r for r in report_rows(compile_graph(fixture("resnet18")))}
    assert rows["layer1.0.add"].connected == ["layer1.0.bn2", "maxpool"]
    assert rows["layer1.0.conv1"].connected == []  # reads the row above
    assert rows["layer2.0.downsample"].connected == ["layer1.1.relu~2"]
    assert rows["layer2.0.downsample.0"].connected == []  # the open block above already says so


def test_per_row_percentages_and_activation_memory() -> None:
    graph = compile_graph(fixture("resnet18"))
    rows = {r.name: r for r in report_rows(graph, batch=8, dtype="float32")}
    tot = totals(graph, batch=8)
    conv1 = rows["conv1"].as_dict(tot["params"], tot["macs"])
    assert conv1["macs"] == 64 * 112 * 112 * 3 * 49 and conv1["flops"] == 2 * conv1["macs"]
    assert conv1["params_pct"] == round(100 * 9408 / 11_689_512, 2)
    assert conv1["activation_bytes"] == 64 * 112 * 112 * 8 * 4 and conv1["storage"] == "new"
    assert rows["relu"].activation_bytes == 0 and rows["relu"].storage == "in place"
    assert rows["9"].storage == "view"
    half = {r.name: r for r in report_rows(graph, batch=8, dtype="bfloat16")}
    assert half["conv1"].activation_bytes * 2 == rows["conv1"].activation_bytes
    full = [r for r in report_rows(graph) if not r.expanded]
    assert sum(r.as_dict(tot["params"], tot["macs"])["macs_pct"] for r in full) == pytest.approx(
        100, abs=0.05
    )


def test_totals_memory_and_receptive_field() -> None:
    graph = compile_graph(fixture("resnet18"))
    tot = totals(graph, batch=4, dtype="float16")
    assert (
        tot["param_memory"] == 11_689_512 * 2 + (9_620 - 20) * 2 + 20 * 8
    )  # int64 num_batches_tracked
    layers = [r for r in report_rows(graph, batch=4, dtype="float16") if r.kind == "layer"]
    assert tot["forward_activation_memory"] == sum(r.activation_bytes for r in layers)
    assert tot["receptive_field"] == {
        "node": "layer4.1.relu~2",
        "size": [435, 435],
        "stride": [32, 32],
    }
    assert tot["depth"] == 18
    assert set(tot["training_memory"]["peak"]) == {"sgd", "adam"}


@pytest.mark.parametrize(
    ("name", "size"), [("resnet18", 435), ("resnet50", 427), ("vgg16", 212), ("alexnet", 195)]
)
def test_published_receptive_fields(name: str, size: int) -> None:
    """The theoretical receptive fields published for these networks
    (Araujo et al., Distill 2019)."""
    rf = totals(compile_graph(fixture(name)))["receptive_field"]
    assert rf["size"] == [size, size] and rf["stride"] == [32, 32]


RF_SPEC = """
name: rf
input: [1, 61, 61]
layers:
  - conv: {out: 2, kernel: 3}
  - conv: {out: 2, kernel: 3, stride: 2}
  - avgpool: {kernel: 2}
  - conv: {out: 2, kernel: [3, 5], dilation: 2}
  - avgpool: {kernel: 3, stride: 1, padding: 1}
  - conv: {out: 1, kernel: 1}
"""


def test_receptive_field_equals_the_input_gradient_support(write_spec) -> None:
    """One output position depends on exactly `size` input pixels, and its
    neighbour's window starts `stride` later."""
    import torch

    from archc.api import build

    path = write_spec(RF_SPEC)
    graph = compile_graph(path)
    row = report_rows(graph)[-1]
    assert row.rf is not None
    model = build(path)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)

    def support(i: int, j: int) -> tuple[tuple[int, int], tuple[int, int]]:
        x = torch.ones(1, *graph.input_shape, requires_grad=True)
        model(x)[0, 0, i, j].backward()
        nz = x.grad[0, 0].nonzero()
        return (int(nz[:, 0].min()), int(nz[:, 0].max()) + 1), (
            int(nz[:, 1].min()),
            int(nz[:, 1].max()) + 1,
        )

    (r0, r1), (c0, c1) = support(3, 3)
    assert [r1 - r0, c1 - c0] == row.as_dict(1, 1)["receptive_field"] == [31, 47]
    (r0b, _), (c0b, _) = support(4, 4)
    assert [r0b - r0, c0b - c0] == row.as_dict(1, 1)["effective_stride"] == [4, 4]


def test_receptive_field_rules_for_pools_flatten_and_unknown_reshapes(write_spec) -> None:
    path = write_spec("""
        name: rf2
        input: [3, 12, 12]
        layers:
          - {conv: {out: 4, kernel: 3, padding: 1}, name: c}
          - {adaptive_avgpool: 5, name: ap}
          - {flatten: , name: f}
          - {linear: 3, name: fc}
    """)
    fields = {r.name: r.as_dict(1, 1) for r in report_rows(compile_graph(path))}
    assert fields["c"]["receptive_field"] == [3, 3]
    # 12 -> 5 bins: the widest bin is ceil((12 + 5 - 1) / 5) = 4 pixels, the bins step 12/5
    assert fields["ap"]["receptive_field"] == [6, 6] and fields["ap"]["effective_stride"] == [
        2.4,
        2.4,
    ]
    assert fields["f"]["receptive_field"] == pytest.approx(
        [6 + 4 * 2.4] * 2
    )  # the whole 5x5 map: 5 bins
    assert fields["fc"]["receptive_field"] == fields["f"]["receptive_field"]
    seq = write_spec(
        """
        name: rf3
        input: [3, 8, 8]
        layers:
          - conv: {out: 4, kernel: 3}
          - flatten: {start: 1}
          - conv: {out: 4, kernel: 3}
    """,
        name="rf3.yaml",
    )
    graph = compile_graph(seq)
    assert [r.rf is None for r in report_rows(graph)] == [False, True, True]
    assert (
        totals(graph)["receptive_field"] is None
    )  # never the largest known field of an earlier layer


def test_a_broadcast_gate_adds_its_field_but_not_its_step(write_spec) -> None:
    """An SE gate (a 1x1 map) makes every position see the whole input, but the gated map still
    steps as it did: EfficientNet's field stays at stride 32 instead of multiplying per block."""
    path = write_spec(
        """
        name: rf_se
        input: [1, 16, 16]
        layers:
          - {conv: {out: 4, kernel: 3, stride: 2}, name: c}
          - multiply:
              - [{adaptive_avgpool: 1}, {conv: {out: 4, kernel: 1}}, sigmoid]
              - []
            name: se
          - {conv: {out: 4, kernel: 3}, name: last}
    """,
        name="rf_se.yaml",
    )
    fields = {r.name: r.as_dict(1, 1) for r in report_rows(compile_graph(path))}
    assert fields["c"]["effective_stride"] == fields["last"]["effective_stride"] == [2, 2]
    assert (
        fields["last"]["receptive_field"] == [3 + 6 * 2 + 2 * 2] * 2
    )  # the gate's 7x7 map, then 3x3
    assert totals(compile_graph("efficientnet_b0"))["receptive_field"]["stride"] == [32, 32]


# formats and the CLI ------------------------------------------------------------------------------
def test_table_footer_states_the_conventions_and_totals() -> None:
    graph = compile_graph(fixture("resnet18"))
    text = render(report_rows(graph, depth=1), totals(graph, batch=2), "table")
    assert "1,814,073,344" in text and "3,628,146,688" in text and "11,689,512" in text
    assert (
        "see docs/report.md for every convention" in text and "bias excluded" not in text
    )  # stated once, in the docs
    assert "SGD with momentum" in text and "Adam" in text and "435 px" in text
    assert "layer4" in text and "BasicBlock" not in text  # folded at depth 1


def test_markdown_csv_and_json_carry_the_same_rows() -> None:
    graph = compile_graph(fixture("googlenet"), aux=True)
    rows = report_rows(graph, depth=2)
    tot = totals(graph)
    md = render(rows, tot, "markdown")
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert (
        len(table) == len(rows) + 2
        and "**inception3a**" in md
        and "| **inception3a.branch2** |" in md
    )  # full paths
    assert "- MACs count conv and linear weights" in md and "FlopCounterMode" not in md
    parsed = list(csv.DictReader(io.StringIO(render(rows, tot, "csv"))))
    assert [p["name"] for p in parsed] == [r.name for r in rows]
    assert int(parsed[0]["params"]) == rows[0].params
    data = json.loads(render(rows, tot, "json"))
    assert data["totals"]["macs"] == 1_498_376_192 and data["conventions"] == CONVENTIONS
    assert [r["name"] for r in data["rows"]] == [r.name for r in rows]
    aux = next(r for r in data["rows"] if r["name"] == "aux1")
    assert aux["train_only"] and aux["macs_pct"] > 0


def test_si_prefixes_are_decimal() -> None:
    assert (
        si(1_814_073_344) == "1.81G"
        and si(11_689_512) == "11.7M"
        and si(416_520) == "417K"
        and si(999) == "999"
    )
    assert si(46_758_048, "B") == "46.8MB" and si(1500, "B") == "1.50KB" and si(0) == "0"


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json"])
def test_report_never_imports_torch(fmt: str) -> None:
    code = (
        "import sys\nfrom archc.cli import main\n"
        f"rc = main(['report', 'tests/specs/report_resnet18.yaml', '--format', '{fmt}', "
        "'--depth', '2'])\nassert rc == 0\nassert 'torch' not in sys.modules, 'torch "
        "was imported'\nmain(['report', 'tests/specs/report_resnet18.yaml', "
        f"'tests/specs/report_alexnet.yaml', '--format', '{fmt}'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported by the comparison'\n"
    )
    done = run_python("-c", code)
    assert done.returncode == 0, done.stderr


def test_cli_report_formats_and_comparison() -> None:
    out = archc_here(
        "report",
        "tests/specs/report_resnet18.yaml",
        "--format",
        "json",
        "--batch-size",
        "8",
        "--dtype",
        "bfloat16",
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["totals"]["batch"] == 8 and data["totals"]["dtype"] == "bfloat16"
    assert data["totals"]["param_memory"] < 11_689_512 * 4
    both = archc_here(
        "report",
        "tests/specs/report_resnet18.yaml",
        "tests/specs/report_vgg16.yaml",
        "--format",
        "csv",
    )
    assert both.returncode == 0, both.stderr
    rows = list(csv.DictReader(io.StringIO(both.stdout)))
    assert [r["spec"] for r in rows] == ["resnet18", "vgg16"]
    assert (
        rows[1]["macs"] == "15470264320"
        and rows[0]["receptive_field"] == "435x435"
        and rows[1]["depth"] == "16"
    )
    table = archc_here(
        "report", "tests/specs/report_resnet18.yaml", "tests/specs/report_googlenet.yaml"
    )
    assert (
        table.returncode == 0 and "googlenet" in table.stdout and "train mem (SGD)" in table.stdout
    )


def test_cli_overrides_and_input_shape_reach_the_report() -> None:
    out = archc_here(
        "report",
        "tests/specs/report_resnet18.yaml",
        "--set",
        "num_classes=10",
        "--input",
        "3,32,32",
        "--format",
        "json",
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["totals"]["output"] == [10] and data["totals"]["input"] == [3, 32, 32]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--depth", "0"], "expected a positive integer"),
        (["--batch-size", "x"], "expected a positive integer"),
        (["--dtype", "int8"], "invalid choice"),
        (["--format", "svg"], "invalid choice"),
        (["--columns", "name,nope"], "unknown column 'nope'"),
        (["--set", "nope=1"], "nope"),
    ],
)
def test_cli_bad_arguments_are_clear_errors(args: list[str], message: str) -> None:
    out = archc_here("report", "tests/specs/report_resnet18.yaml", *args)
    assert out.returncode != 0 and message in out.stderr and "Traceback" not in out.stderr


def test_cli_bad_spec_is_a_compiler_error(write_spec) -> None:
    path = write_spec("""
        name: broken
        input: [3, 8, 8]
        layers:
          - conv: {out: 4, kernel: 9}
    """)
    out = archc_here("report", str(path))
    assert out.returncode == 1 and "does not fit" in out.stderr and "Traceback" not in out.stderr
    missing = archc_here("report", "no/such/spec.yaml")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


def test_api_rejects_bad_depth_batch_and_dtype() -> None:
    graph = compile_graph(fixture("alexnet"))
    with pytest.raises(ValueError, match="depth"):
        report_rows(graph, depth=0)
    with pytest.raises(ValueError, match="batch"):
        totals(graph, batch=0)
    with pytest.raises(ValueError, match="dtype"):
        totals(graph, dtype="int8")
    with pytest.raises(ValueError, match="format"):
        render(report_rows(graph), totals(graph), "svg")


def test_terminal_table_fits_its_width_and_colours_whole_lines() -> None:
    import re

    graph = compile_graph(fixture("resnet18"))
    rows, tot = report_rows(graph, depth=2), totals(graph)
    wide = render(rows, tot, "table")
    assert "FLOPs" in wide.splitlines()[1] and "hidden" not in wide
    narrow = render(rows, tot, "table", width=120)
    table_lines = narrow.splitlines()[: len(rows) + 3]
    assert max(len(line) for line in table_lines) <= 120
    assert "hidden to fit 120 columns: FLOPs, % params" in narrow and "FLOPs" not in table_lines[1]
    coloured = render(rows, tot, "table", color=True)
    assert "\x1b[1m" in coloured  # block rows in bold
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured).splitlines() == wide.splitlines()
