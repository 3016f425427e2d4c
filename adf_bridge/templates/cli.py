"""`python -m adf_bridge.templates` (`./run adf-templates`): write the files under adf/, or `--check` them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import adf_bridge.templates
from adf_bridge.templates.output import OUTPUT_DIR, generate, stale_files, write_zips


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adf_bridge.templates",
        description=(adf_bridge.templates.__doc__ or "").split("\n")[0],
    )
    parser.add_argument(
        "--check", action="store_true", help="fail if the checked-in templates or jobs manifest are stale"
    )
    parser.add_argument(
        "--out", type=Path, default=OUTPUT_DIR, help="where the templates live (default adf/)"
    )
    parser.add_argument(
        "--zip", type=Path, metavar="DIR", help="also write one importable zip per template to DIR"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = stale_files(args.out)
        if problems:
            print("ADF templates are stale; run `./run adf-templates` and commit adf/:", file=sys.stderr)
            print("\n".join(problems), file=sys.stderr)
            return 1
        print(f"ADF templates in {args.out} match the code location.")
        return 0
    for path in generate(args.out):
        print(path.relative_to(args.out.parent) if args.out.parent in path.parents else path)
    if args.zip:
        for path in write_zips(args.out / "templates", args.zip):
            print(path)
    return 0
