"""Every spec error is a positioned SpecError: `path:line:col: message`, the line, a caret, exit 1.

Each case states the exact line and column, the token the caret must sit on and what the message
must say; it is checked through the API, through `archc.cli.main` in-process and through a real
`python -m archc check` subprocess (exit code 1, no traceback).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from archc import api
from archc.cli import main
from archc.errors import SpecError
from tests.conftest import archc_here


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    line: int
    col: int
    token: str  # the source text the caret must point at
    message: tuple[str, ...]  # regexes the message must match, in any order


HEAD = "input: [3, 8, 8]\nlayers:\n"

CASES = [
    Case(
        "yaml_unclosed_brace",
        HEAD + "  - conv: {out: 4, kernel: 3\n  - relu\n",
        3,
        11,
        "{out",
        (r"^YAML syntax error: this '\{' is never closed: add '\}' where the mapping ends$",),
    ),
    Case(
        "yaml_unclosed_bracket_before_next_key",
        "input: [3, 8, 8\nlayers:\n  - relu\n",
        1,
        8,
        "[3",
        (r"^YAML syntax error: this '\[' is never closed: add '\]' where the list ends$",),
    ),
    Case(
        "yaml_unclosed_quote",
        HEAD + "  - relu\n  - 'maxpool\n",
        4,
        5,
        "'maxpool",
        (r"^YAML syntax error: this quote is never closed",),
    ),
    Case(
        "yaml_mapping_value",
        HEAD + "  - conv: out: 4\n",
        3,
        14,
        ": 4",
        (r"^YAML syntax error: unexpected ': ' here: a nested mapping goes in braces",),
    ),
    Case(
        "yaml_tab",
        HEAD + "\t- relu\n",
        3,
        1,
        "\t",
        (r"^YAML syntax error: a tab character; YAML indents with spaces only",),
    ),
    Case(
        "yaml_bad_indentation",
        HEAD + "  - conv: {out: 4, kernel: 3}\n   - relu\n",
        4,
        4,
        "- relu",
        (
            r"^YAML syntax error: this line is indented differently from "
            r"the rest of its list \(which starts at line 3, column 3\)",
        ),
    ),
    Case(
        "yaml_unquoted_expression_in_braces",
        HEAD + "  - conv: {out: ${2 * 4}, kernel: 3}\n",
        3,
        17,
        "${2",
        (r"^YAML syntax error: an expression inside \[\.\.\.\] or \{\.\.\.\} must be quoted",),
    ),
    Case(
        "yaml_duplicate_key",
        HEAD + "  - relu\ninput: [1, 8, 8]\n",
        4,
        1,
        "input",
        (r"^YAML syntax error: key 'input' appears twice in this mapping \(first at line 1\)",),
    ),
    Case(
        "unknown_op_bare",
        HEAD + "  - conv: {out: 4, kernel: 3}\n  - rleu\n",
        4,
        5,
        "rleu",
        (r"^unknown op or block 'rleu' \(did you mean 'relu'\?\)$",),
    ),
    Case(
        "unknown_op_mapping",
        HEAD + "  - {maxpol: 2, name: pool}\n",
        3,
        6,
        "maxpol",
        (r"^unknown op, block or key 'maxpol' \(did you mean 'maxpool'\?\)$",),
    ),
    Case(
        "unknown_argument",
        HEAD + "  - conv: {out: 4, kernel: 3, strid: 2}\n",
        3,
        31,
        "strid",
        (
            r"^unknown argument 'strid' for conv \(did you "
            r"mean 'stride'\?\); it takes: out, kernel, stride",
        ),
    ),
    Case(
        "misspelled_required_argument",
        HEAD + "  - conv: {out: 4, kernal: 3}\n",
        3,
        20,
        "kernal",
        (r"^unknown argument 'kernal' for conv \(did you mean 'kernel'\?\)",),
    ),
    Case(
        "misspelled_meta_key",
        HEAD + "  - conv: {out: 4, kernel: 3}\n    nmae: c1\n",
        4,
        5,
        "nmae",
        (r"unknown op, block or key 'nmae' \(did you mean 'name'\?\)",),
    ),
    Case(
        "wrong_type_channels",
        HEAD + "  - conv: {out: four, kernel: 3}\n",
        3,
        17,
        "four",
        (r"^conv argument 'out': input should be a valid integer, got 'four'$",),
    ),
    Case(
        "float_channels",
        HEAD + "  - linear: 2.5\n",
        3,
        5,
        "linear",
        (r"^linear argument 'out': input should be a valid integer, got 2\.5$",),
    ),
    Case(
        "zero_channels",
        HEAD + "  - conv: {out: 0, kernel: 3}\n",
        3,
        17,
        "0,",
        (r"^conv argument 'out': input should be greater than 0, got 0$",),
    ),
    Case(
        "negative_channels",
        HEAD + "  - conv: {out: -4, kernel: 3}\n",
        3,
        17,
        "-4",
        (r"^conv argument 'out': input should be greater than 0, got -4$",),
    ),
    Case(
        "zero_channels_from_param",
        "input: [3, 8, 8]\nparams: {width: 0}\nlayers:\n  - conv: {out: $width, kernel: 1}\n",
        4,
        17,
        "$width",
        (r"^conv argument 'out': input should be greater than 0, got 0$",),
    ),
    Case(
        "zero_input_channels",
        "input: [0, 8, 8]\nlayers:\n  - relu\n",
        1,
        9,
        "0,",
        (r"^input must be positive integers .*got \[0, 8, 8\]$",),
    ),
    Case(
        "bad_input_entry",
        "input: [3, x, 8]\nlayers:\n  - relu\n",
        1,
        12,
        "x,",
        (r"^input must be positive integers .*got \[3, 'x', 8\]$",),
    ),
    Case(
        "input_from_param",
        "params: {size: -2}\ninput: [3, $size, $size]\nlayers:\n  - relu\n",
        2,
        12,
        "$size",
        (r"^input must be positive integers .*got \[3, -2, -2\]$",),
    ),
    Case(
        "block_unknown_key",
        "input: [3, 8, 8]\nblocks:\n  BasicBlock: {layers: [relu], parms: {}}\nlayers:\n  - relu\n",
        3,
        32,
        "parms",
        (r"^unknown key 'parms' \(did you mean 'params'\?\)$",),
    ),
    Case(
        "block_bad_inline",
        "input: [3, 8, 8]\nblocks:\n  BasicBlock: "
        "{layers: [relu], inline: maybe}\nlayers:\n  - relu\n",
        3,
        40,
        "maybe",
        (r"^blocks\.BasicBlock\.inline: input should be a valid boolean",),
    ),
    Case(
        "undefined_param",
        "input: [3, 8, 8]\nparams: {width: 8}\nlayers:\n  - conv: {out: $widht, kernel: 1}\n",
        4,
        17,
        "$widht",
        (r"^undefined name 'widht' \(did you mean 'width'\?\)$",),
    ),
    Case(
        "undefined_param_in_expression",
        "input: [3, 8, 8]\nparams: {width: 8}\nlayers:\n"
        '  - conv: {out: "${2 * widht}", kernel: 1}\n',
        4,
        24,
        "widht",
        (r"^undefined name 'widht' \(did you mean 'width'\?\)$",),
    ),
    Case(
        "undefined_block",
        "input: [3, 8, 8]\nblocks:\n  MyBlock:\n    params: {planes: null}\n"
        "    layers: [relu]\nlayers:\n  - MyBlok: {planes: 3}\n",
        7,
        5,
        "MyBlok",
        (r"^unknown op, block or key 'MyBlok' \(did you mean 'MyBlock'\?\)$",),
    ),
    Case(
        "block_missing_param",
        "input: [3, 8, 8]\nblocks:\n  MyBlock:\n    params: {planes: null}\n"
        "    layers: [relu]\nlayers:\n  - relu\n  - MyBlock\n",
        8,
        5,
        "MyBlock",
        (r"^block 'MyBlock' needs parameter 'planes'$",),
    ),
    Case(
        "block_unknown_param",
        "input: [3, 8, 8]\nblocks:\n  MyBlock:\n    params: {planes: null}\n"
        "    layers: [relu]\nlayers:\n  - MyBlock: {plane: 3}\n",
        7,
        15,
        "plane",
        (
            r"^block 'MyBlock' has no parameter 'plane' "
            r"\(did you mean 'planes'\?\); it takes: planes$",
        ),
    ),
    Case(
        "add_mismatch",
        HEAD
        + (
            "  - relu\n  - add:\n      - {conv: {out: 4, kernel: 3}, name: a}\n"
            "      - {conv: {out: 4, kernel: 1}, name: b}\n"
        ),
        4,
        5,
        "add",
        (r"^add: branch 'b' yields 4x8x8 but branch 'a' yields 4x6x6$",),
    ),
    Case(
        "add_mismatch_identity",
        HEAD + "  - add:\n      - [{conv: {out: 4, kernel: 3, padding: 1}}]\n      - []\n",
        3,
        5,
        "add",
        (r"^add: branch 2 yields 3x8x8 but branch 1 yields 4x8x8$",),
    ),
    Case(
        "add_mismatch_by_reference",
        HEAD
        + (
            "  - {conv: {out: 4, kernel: 3}, name: c1}\n"
            "  - {conv: {out: 4, kernel: 3}, name: c2}\n  - {add: , from: [c1, c2]}\n"
        ),
        5,
        6,
        "add",
        (r"^add: 'c2' yields 4x4x4 but 'c1' yields 4x6x6$",),
    ),
    Case(
        "concat_spatial_mismatch",
        HEAD
        + (
            "  - concat:\n      - {conv: {out: 4, kernel: 3, stride: 2}, name: a}\n"
            "      - {conv: {out: 2, kernel: 1}, name: b}\n"
        ),
        3,
        5,
        "concat",
        (r"^concat: branch 'b' yields 8x8 but branch 'a' yields 3x3$",),
    ),
    Case(
        "shrink_conv",
        HEAD
        + (
            "  - {conv: {out: 4, kernel: 3}, name: c1}\n  - {maxpool: 2, name: p1}\n"
            "  - {conv: {out: 4, kernel: 5}, name: c2}\n"
        ),
        5,
        6,
        "conv",
        (r"^'c2' \(conv\): kernel 5x5 .*does not fit the 3x3 feature map it receives$",),
    ),
    Case(
        "shrink_pool_repeat",
        HEAD + "  - {maxpool: 2, repeat: 4}\n",
        3,
        6,
        "maxpool",
        (r"^'3' \(maxpool\): window 2x2 does not fit the 1x1 feature map it receives$",),
    ),
    Case(
        "shrink_in_block",
        "input: [3, 4, 4]\nblocks:\n  Down:\n    layers:\n"
        "      - {conv: {out: 4, kernel: 3, stride: 2}, name: conv}\n"
        "layers:\n  - {Down: , name: d1}\n  - {Down: , name: d2}\n",
        5,
        10,
        "conv",
        (r"^'d2\.conv' \(conv\): kernel 3x3 .*does not fit the 1x1 feature map",),
    ),
    Case(
        "unknown_reference",
        HEAD + "  - {conv: {out: 4, kernel: 3}, name: stem}\n  - {concat: , from: [stem, stme]}\n",
        4,
        29,
        "stme",
        (r"^unknown node 'stme' \(did you mean 'stem'\?\)$",),
    ),
    Case(
        "later_reference_cycle",
        HEAD
        + (
            "  - {conv: {out: 4, kernel: 3}, name: c1}\n  - {add: , from: [c1, c3], name: sum}\n"
            "  - {conv: {out: 4, kernel: 1}, name: c3}\n"
        ),
        4,
        24,
        "c3",
        (r"^'c3' is defined later \(line 5\); 'from' must name an earlier node \(no cycles\)$",),
    ),
    Case(
        "self_reference",
        HEAD + "  - {conv: {out: 4, kernel: 3}, name: c1, from: c1}\n",
        3,
        49,
        "c1}",
        (r"'c1' is defined later \(line 3\)",),
    ),
    Case(
        "recursive_blocks",
        "input: [3, 8, 8]\nblocks:\n  A:\n    layers:\n      - relu\n"
        "      - B\n  B:\n    layers:\n      - A\nlayers:\n  - A\n",
        9,
        9,
        "A",
        (r"^block 'A' calls itself \(A -> B -> A\); blocks cannot be recursive$",),
    ),
    Case(
        "self_recursive_block",
        "input: [3, 8, 8]\nblocks:\n  A:\n    layers:\n"
        "      - {A: , name: inner}\nlayers:\n  - A\n",
        5,
        10,
        "A:",
        (r"^block 'A' calls itself \(A -> A\)",),
    ),
    Case(
        "missing_input",
        "name: x\nlayers:\n  - relu\n",
        1,
        1,
        "name",
        (r"^missing required key 'input' \(the input shape without the batch",),
    ),
    Case(
        "misspelled_top_level_key",
        "inptu: [3, 8, 8]\nlayers:\n  - relu\n",
        1,
        1,
        "inptu",
        (r"^unknown key 'inptu' \(did you mean 'input'\?\)$",),
    ),
    Case(
        "train_unknown_key",
        HEAD + "  - relu\ntrain:\n  epochs: 3\n  optimiser: sgd\n",
        6,
        3,
        "optimiser",
        (r"^train: unknown key 'optimiser' \(did you mean 'optimizer'\?\)$",),
    ),
    Case(
        "train_bad_value",
        HEAD + "  - relu\ntrain:\n  epochs: many\n",
        5,
        11,
        "many",
        (r"^train: epochs: input should be a valid integer",),
    ),
    Case(
        "init_bad_scheme",
        HEAD + "  - relu\ninit:\n  conv: {scheme: kaiming}\n",
        5,
        18,
        "kaiming",
        (r"^init\.conv\.scheme: input should be 'torch', 'kaiming_normal'", r"got 'kaiming'$"),
    ),
    Case(
        "when_not_bool",
        HEAD + "  - {relu: , when: 3}\n",
        3,
        20,
        "3}",
        (r"^'when' must be true or false, got 3$",),
    ),
    Case(
        "flatten_too_early",
        HEAD + "  - flatten\n  - conv: {out: 4, kernel: 3}\n",
        4,
        5,
        "conv",
        (r"conv needs a \(channels, \.\.\.spatial\) input, got 192; is a flatten too early\?$",),
    ),
    Case(
        "linear_on_feature_map",
        HEAD + "  - linear: 4\n",
        3,
        5,
        "linear",
        (
            r"linear received a 3x8x8 feature map; for a classifier add '- flatten' before "
            r"it, for an MLP on a channels-last \(H, W, C\) map write 'channels_last: true'$",
        ),
    ),
    Case(
        "name_reused",
        HEAD
        + "  - {conv: {out: 4, kernel: 3}, name: a}\n  - {conv: {out: 4, kernel: 1}, name: a}\n",
        4,
        6,
        "conv",
        (
            r"^name 'a' is already used \(line 3\); only "
            r"identical parameter-free layers may share a name$",
        ),
    ),
]
IDS = [c.id for c in CASES]
BY_ID = {c.id: c for c in CASES}


def test_case_ids_unique() -> None:
    assert len(set(IDS)) == len(IDS)


def _error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        api.compile_graph(path)
    return info.value


def _check_message(case: Case, message: str) -> None:
    for pattern in case.message:
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"


def _check_report(case: Case, path: Path, text: str) -> None:
    """The rendered report: `error: path:line:col: message`, the source
    line, the caret under the token."""
    assert "Traceback" not in text
    lines = text.splitlines()
    head = f"error: {path}:{case.line}:{case.col}: "
    assert lines[0].startswith(head), (lines[0], head)
    _check_message(case, lines[0][len(head) :])
    source_line = case.text.splitlines()[case.line - 1]
    gutter = f"{case.line:>4} | "
    assert lines[1] == gutter + source_line
    assert lines[2] == " " * (len(gutter) + case.col - 1) + "^"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_error_position_and_message(case: Case, write_spec) -> None:
    path = write_spec(case.text)
    err = _error(path)
    assert (err.line, err.col) == (case.line, case.col), err.render()
    assert err.pos is not None and err.pos.source.path == str(path)
    source_line = case.text.splitlines()[case.line - 1]
    assert source_line[case.col - 1 :].startswith(case.token), (
        f"caret at {source_line[case.col - 1 :]!r}"
    )
    _check_message(case, err.message)
    assert str(err) == f"{path}:{case.line}:{case.col}: {err.message}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_error_cli_in_process(case: Case, write_spec, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(case.text)
    assert main(["check", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    _check_report(case, path, captured.err)


@pytest.fixture(scope="module")
def subprocess_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One real `python -m archc check` over every case's file: case id -> its report on stderr."""
    folder = tmp_path_factory.mktemp("cases")
    paths = []
    for case in CASES:
        paths.append(folder / f"{case.id}.yaml")
        paths[-1].write_text(case.text)
    result = archc_here("check", *map(str, paths))
    assert result.returncode == 1 and result.stdout == ""
    assert "Traceback" not in result.stderr
    reports: dict[str, str] = {}
    for block in re.split(r"(?m)^(?=error: )", result.stderr):
        if block:
            path = block[len("error: ") :].split(":", 1)[0]
            reports[Path(path).stem] = block
    assert sorted(reports) == sorted(IDS)
    return reports


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_error_cli_subprocess(case: Case, subprocess_reports: dict[str, str]) -> None:
    report = subprocess_reports[case.id]
    path = Path(report[len("error: ") :].split(":", 1)[0])
    _check_report(case, path, report)


