"""Run every benchmark in this folder, then regenerate docs/performance.md from the results.

    python benchmarks/run.py [--quick] [--only NAME ...] [--render-only]

Each bench_*.py writes benchmarks/results/<name>.json with a `summary` list of
{metric, value, unit, target} rows and the `command` that produced it; this script turns those
into the tables of docs/performance.md, with the machine and versions they were measured on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "performance.md"

INTRO = """# Performance

Measured by `make bench` (`python benchmarks/run.py`), which runs every `benchmarks/bench_*.py`,
writes `benchmarks/results/*.json` and regenerates this page. Ratios compare against a
reference measured in the same run (medians of interleaved rounds), so they travel between
machines better than absolute times. Do not edit by hand: rerun `make bench`.
"""


def run_all(quick: bool, only: list[str]) -> int:
    failures = 0
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if only and name not in only:
            continue
        print(f"== {script.name}", flush=True)
        cmd = [sys.executable, str(script)] + (["--quick"] if quick else [])
        if subprocess.run(cmd, cwd=HERE).returncode != 0:
            print(f"!! {script.name} failed", file=sys.stderr)
            failures += 1
    return failures


def render() -> str:
    parts = [INTRO]
    for path in sorted((HERE / "results").glob("*.json")):
        data = json.loads(path.read_text())
        summary = data.get("summary")
        if not summary:
            continue
        m = data.get("machine", {})
        parts.append(f"## {data.get('benchmark', path.stem)}\n")
        parts.append(
            f"`{data.get('command', 'python benchmarks/' + path.stem + '.py')}` "
            f"on {m.get('date', '?')}: {m.get('device', 'cpu')}, "
            f"{m.get('cpus', '?')} CPUs ({m.get('processor', '?')}), Python "
            f"{m.get('python', '?')}, torch {m.get('torch', '?')}.\n"
        )
        parts.append("| metric | value | target |\n| --- | ---: | --- |")
        for row in summary:
            parts.append(
                f"| {row['metric']} | {row['value']} "
                f"{row.get('unit', '')} | {row.get('target', '')} |"
            )
        if data.get("notes"):
            parts.append("\n" + str(data["notes"]))
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds in every benchmark")
    parser.add_argument(
        "--only", nargs="*", default=[], metavar="NAME", help="e.g. compile trainer report"
    )
    parser.add_argument(
        "--render-only", action="store_true", help="only regenerate docs/performance.md"
    )
    args = parser.parse_args()
    failures = 0 if args.render_only else run_all(args.quick, args.only)
    DOC.write_text(render())
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
