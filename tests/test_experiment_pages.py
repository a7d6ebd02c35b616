"""Readable experiment pages and plots: no one-point trade-off plots, per-epoch ticks on short
curves, and a comparison titled as one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from archc.experiments import compare, sweep, write_html_report
from archc.experiments.compare import collect_runs
from tests.conftest import FORKSERVER

pytestmark = FORKSERVER

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "specs" / "exp_tiny.yaml"


@pytest.fixture(scope="module")
def one_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pages") / "single"
    outcome = sweep(str(TINY), out=out, echo=lambda _: None)
    assert [r["status"] for r in outcome.runs] == ["done"]
    return out


def test_a_single_run_draws_its_curves_with_one_tick_per_epoch(one_run: Path) -> None:
    import matplotlib

    from archc.experiments.plots import RC, figures

    with matplotlib.rc_context(RC):
        drawn = dict(figures(collect_runs([one_run])))
    assert list(drawn) == ["curves"]  # a one-point scatter says nothing
    for ax in drawn["curves"].axes:
        assert list(ax.get_xticks()) == [1] and ax.get_xlim() == (0.5, 1.5)


def test_a_single_run_page_has_no_trade_off_plots(one_run: Path, tmp_path: Path) -> None:
    page = write_html_report(one_run, tmp_path / "page.html").read_text()
    assert (
        'id="plot-curves"' in page
        and 'id="plot-acc_vs_params"' not in page
        and "<h1>Sweep " in page
    )


def test_a_comparison_page_is_titled_as_one(tmp_path: Path) -> None:
    other = tmp_path / "exp_other.yaml"
    shutil.copy(TINY, other)
    outcome = compare([str(TINY), str(other)], out=tmp_path / "cmp", echo=lambda _: None)
    assert [r["status"] for r in outcome.runs] == ["done", "done"]
    page = write_html_report(tmp_path / "cmp", tmp_path / "page.html").read_text()
    assert "<h1>Comparison cmp</h1>" in page and "Sweep" not in page.split("</h1>")[0]
    assert 'id="plot-acc_vs_params"' in page  # two models: the trade-off plots say something