@pytest.mark.parametrize(
    "case_id", ["yaml_unclosed_brace", "add_mismatch", "later_reference_cycle", "missing_input"]
)
def test_error_cli_subprocess_single_file_exit_code(case_id: str, write_spec) -> None:
    case = BY_ID[case_id]
    path = write_spec(case.text)
    result = archc_here("check", str(path))
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    _check_report(case, path, result.stderr)


def test_check_reports_every_bad_spec_and_continues(
    write_spec, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_spec(HEAD + "  - relu\n", "good.yaml")
    bad1 = write_spec(BY_ID["unknown_op_bare"].text, "bad1.yaml")
    bad2 = write_spec(BY_ID["unknown_argument"].text, "bad2.yaml")
    assert main(["check", str(bad1), str(good), str(bad2)]) == 1
    captured = capsys.readouterr()
    assert f"error: {bad1}:4:5:" in captured.err and f"error: {bad2}:3:31:" in captured.err
    assert f"{good}: ok" in captured.out


def test_check_json_reports_positions(write_spec, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    bad = write_spec(BY_ID["unknown_argument"].text)
    assert main(["check", "--format", "json", str(bad)]) == 1
    (result,) = json.loads(capsys.readouterr().out)
    assert result["ok"] is False and (result["line"], result["col"]) == (3, 31)
    assert "unknown argument 'strid'" in result["error"]


def test_build_and_export_report_spec_errors_without_traceback(
    write_spec, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(BY_ID["add_mismatch"].text)
    for command in ("build", "export"):
        assert main([command, str(path)]) == 1
        err = capsys.readouterr().err
        assert (
            err.startswith(f"error: {path}:4:5: add: branch 'b' yields 4x8x8")
            and "Traceback" not in err
        )


# --------------------------------------------------------------------------- overrides


OVERRIDE_SPEC = (
    "input: [3, 8, 8]\nparams: {width: 8, bn: true}\nlayers:\n"
    "  - conv: {out: $width, kernel: 1}\n  - {bn: , when: $bn}\n"
)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"widht": 4}, r"^unknown parameter 'widht' \(did you mean 'width'\?\); known: width, bn$"),
        ({"bn": 3}, r"^parameter 'bn' expects bool, got 3$"),
        ({"width": "wide"}, r"^parameter 'width' expects a number, got 'wide'$"),
        ({"width": True}, r"^parameter 'width' expects int, got True$"),
        ({"width": None, "bn": "yes"}, r"^parameter 'bn' expects bool, got 'yes'$"),
    ],
)
def test_override_errors_api(overrides: dict[str, object], message: str, write_spec) -> None:
    path = write_spec(OVERRIDE_SPEC)
    with pytest.raises(SpecError, match=message):
        api.load(path, **overrides)
    with pytest.raises(SpecError, match=message):
        api.compile_graph(path, **overrides)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("widht=4", "error: unknown parameter 'widht' (did you mean 'width'?)"),
        ("bn=maybe", "error: parameter 'bn' expects bool, got 'maybe'"),
        (
            "width=[4, 4]",
            "error: <path>:4:17: conv argument 'out': input should be a valid integer, got [4, 4]",
        ),
        (
            "width=2.5",
            "error: <path>:4:17: conv argument 'out': input should be a valid integer, got 2.5",
        ),
        ("width", "error: --set expects key=value, got 'width'"),
    ],
)
def test_override_errors_cli(
    setting: str, message: str, write_spec, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(OVERRIDE_SPEC)
    assert main(["check", str(path), "--set", setting]) == 1
    err = capsys.readouterr().err
    assert err.startswith(message.replace("<path>", str(path))) and "Traceback" not in err


def test_override_error_cli_subprocess(write_spec) -> None:
    path = write_spec(OVERRIDE_SPEC)
    result = archc_here("check", str(path), "--set", "widht=4")
    assert result.returncode == 1
    assert result.stderr.startswith("error: unknown parameter 'widht' (did you mean 'width'?)")
    assert "Traceback" not in result.stderr


def test_override_that_breaks_geometry_is_positioned(write_spec) -> None:
    path = write_spec(OVERRIDE_SPEC)
    err = _error_with(path, width=0)
    assert (err.line, err.col) == (4, 17) and "greater than 0" in err.message


def _error_with(path: Path, **overrides: object) -> SpecError:
    with pytest.raises(SpecError) as info:
        api.compile_graph(path, **overrides)
    return info.value


# --------------------------------------------------------------------------- files and odd inputs


def test_missing_file_is_a_spec_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError, match="cannot read"):
        api.load(path)
    assert main(["check", str(path)]) == 1
    assert capsys.readouterr().err.startswith(f"error: cannot read {path}")


