"""Regenerate the generated parts of the docs: `python -m archc.docs_gen` (or `make docs`).

- the op tables in docs/spec-language.md, between `<!-- ops:begin -->` and `<!-- ops:end -->`,
  from `archc ops --format markdown`;
- archc.schema.json at the repository root, from `archc schema`.

`--check` rewrites nothing and exits 1 when either is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC_LANGUAGE = ROOT / "docs" / "spec-language.md"
SCHEMA_FILE = ROOT / "archc.schema.json"
BEGIN = "<!-- ops:begin -->"
END = "<!-- ops:end -->"


def op_tables() -> str:
    from archc.commands.docs import describe_ops, ops_markdown

    return ops_markdown(describe_ops())


def schema_text() -> str:
    from archc.schema import spec_json_schema

    return json.dumps(spec_json_schema(), indent=2) + "\n"


def between_markers(text: str) -> str:
    """The text between the ops markers (exclusive, without the
    newlines right after/before them)."""
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END, start)
    return text[start:end].strip("\n") + "\n"


def replace_between_markers(text: str, content: str) -> str:
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END, start)
    return text[:start] + "\n" + content.rstrip("\n") + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m archc.docs_gen", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--check", action="store_true", help="report stale files instead of rewriting them"
    )
    args = parser.parse_args(argv)
    doc = SPEC_LANGUAGE.read_text()
    new_doc = replace_between_markers(doc, op_tables())
    schema = schema_text()
    old_schema = SCHEMA_FILE.read_text() if SCHEMA_FILE.exists() else None
    stale = [
        p
        for p, old, new in ((SPEC_LANGUAGE, doc, new_doc), (SCHEMA_FILE, old_schema, schema))
        if old != new
    ]
    if args.check:
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} (run `make docs`)", file=sys.stderr)
        return 1 if stale else 0
    SPEC_LANGUAGE.write_text(new_doc)
    SCHEMA_FILE.write_text(schema)
    for path in stale:
        print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
