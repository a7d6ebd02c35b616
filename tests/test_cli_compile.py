"""`archc check`, `archc build` and `archc export` on the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import archc
import archc.compiler.expand
from archc import api
from archc.cli import main
from archc.commands.compile import verify
from tests.conftest import TEST_SPECS, run_archc, run_python

RESNET = TEST_SPECS / "lang_resnet.yaml"
AUX = TEST_SPECS / "lang_aux.yaml"

SMALL = """
input: [3, 10, 10]
layers:
  - {conv: {out: 4, kernel: 3, stride: 2, padding: 1}, name: conv}
  - {bn: , name: bn}
  - relu
  - {maxpool: {kernel: 2, ceil_mode: true}, name: pool}
  - flatten
  - {linear: {out: 5, bias: false}, name: fc}
"""


def build_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["build", *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_build_json_reports_every_node(write_spec, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(SMALL)
    report = build_json(capsys, str(path))
    layers = {row["name"]: row for row in report["layers"]}
    assert list(layers) == ["conv", "bn", "2", "pool", "4", "fc"]
    conv = layers["conv"]
    assert (conv["op"], conv["inputs"], conv["shape"]) == ("conv", ["input"], [4, 5, 5])
    assert conv["params"] == 4 * 3 * 3 * 3 + 4 and conv["macs"] == 4 * 5 * 5 * 3 * 3 * 3
    assert (conv["line"], conv["module"], conv["label"]) == (3, "conv", "conv 3x3/2, 4")
    assert (
        layers["bn"]["params"] == 8 and layers["bn"]["buffers"] == 9 and layers["bn"]["macs"] == 0
    )
    assert layers["2"]["inputs"] == ["bn"] and layers["2"]["params"] == 0
    assert layers["pool"]["shape"] == [4, 3, 3]  # ceil_mode: 5 -> 3
    assert layers["4"]["shape"] == [36] and layers["fc"]["inputs"] == ["4"]
    assert layers["fc"]["params"] == 36 * 5 and layers["fc"]["macs"] == 36 * 5
    assert report["spec"] == str(path) and report["name"] == "spec"
    assert report["input"] == [3, 10, 10] and report["output"] == [5]
    assert report["params"] == sum(r["params"] for r in layers.values()) == 112 + 8 + 180
    assert report["buffers"] == 9 and report["macs"] == sum(r["macs"] for r in layers.values())
    assert report["flops"] == 2 * report["macs"] and report["nodes"] == 6 and report["depth"] == 2
    assert report["heads"] == []
    model = api.build(path)
    assert report["params"] == sum(p.numel() for p in model.parameters())


def test_build_json_matches_the_graph_for_a_spec_with_heads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = build_json(capsys, str(AUX))
    graph = api.compile_graph(AUX)
    assert [
        (r["name"], r["op"], r["inputs"], r["shape"], r["params"], r["macs"])
        for r in report["layers"]
    ] == [(n.id, n.op, n.inputs, list(n.shape), n.params, n.macs) for n in graph]
    assert report["heads"] == [
        {"name": "aux1", "node": "aux1.fc", "loss_weight": 0.3, "train_only": True}
    ]
    assert report["macs"] == graph.total_macs < report["macs_with_train_heads"]


def test_build_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(AUX)]) == 0
    out = capsys.readouterr().out
    graph = api.compile_graph(AUX)
    assert f"params: {graph.total_params:,}" in out and f"MACs: {graph.total_macs:,}" in out
    assert "head aux1: 4, loss weight 0.3, train only" in out
    assert out == run_archc("report", str(AUX)).stdout  # one per-layer table, one look
    for node in graph:  # every layer, by its name in its block
        assert node.id.rsplit(".", 1)[-1] in out


def test_build_verifies_runtime_shapes(write_spec, monkeypatch: pytest.MonkeyPatch) -> None:
    """`archc build` runs the module once: a wrong inferred shape is
    an internal error, not a pass."""
    path = write_spec(SMALL)
    real = archc.compiler.expand.expand

    def lying(spec, limits=None):
        graph = real(spec, limits)
        graph.nodes["pool"].shape = (4, 2, 2)
        return graph

    monkeypatch.setattr(archc.compiler.expand, "expand", lying)
    with pytest.raises(
        RuntimeError, match=r"internal error: pool inferred \(4, 2, 2\) but ran as \(4, 3, 3\)"
    ):
        main(["build", str(path)])


def test_verify_checks_parameter_and_buffer_counts() -> None:
    model = api.build(RESNET)
    verify(model)
    model.archc_graph.nodes["fc"].params += 1
    with pytest.raises(RuntimeError, match="internal error: inferred 11123 params"):
        verify(model)
    model.archc_graph.nodes["fc"].params -= 1
    model.archc_graph.nodes["bn1"].buffers += 1
    with pytest.raises(RuntimeError, match="buffers"):
        verify(model)


def test_verify_restores_training_mode() -> None:
    model = api.build(RESNET)
    model.train()
    verify(model)
    assert model.training
    model.eval()
    verify(model)
    assert not model.training


def test_build_save_writes_spec_and_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.pt"
    assert main(["build", str(RESNET), "--save", str(out), "--set", "num_classes=3"]) == 0
    assert f"saved {out}" in capsys.readouterr().out
    payload = torch.load(out, weights_only=True)
    assert payload["spec_text"] == RESNET.read_text() and payload["overrides"] == {"num_classes": 3}
    assert payload["input_shape"] == [3, 16, 16]
    model = api.build(RESNET, num_classes=3)
    assert {k: v.shape for k, v in payload["state_dict"].items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }


def test_check_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(RESNET), str(AUX)]) == 0
    lines = capsys.readouterr().out.splitlines()
    graph = api.compile_graph(RESNET)
    assert (
        lines[0]
        == f"{RESNET}: ok  3x16x16 -> 10, {graph.total_params:,} params, {graph.total_macs:,} MACs"
    )
    assert lines[1].startswith(f"{AUX}: ok  3x16x16 -> 4, ")
    assert main(["check", "--format", "json", str(RESNET)]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result == {
        "spec": str(RESNET),
        "ok": True,
        "name": "lang_resnet",
        "input": [3, 16, 16],
        "output": [10],
        "params": graph.total_params,
        "macs": graph.total_macs,
    }


def test_check_input_override_and_limits(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(RESNET), "--input", "3,8,8"]) == 0
    assert "3x8x8 -> 10" in capsys.readouterr().out
    assert main(["check", str(RESNET), "--max-nodes", "10"]) == 1
    err = capsys.readouterr().err
    assert "more than 10 nodes (--max-nodes)" in err and err.startswith(f"error: {RESNET}:")
    assert main(["check", str(RESNET), "--max-repeat", "1"]) == 1
    assert "repeat count 2 exceeds the limit of 1 (--max-repeat)" in capsys.readouterr().err
    assert main(["check", str(TEST_SPECS / "lang_inception.yaml"), "--max-depth", "2"]) == 1
    assert "blocks nest deeper than 2 levels (--max-depth)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["check", str(RESNET), "--input", "3,x,8"])


def test_unknown_plugin_is_a_spec_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(RESNET), "--plugin", "no_such_archc_plugin"]) == 1
    assert capsys.readouterr().err.startswith("error: cannot import plugin 'no_such_archc_plugin'")


def test_export_to_stdout_and_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(RESNET)]) == 0
    source = capsys.readouterr().out
    compile(source, "exported.py", "exec")
    assert "class LangResnet(Sequential):" in source and "import archc" not in source
    out = tmp_path / "net.py"
    assert (
        main(["export", str(RESNET), "--to", "python", "-o", str(out), "--set", "num_classes=7"])
        == 0
    )
    assert f"wrote {out}" in capsys.readouterr().err
    assert "nn.Linear(16, 7)" in out.read_text()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"archc {archc.__version__}"


# --------------------------------------------------------------------------- subprocesses


NO_TORCH = (
    "import sys; from archc.cli import main; rc = main(['check', *sys.argv[1:]]); assert 'torch' "
    "not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch')); print('rc', rc)"
)


@pytest.mark.parametrize(
    "args",
    [
        [str(RESNET), str(AUX), str(TEST_SPECS / "lang_unet.yaml")],
        ["--format", "json", str(RESNET)],
    ],
)
def test_check_does_not_import_torch(args: list[str]) -> None:
    result = run_python("-c", NO_TORCH, *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("rc 0")


def test_check_of_a_bad_spec_does_not_import_torch(write_spec) -> None:
    path = write_spec("input: [3, 8, 8]\nlayers:\n  - conv: {out: 4, kernel: 9}\n")
    result = run_python("-c", NO_TORCH, str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "rc 1" and "does not fit the 8x8 feature map" in result.stderr


@pytest.mark.slow
def test_cli_entry_point_runs_check_and_build_json() -> None:
    result = run_archc("check", str(RESNET))
    assert result.returncode == 0 and result.stdout.startswith(f"{RESNET}: ok")
    result = run_archc("build", str(AUX), "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["output"] == [4] and math.prod(report["input"]) == 3 * 16 * 16


def test_command_table_names_the_module_of_every_command() -> None:
    """`archc X` imports only COMMANDS[X]'s module: that module must define
    X, and the table every command."""
    import argparse

    from archc.cli import COMMANDS, make_parser

    def commands(parser: argparse.ArgumentParser) -> list[str]:
        (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return list(action.choices)

    assert commands(make_parser()) == list(COMMANDS)
    for command, module in COMMANDS.items():
        assert set(commands(make_parser(command))) == {
            c for c, m in COMMANDS.items() if m == module
        }