@pytest.mark.parametrize(
    ("text", "message", "pos"),
    [
        ("", "spec is empty", (1, 1)),
        ("- relu\n- flatten\n", "a spec must be a YAML mapping", (1, 1)),
        ("input: [3, 8, 8]\nlayers: []\n", "layers: list should have at least 1 item", (2, 9)),
        ("input: [3, 8, 8]\nlayers:\n  -\n", "empty list item", (3, 4)),
        ("input: [3, 8, 8]\nlayers:\n  - !!python/object:os.system relu\n", "YAML tag", (3, 5)),
        (
            "input: [3, 8, 8]\nlayers:\n  - {relu: , repeat: -1}\n",
            "repeat count must be a positive integer or a list, got -1",
            (3, 22),
        ),
        (
            "input: [3, 8, 8]\nlayers:\n  - {relu: , repeat: {count: 2, step: 1}}\n",
            "unknown key 'step' in repeat",
            (3, 33),
        ),
        (
            "input: [3, 8, 8]\nlayers:\n  - {relu: , name: 'a.b'}\n",
            "contains '.', which separates module paths",
            (3, 20),
        ),
        ("input: [3, 8, 8]\nlayers:\n  - {relu: , name: input}\n", "'input' is reserved", (3, 20)),
        ("input: [3, 8, 8]\nlayers:\n  - {relu: , maxpool: 2}\n", "one op per list item", (3, 14)),
        (
            "input: [3, 8, 8]\nlayers:\n  - {relu: , head: true}\n",
            "an output head needs a name",
            (3, 20),
        ),
        (
            "input: [3, 8, 8]\nlayers:\n  - {relu: , from: [input, input]}\n",
            "'relu' takes one input, but 'from' names 2",
            (3, 6),
        ),
        (
            "input: [3, 8, 8]\nlayers:\n  - {conv: {out: 4, kernel: 3}, from: 0}\n",
            "references are by name",
            (3, 39),
        ),
        ("input: [3, 8, 8]\nlayers:\n  - 42\n", "a layer is an op name", (3, 5)),
    ],
)
def test_odd_specs_are_positioned_errors(
    text: str, message: str, pos: tuple[int, int], write_spec
) -> None:
    err = _error(write_spec(text))
    assert message in err.message
    assert (err.line, err.col) == pos, err.render()


