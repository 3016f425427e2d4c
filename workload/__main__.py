"""Command line of the workload: `python -m workload {ingest,train,score} --input k=path --output k=path --params JSON`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .report import reporter


def _pairs(values: list[str], what: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            raise SystemExit(f"--{what} expects name=path, got {value!r}")
        out[name] = Path(path)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workload")
    parser.add_argument("task", choices=["ingest", "train", "score"])
    parser.add_argument("--input", action="append", default=[])
    parser.add_argument("--output", action="append", default=[])
    parser.add_argument("--params", default="{}")
    args = parser.parse_args(argv)
    inputs, outputs = _pairs(args.input, "input"), _pairs(args.output, "output")
    params = json.loads(args.params)
    try:
        with reporter() as report:
            if args.task == "ingest":
                from .ingest import ingest

                ingest(inputs.get("source"), outputs["raw"], params, report)
            elif args.task == "train":
                from .train import train

                train(inputs["raw"], outputs["model"], params, report)
            else:
                from .score import score

                score(inputs["model"], inputs["batch"], outputs["predictions"], report)
    except Exception as error:
        if getattr(error, "workload_failure_reported", False):
            return 1  # traceback and failure record are on stderr already, the record last
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
