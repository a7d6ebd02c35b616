"""The HTML report of a run or a sweep: self-contained, one row per run,
and it renders in a real browser.

The browser test drives Debian's chromium with Playwright and skips (saying why) when either is
missing; scripts/system-deps.sh installs chromium.
"""

from __future__ import annotations

import contextlib
import io
from html.parser import HTMLParser
from pathlib import Path

import pytest

from archc.cli import main
from archc.experiments import sweep, write_html_report
from archc.experiments.html import inline_svg
from tests.conftest import FORKSERVER

pytestmark = FORKSERVER

REPO = Path(__file__).resolve().parent.parent
TINY = str(REPO / "tests" / "specs" / "exp_tiny.yaml")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RUN_IDS = ["set.bn=true,seed=0", "set.bn=false,seed=0"]


class Page(HTMLParser):
    """Tags, attributes and the rows of the per-run table of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.run_rows: list[str] = []
        self.svgs = 0
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "tr" and attributes.get("data-run"):
            self.run_rows.append(str(attributes["data-run"]))
        if tag == "svg":
            self.svgs += 1

    def ids(self) -> list[str]:
        return [str(a["id"]) for _, a in self.tags if a.get("id")]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html") / "sweep"
    outcome = sweep(TINY, {"set.bn": [True, False]}, out=out, echo=lambda _: None)
    assert [r["status"] for r in outcome.runs] == ["done", "done"]
    return out


def test_sweep_page_is_self_contained_with_a_row_per_run(sweep_dir: Path, tmp_path: Path) -> None:
    page_path = write_html_report(sweep_dir, tmp_path / "report.html")
    text = page_path.read_text()
    page = Page(text)
    assert page.run_rows == RUN_IDS
    tags = [t for t, _ in page.tags]
    assert "script" not in tags and "img" not in tags and "iframe" not in tags
    for tag, attrs in page.tags:
        for name in ("src", "href", "xlink:href"):
            value = attrs.get(name)
            assert value is None or value.startswith(("#", "data:")), (
                f"<{tag} {name}={value}> loads something"
            )
    assert "url(http" not in text and "@import" not in text
    # Three plots and one diagram per model (bn on and off), each an inline SVG.
    assert page.svgs == 5
    assert sum(1 for t, a in page.tags if t == "div" and a.get("class") == "diagram") == 2
    assert sum(1 for t, a in page.tags if t == "table" and a.get("class") == "layers") == 2
    ids = page.ids()
    assert len(ids) == len(set(ids)), "inline SVGs must not share element ids"
    assert (
        "exp_tiny (bn=false)" in text and "1,370 parameters" in text and "1,386 parameters" in text
    )


def test_run_page_and_cli(sweep_dir: Path, tmp_path: Path) -> None:
    run_dir = sweep_dir / RUN_IDS[0]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["html", str(run_dir), "-o", str(tmp_path / "run.html")])
    assert rc == 0, err.getvalue()
    assert out.getvalue().strip() == str(tmp_path / "run.html")
    page = Page((tmp_path / "run.html").read_text())
    assert (
        page.run_rows == [f"sweep/{RUN_IDS[0]}"] and page.svgs == 2
    )  # loose run: PARENT/DIR; diagram and curves
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["html", str(tmp_path)])
    assert rc == 1
    assert (
        err.getvalue()
        .strip()
        .splitlines()[-1]
        .startswith(f"error: {tmp_path} is not a run directory")
    )


def test_inline_svg_prefixes_ids_and_references() -> None:
    svg = (
        '<?xml version="1.0"?>\n<!DOCTYPE svg>\n'
        '<svg xmlns="http://www.w3.org/2000/svg"><defs><clipPath id="c1"/></defs><g '
        'clip-path="url(#c1)"><use xlink:href="#c1"/><a href="#elsewhere"/></g></svg>'
    )
    out = inline_svg(svg, "p")
    assert (
        out.startswith("<svg")
        and 'id="p-c1"' in out
        and "url(#p-c1)" in out
        and 'xlink:href="#p-c1"' in out
    )
    assert 'href="#elsewhere"' in out  # not an id of this SVG: left alone


@pytest.mark.slow
def test_page_renders_in_a_headless_browser(sweep_dir: Path, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing; scripts/system-deps.sh installs chromium")
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed"
    )
    page_path = write_html_report(sweep_dir, tmp_path / "report.html")
    url = page_path.resolve().as_uri()
    problems: list[str] = []
    requests: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda m: (
                    problems.append(f"{m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url, wait_until="load")
            rows = page.eval_on_selector_all(
                "#runs tbody tr", "rows => rows.map(r => r.dataset.run)"
            )
            sizes = page.eval_on_selector_all(
                "svg",
                "els => els.map(e => "
                "{ const r = e.getBoundingClientRect(); return [r.width, r.height]; })",
            )
            diagram_nodes = page.eval_on_selector_all(
                ".diagram svg", "els => els.map(e => e.querySelectorAll('g.node').length)"
            )
            plot_paths = page.eval_on_selector_all(
                ".plot svg", "els => els.map(e => e.querySelectorAll('path').length)"
            )
            broken = page.evaluate(
                "() => [...document.querySelectorAll('svg [clip-path]')].filter(e => {"
                " const id = e.getAttribute('clip-path').slice(5, -1);"
                " return !document.getElementById(id); }).length"
            )
        finally:
            browser.close()
    assert problems == []
    assert requests == [url], f"the page loaded more than itself: {requests}"
    assert rows == RUN_IDS
    assert len(sizes) == 5 and all(w > 50 and h > 50 for w, h in sizes), sizes
    assert diagram_nodes and all(
        n >= 6 for n in diagram_nodes
    )  # input, conv, (bn), relu, pool, flatten, fc, output
    assert len(plot_paths) == 3 and all(n > 10 for n in plot_paths)
    assert broken == 0