def test_render_without_position_is_one_line() -> None:
    assert SpecError("boom").render() == "error: boom"


# ------------------------------------------------------------------------ names that nn.Module owns


@pytest.mark.parametrize(
    ("layers", "name", "pos"),
    [
        ("  - {conv: {out: 4, kernel: 1}, name: training}\n", "training", (3, 39)),
        ("  - {conv: {out: 4, kernel: 1}, name: forward}\n", "forward", (3, 39)),
        ("  - {relu: , name: code}\n", "code", (3, 20)),
        ("  - {relu: , name: archc_graph}\n", "archc_graph", (3, 20)),
        ("  - {relu: , name: _modules}\n", "_modules", (3, 20)),
        ("  - seq: [{relu: , name: append}]\n", "append", (3, 26)),
        ("  - seq: [relu]\n    name: parameters\n", "parameters", (4, 11)),
    ],
)
def test_names_taken_by_nn_module_are_positioned_errors(
    layers: str, name: str, pos: tuple[int, int], write_spec, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(HEAD + layers)
    with pytest.raises(SpecError, match=f"name '{name}' is taken by an attribute of") as info:
        api.compile_graph(path)  # one rule: `check` refuses what `build` would
    assert (info.value.line, info.value.col) == pos
    for command in ("check", "build", "export"):
        assert main([command, str(path)]) == 1
        err = capsys.readouterr().err
        assert (
            err.startswith(f"error: {path}:{pos[0]}:{pos[1]}: name '{name}'")
            and "Traceback" not in err
        )


def test_auto_index_colliding_with_an_explicit_numeric_name(write_spec) -> None:
    path = write_spec(
        HEAD + "  - {conv: {out: 4, kernel: 1}, name: '1'}\n  - {conv: {out: 4, kernel: 1}}\n"
    )
    err = _error(path)
    assert err.message == (
        "name '1' is already used (line 3); only identical parameter-free layers may share a name"
    )
    assert (err.line, err.col) == (4, 6)


def test_block_argument_of_the_wrong_type_is_positioned(write_spec) -> None:
    path = write_spec("""
        input: [3, 8, 8]
        blocks:
          B:
            params: {stride: 1}
            layers: [{conv: {out: 4, kernel: 1, stride: $stride}}]
        layers:
          - B: {stride: two}
    """)
    err = _error(path)
    assert err.message == "parameter 'stride' expects a number, got 'two'"
    assert (err.line, err.col) == (7, 17)


def test_seq_that_is_not_a_list_is_positioned(write_spec) -> None:
    err = _error(write_spec(HEAD + "  - relu\n  - seq: 0.5\n"))
    assert err.message == "expected a list of layers, got float" and (err.line, err.col) == (4, 5)


@pytest.mark.parametrize(
    ("text", "message", "pos"),
    [
        (
            "input: [3]\nlayers: [relu]\n---\n",
            "expected a single document in the stream, but found another document",
            (3, 1),
        ),
        ("input: [3]\nlayers: [relu]\n...\n%YAML 1.2\n", "expected '<document start>'", (4, 10)),
        ("input: [3]\nlayers: [relu\n", "this '[' is never closed", (2, 9)),
    ],
)
def test_yaml_errors_at_the_end_of_the_file_point_into_it(
    text: str, message: str, pos: tuple[int, int], write_spec
) -> None:
    path = write_spec(text)
    err = _error(path)
    assert err.message.startswith("YAML syntax error: ") and message in err.message
    assert (err.line, err.col) == pos
    assert err.render().splitlines()[2].endswith("^")


def test_dilated_pool_window_that_sees_only_padding_is_an_error(write_spec) -> None:
    """PyTorch would return -inf there and write out of bounds in
    backward (found by test_properties)."""
    path = write_spec(
        HEAD.replace("[3, 8, 8]", "[1, 3]") + "  - global_avgpool\n"
        "  - {maxpool: {kernel: 2, padding: 1, dilation: 2, ceil_mode: true}, name: pool}\n"
    )
    err = _error(path)
    assert err.message == (
        "'pool' (maxpool): window 2 with dilation 2 and padding 1 has output positions that see "
        "only padding of the 1 feature map it receives"
    )
    assert (err.line, err.col) == (4, 6)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (
            "{conv_transpose: {out: 4, kernel: 3, output_padding: 1}}",
            "output_padding [1, 1] must be smaller than the stride or the dilation",
        ),
        (
            "{conv: {out: 4, kernel: 3, padding: 8, padding_mode: reflect}}",
            "padding 8 in 'reflect' mode must be smaller than the 8x8 feature map",
        ),
        (
            "{conv: {out: 4, kernel: 3, padding: 9, padding_mode: circular}}",
            "padding 9 in 'circular' mode must be at most the 8x8 feature map",
        ),
        (
            "{upsample: {scale: 2, mode: trilinear}}",
            "mode 'trilinear' needs 3 spatial dimensions, got 8x8",
        ),
        (
            "{upsample: {scale: 2, align_corners: true}}",
            "align_corners needs an interpolating mode",
        ),
        (
            "{conv_transpose: {out: 4, kernel: 3, padding: -1}}",
            "padding must be >= 0, got [-1, -1]",
        ),
    ],
)
def test_geometry_pytorch_rejects_is_rejected_statically(
    layer: str, message: str, write_spec
) -> None:
    """Each of these compiled before and then failed inside PyTorch at the first forward."""
    err = _error(write_spec(HEAD + f"  - {layer}\n"))
    assert message in err.message and (err.line, err.col) == (3, 6)


