"""The command line as one dialect: shared options, one error layer, usage errors, output paths.

Behaviour is checked in subprocesses, as a user runs archc; the structure (flags generated from
TrainConfig, one error root, commands that do not import each other) is checked on the code.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from archc import errors as archc_errors
from archc.cli import COMMANDS, make_parser
from archc.compiler.train_config import TrainConfig
from tests.conftest import REPO, TEST_SPECS, archc_here

LENET = REPO / "specs" / "lenet5.yaml"
SMALL = TEST_SPECS / "report_alexnet.yaml"


def _subparser(command: str):
    parser = make_parser(command)
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[command]


def _one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


# usage errors -------------------------------------------------------------------------------------
def test_bare_archc_lists_the_commands() -> None:
    done = archc_here()
    assert done.returncode == 2
    for command in COMMANDS:
        assert command in done.stdout


def test_misspelled_command_suggests_the_right_one() -> None:
    done = archc_here("chek", str(LENET))
    assert done.returncode == 2 and "unknown command 'chek' (did you mean 'check'?)" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["report", "check", "diagram"])
def test_unknown_flag_prints_the_subcommands_usage(command: str) -> None:
    done = archc_here(command, str(LENET), "--no-such-flag")
    assert done.returncode == 2
    assert (
        done.stderr.startswith(f"usage: archc {command} ")
        and "unrecognized arguments: --no-such-flag" in done.stderr
    )


# one dialect --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command", ["check", "build", "train", "evaluate", "report", "zoo", "ops", "sweep", "compare"]
)
def test_every_printing_command_takes_format_json(command: str) -> None:
    option = next(a for a in _subparser(command)._actions if "--format" in a.option_strings)
    assert "json" in option.choices


def test_no_command_offers_a_visible_json_flag() -> None:
    for command in COMMANDS:
        for action in _subparser(command)._actions:
            if "--json" in action.option_strings:  # kept only as a hidden alias of --format json
                assert (
                    action.help == "==SUPPRESS=="
                    and action.const == "json"
                    and action.dest == "format"
                )


def test_one_name_for_batch_size_and_force_only_where_memory_is_allocated() -> None:
    for command in COMMANDS:
        flags = {flag for action in _subparser(command)._actions for flag in action.option_strings}
        assert "--batch" not in flags and "--amp-dtype-bytes" not in flags
        assert ("--force" in flags) == (command in ("build", "export")), (
            command
        )  # both build the model
    assert "--batch-size" in {f for a in _subparser("report")._actions for f in a.option_strings}


def test_shared_options_are_declared_once() -> None:
    """--set/--plugin/--input/--format appear in one module only: the shared option layer."""
    for path in sorted((REPO / "archc").rglob("*.py")):
        if path.name == "common.py":
            continue
        text = path.read_text()
        for flag in ('"--set"', '"--plugin"', '"--input"', '"--format"'):
            assert f"add_argument({flag}" not in text, (
                f"{path.relative_to(REPO)} declares {flag}; use archc/commands/common.py"
            )


def test_command_modules_do_not_import_each_other() -> None:
    for path in sorted((REPO / "archc" / "commands").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("archc.commands.")
            ):
                assert node.module == "archc.commands.common", f"{path.name} imports {node.module}"


# flags generated from TrainConfig -----------------------------------------------------------------
def test_train_has_a_flag_for_every_config_field_with_its_description() -> None:
    train = _subparser("train")
    by_dest = {a.dest: a for a in train._actions if a.option_strings}
    for name, info in TrainConfig.model_fields.items():
        assert name in by_dest, f"no flag for TrainConfig.{name}"
        assert info.description, (
            f"TrainConfig.{name} needs a description: it is the flag's help text"
        )
        assert info.description.replace("%", "%%") in (by_dest[name].help or "")


def test_a_new_config_field_becomes_a_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from pydantic import Field, create_model

    from archc.trainer import cli as train_cli

    extended = create_model(
        "Extended",
        __base__=TrainConfig,
        val_split=(float, Field(0.1, ge=0, lt=1, description="held-out share of training")),
        early=(bool, Field(False, description="stop early")),
    )
    monkeypatch.setattr(train_cli, "TrainConfig", extended)
    parser = argparse.ArgumentParser()
    train_cli.add_config_flags(parser)
    args = parser.parse_args(
        ["--val-split", "0.2", "--early", "--betas", "0.8,0.9", "--resize", "32"]
    )
    assert train_cli.config_of(args) == {
        "val_split": 0.2,
        "early": True,
        "betas": (0.8, 0.9),
        "resize": 32,
    }
    assert "held-out share of training (default 0.1)" in parser.format_help()


def test_train_flags_reach_the_config(tmp_path: Path) -> None:
    done = archc_here(
        "train",
        str(LENET),
        "--dataset",
        "synthetic",
        "--synthetic-size",
        "8,8",
        "--synthetic-shape",
        "1,32,32",
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--no-augment",
        "--milestones",
        "0.5",
        "--schedule",
        "multistep",
        "--log",
        "quiet",
        "--out",
        str(tmp_path / "run"),
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)["config"]
    assert (
        config["synthetic_size"] == [8, 8]
        and config["milestones"] == [0.5]
        and config["augment"] is False
    )


# one error layer ----------------------------------------------------------------------------------
def test_every_user_error_is_an_archc_error() -> None:
    from archc.analysis.diagram import DiagramError
    from archc.experiments.errors import ExperimentError
    from archc.trainer.errors import TrainError
    from archc.weights import WeightsError

    for error in (archc_errors.SpecError, TrainError, ExperimentError, WeightsError, DiagramError):
        assert issubclass(error, archc_errors.ArchcError)


def test_errors_are_caught_once_in_cli_main() -> None:
    """No command catches archc's errors to print them itself: cli.run is the one formatter."""
    for path in [
        *sorted((REPO / "archc" / "commands").glob("*.py")),
        REPO / "archc" / "trainer" / "__main__.py",
    ]:
        text = path.read_text()
        assert "def _fail" not in text and "file=sys.stderr)\n        return 1" not in text, (
            path.name
        )
        # `check` and `zoo` list every spec's errors and go on; nothing else catches archc's errors
        assert "except SpecError" not in text or path.name in ("compile.py", "zoo.py"), path.name