# --------------------------------------------------------------------------- every error at once

MANY_ERRORS = """\
input: [3, 16, 16]
params: {width: 8}
blocks:
  Bottleneck:
    params: {planes: null, stride: 1}
    layers:
      - conv: {out: $planes, kernel: 3, strid: $stride}
      - bn
layers:
  - conv: {out: $widht, kernel: 3}
  - rleu
  - {Bottleneck: {planes: 64, stride: 2}, repeat: 3}
  - {conv: {out: 4, kernel: 3}, name: a}
  - {relu: , from: ab}
  - linear: 10
"""


def test_every_independent_error_is_reported_in_file_order(write_spec) -> None:
    err = _error(write_spec(MANY_ERRORS))
    found = [(d.line, d.col, d.message) for d in err.diagnostics]
    assert [(line, col) for line, col, _ in found] == [(7, 41), (10, 17), (11, 5), (14, 20)]
    assert found[0][2].startswith("unknown argument 'strid' for conv (did you mean 'stride'?)")
    assert found[1][2] == "undefined name 'widht' (did you mean 'width'?)"
    assert found[2][2] == "unknown op or block 'rleu' (did you mean 'relu'?)"
    assert found[3][2] == "unknown node 'ab' (did you mean 'a'?)"
    assert (err.line, err.col, err.message) == found[0]  # the first error is the SpecError itself
    text = err.render()
    assert text.count("error: ") == 4 and text.splitlines()[-1] == "4 errors"
    assert text.count("^") == 4


def test_an_error_inside_a_block_names_the_call_site_and_arguments(write_spec) -> None:
    path = write_spec(MANY_ERRORS)
    err = _error(path)
    assert err.notes == (
        f"in block 'Bottleneck' called at {path}:12:6 with planes=64, stride=2, repeat index 0",
    )
    nested = write_spec(
        """\
input: [3, 16, 16]
blocks:
  Inner:
    params: {k: 3}
    layers:
      - conv: {out: 4, kernel: $k, padding: "${k // 2}"}
      - {linear: 2, bias: maybe}
  Outer:
    params: {k: 3}
    layers:
      - {Inner: {k: $k}, name: inner}
layers:
  - relu
  - {Outer: {k: "${2 * i + 1}"}, repeat: 3, when: true}
""",
        "nested.yaml",
    )
    err = _error(nested)
    assert err.line == 7
    assert err.notes == (
        f"in block 'Inner' called at {nested}:11:10 with k=1",
        f"in block 'Outer' called at {nested}:14:6 with k=1, repeat index 0",
    )


def test_repeat_index_in_the_call_chain_is_an_integer(write_spec) -> None:
    path = write_spec("""\
input: [3, 16, 16]
layers:
  - {conv: {out: "${8 if j < 2 else 0}", kernel: 1}, repeat: {count: 3, var: j}}
""")
    err = _error(path)
    assert err.message == "conv argument 'out': input should be greater than 0, got 0"
    assert err.notes == (f"in repeat index 2 of the item at {path}:3:6",)