def test_pydantic_errors_are_read_in_one_place() -> None:
    readers = [
        p.relative_to(REPO)
        for p in sorted((REPO / "archc").rglob("*.py"))
        if ".errors()" in p.read_text()
    ]
    assert readers == [Path("archc/errors.py")]


def test_errors_of_every_kind_print_one_line(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"junk")
    cases = [
        (
            ("build", str(LENET), "--init-from", str(tmp_path / "junk.pt")),
            "is not a readable torch file",
        ),
        (
            ("train", str(LENET), "--lr", "-1"),
            "invalid training option lr: input should be greater than 0",
        ),
        (("compare", "--runs", str(tmp_path / "nothing")), "nothing"),
        (("html", str(tmp_path)), "is not a run directory"),
        (("report",), "give spec files, or --html DIR"),
    ]
    for args, message in cases:
        done = archc_here(*args)
        assert done.returncode == 1 and message in _one_line_error(done.stderr), (args, done.stderr)


# output paths -------------------------------------------------------------------------------------
def test_missing_output_folders_are_created(tmp_path: Path) -> None:
    done = archc_here("export", str(LENET), "-o", str(tmp_path / "missing" / "dir" / "x.py"))
    assert done.returncode == 0, done.stderr
    assert "class" in (tmp_path / "missing" / "dir" / "x.py").read_text()
    done = archc_here("schema", "-o", str(tmp_path / "schemas" / "archc.json"))
    assert done.returncode == 0 and json.loads((tmp_path / "schemas" / "archc.json").read_text())
    done = archc_here("diagram", str(SMALL), "-o", str(tmp_path / "pictures" / "a.dot"))
    assert done.returncode == 0 and (tmp_path / "pictures" / "a.dot").read_text().startswith(
        "digraph"
    )


def test_a_folder_as_output_is_refused_in_one_line(tmp_path: Path) -> None:
    for args in (
        ("schema", "-o", str(tmp_path)),
        ("export", str(LENET), "-o", str(tmp_path)),
        ("build", str(LENET), "--save", str(tmp_path)),
        ("report", str(LENET), "-o", str(tmp_path)),
    ):
        done = archc_here(*args)
        assert done.returncode == 1, args
        assert f"cannot write {tmp_path}: it is a directory" in _one_line_error(done.stderr)


def test_build_save_makes_folders_and_load_model_rebuilds_it(tmp_path: Path) -> None:
    import torch

    import archc

    target = tmp_path / "models" / "lenet.pt"
    done = archc_here("build", str(LENET), "--set", "num_classes=7", "--save", str(target))
    assert done.returncode == 0, done.stderr
    assert "archc.load_model" in archc_here("build", "--help").stdout
    model = archc.load_model(target)
    assert not model.training and model.archc_graph.shape_of(model.archc_graph.output) == (7,)
    stored = torch.load(target, weights_only=True)["state_dict"]
    assert all(torch.equal(stored[k], v) for k, v in model.state_dict().items())
    with pytest.raises(archc.ArchcError, match="not a model saved by `archc build --save`"):
        torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
        archc.load_model(tmp_path / "other.pt")


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json"])
def test_report_output_is_honoured_in_every_format(fmt: str, tmp_path: Path) -> None:
    target = tmp_path / "out" / f"report.{fmt}"
    done = archc_here("report", str(LENET), "--format", fmt, "-o", str(target))
    assert done.returncode == 0 and done.stdout == "", done.stderr
    text = target.read_text()
    assert text == archc_here("report", str(LENET), "--format", fmt).stdout
    if fmt == "json":
        assert json.loads(text)["totals"]["name"] == "lenet5"


def test_diagram_writes_the_format_its_suffix_names(tmp_path: Path) -> None:
    done = archc_here("diagram", str(SMALL), "-o", str(tmp_path / "r.jpg"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG, not SVG text
    done = archc_here("diagram", str(SMALL), "-o", str(tmp_path / "r.gif"))
    assert done.returncode == 1 and "cannot tell which format to write" in _one_line_error(
        done.stderr
    )


def test_one_vocabulary_for_dtypes() -> None:
    """report --dtype and train --amp-dtype name dtypes as torch does; a
    spec's old short names still read."""
    amp = next(a for a in _subparser("train")._actions if "--amp-dtype" in a.option_strings)
    memory = next(a for a in _subparser("report")._actions if "--dtype" in a.option_strings)
    assert set(amp.choices) - {"auto"} <= set(memory.choices) == {"float32", "bfloat16", "float16"}
    assert (
        TrainConfig(amp_dtype="bf16").amp_dtype == "bfloat16"
        and TrainConfig(amp_dtype="fp16").amp_dtype == "float16"
    )