def test_a_mismatch_caused_by_an_earlier_error_is_not_reported(write_spec) -> None:
    path = write_spec("""\
input: [3, 16, 16]
layers:
  - {conv: {out: 4, kernel: 3, padding: 1, strde: 2}}
  - add:
      - {conv: {out: 4, kernel: 3}}
      - []
  - add:
      - {conv: {out: 4, kernel: 3, padding: 1}}
      - {conv: {out: 4, kernel: 1, name: 2}}
""")
    err = _error(path)
    assert [d.line for d in err.diagnostics] == [
        3,
        9,
    ]  # not the 14x14 vs 16x16 of line 4, fed by line 3
    assert err.diagnostics[1].message.startswith("unknown argument 'name' for conv")


def test_errors_are_capped(write_spec) -> None:
    path = write_spec("input: [3, 8, 8]\nlayers:\n" + "".join(f"  - rleu{i}\n" for i in range(30)))
    err = _error(path)
    assert len(err.diagnostics) == 20 and err.truncated
    assert err.render().splitlines()[-1] == "20 errors (stopped after the first 20)"


def test_validation_reports_every_bad_key_at_once(write_spec) -> None:
    path = write_spec("""\
input: [3, 8, 8]
nmae: net
layers: [relu]
init:
  conv: {scheme: kaiming, std: -1}
train: {epochs: many}
""")
    err = _error(path)
    found = [(d.line, d.message) for d in err.diagnostics]
    assert [line for line, _ in found] == [2, 5, 5, 6], found
    assert found[0][1] == "unknown key 'nmae' (did you mean 'name'?)"
    assert found[3][1].startswith("train: epochs: input should be a valid integer")


def test_check_json_lists_every_error(write_spec, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    path = write_spec(MANY_ERRORS)
    assert main(["check", str(path), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)[0]
    assert [(e["line"], e["col"]) for e in report["errors"]] == [
        (7, 41),
        (10, 17),
        (11, 5),
        (14, 20),
    ]
    assert report["errors"][0]["notes"][0].startswith("in block 'Bottleneck' called at")


# ----------------------------------------------------------------------- did-you-mean keeps meaning


@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        ("rleu", "(did you mean 'relu'?)"),
        ("sigmoyd", "(did you mean 'sigmoid'?)"),
        ("hardswich", "(did you mean 'hardswish'?)"),
        ("Conv2d", "(did you mean 'conv2d'? op names are lower case)"),
        ("BatchNorm2d", "(did you mean 'batchnorm'? op names are lower case)"),
        ("AdaptiveAvgPool2d", "(did you mean 'adaptive_avgpool'? op names are lower case)"),
        ("Dropout2d", "(did you mean 'dropout2d'? op names are lower case)"),
        (
            "hardtanh",
            "(PyTorch has it, archc does not; the closest op, 'tanh', is a different function)",
        ),
        (
            "selu",
            "(PyTorch has it, archc does not; the closest op, 'silu', is a different function)",
        ),
        (
            "prelu",
            "(PyTorch has it, archc does not; the closest op, 'relu', is a different function)",
        ),
        (
            "logsigmoid",
            "(PyTorch has it, archc does not; the closest op, 'sigmoid', is a different function)",
        ),
        ("softplus", "(PyTorch has it, archc does not: a plugin can add it)"),
        ("superrelu", "(the closest op, 'relu', is a different function)"),
        (
            "maxpooling",
            "(the closest op is 'maxpool': not a spelling slip, "
            "so check it computes what you mean)",
        ),
    ],
)
def test_unknown_op_hint_never_steers_to_another_function_silently(
    typed: str, hint: str, write_spec
) -> None:
    err = _error(write_spec(HEAD + f"  - {typed}\n"))
    assert err.message == f"unknown op or block '{typed}' {hint}"


def test_no_registered_op_is_suggested_for_another_as_a_typo() -> None:
    """Take each registered op (plugins included) away: its name must not
    plainly suggest a different op."""
    from archc import ops
    from archc.compiler.suggest import suggest_op

    for name, op in ops.REGISTRY.items():
        others = [n for n, other in ops.REGISTRY.items() if type(other) is not type(op)]
        assert not suggest_op(name, others).startswith(" (did you mean"), name


@pytest.mark.parametrize(
    ("layer", "hint"),
    [
        ("conv: {out: 4, kernel_size: 3}", "(PyTorch's 'kernel_size' is 'kernel' here)"),
        ("conv: {out_channels: 4, kernel: 3}", "(PyTorch's 'out_channels' is 'out' here)"),
        (
            "conv: {in_channels: 3, out: 4, kernel: 3}",
            "(archc infers in_channels from the input: leave it out)",
        ),
        (
            "{flatten: }\n  - linear: {in_features: 192, out: 2}",
            "(archc infers in_features from the input: leave it out)",
        ),
        (
            "relu: {inplace: true}",
            "(archc runs a layer in place itself when that is safe: leave it out)",
        ),
    ],
)
def test_pytorch_argument_names_are_translated(layer: str, hint: str, write_spec) -> None:
    err = _error(write_spec(HEAD + f"  - {layer}\n"))
    assert err.message.startswith("unknown argument '") and hint in err.message


def test_an_argument_beside_the_op_is_pointed_inside_it(write_spec) -> None:
    err = _error(write_spec(HEAD + "  - {maxpool: 2, stride: 2}\n"))
    assert err.message == (
        "unknown op, block or key 'stride' (maxpool takes 'stride': write it inside maxpool's "
        "mapping, 'maxpool: {stride: ...}')"
    )
    assert (err.line, err.col) == (3, 18)


def test_section_errors_and_network_errors_are_reported_together(write_spec) -> None:
    text = """\
input: [3, 8, 8]
nmae: net
layers:
  - conv: {out: 4, kernal: 3}
  - rleu
train: {epochs: many}
"""
    err = _error(write_spec(text))
    assert [d.line for d in err.diagnostics] == [2, 4, 5, 6]
    err = _error(write_spec(text.replace("nmae", "name"), "named.yaml"))
    assert [d.line for d in err.diagnostics] == [4, 5, 6]
    err = _error(write_spec(text.replace("layers:", "layerz:"), "broken.yaml"))
    assert [d.line for d in err.diagnostics] == [
        2,
        3,
    ]  # without its layers, the network is not checked


def test_a_mistake_in_a_block_called_many_times_is_reported_once(write_spec) -> None:
    path = write_spec("""\
input: [3, 8, 8]
blocks:
  B:
    layers: [{conv: {out: 4, kernal: 3}}]
layers:
  - {B: , repeat: 40}
  - rleu
""")
    err = _error(path)
    assert [d.line for d in err.diagnostics] == [4, 7] and not err.truncated


def test_every_bad_argument_of_an_op_is_reported(write_spec) -> None:
    err = _error(write_spec(HEAD + "  - conv: {out: 0, kernal: 3, strid: 2}\n  - conv: {out: 4}\n"))
    found = [(d.line, d.col, d.message.split(" (")[0].split(";")[0]) for d in err.diagnostics]
    assert found == [
        (3, 17, "conv argument 'out': input should be greater than 0, got 0"),
        (
            3,
            20,
            "unknown argument 'kernal' for conv",
        ),  # not also "needs argument 'kernel'": the misspelling explains it
        (3, 31, "unknown argument 'strid' for conv"),
        (4, 5, "conv needs argument 'kernel'"),
    ]
