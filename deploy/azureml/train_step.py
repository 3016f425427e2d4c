"""The AzureML v1 pipeline step that trains: a DataPath mount in, the workload's `train` task, an output out.

AzureML runs `python deploy/azureml/train_step.py --raw-data <mounted raw folder> --model-output
<output folder> --hyperparameter NAME VALUE ... --dagster-pipes <bootstrap or empty>` from the
project snapshot. The raw folder is a read-only input mount; the output folder is the step's
output binding (`model_output`), which AzureML uploads to the datastore when the step ends. When
started by Dagster, `--dagster-pipes` carries the Pipes bootstrap variables, URL-safe base64
(`workload/pipes_bootstrap.py`) since AzureML rewrites some characters in arguments: the workload then reports logs and metrics through Pipes messages on stderr, which AzureML keeps in
the step's log and the Dagster backend reads back. Pure stdlib + the workload: no Dagster needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the snapshot root holds `workload`


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def pipes_env(argument: str) -> dict[str, str]:
    """The Pipes bootstrap variables carried by `--dagster-pipes` (none when it is empty)."""
    from workload.pipes_bootstrap import decode_bootstrap

    return decode_bootstrap(argument)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="train_step")
    parser.add_argument("--raw-data", required=True)
    parser.add_argument("--model-output", required=True)
    parser.add_argument("--hyperparameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--dagster-pipes", default="")
    args = parser.parse_args(argv)
    os.environ.update(pipes_env(args.dagster_pipes))
    params = {name: _number(value) for name, value in args.hyperparameter}
    Path(args.model_output).mkdir(parents=True, exist_ok=True)
    from workload.__main__ import main as workload_main

    return workload_main(
        [
            "train",
            "--input",
            f"raw={args.raw_data}",
            "--output",
            f"model={args.model_output}",
            "--params",
            json.dumps(params, sort_keys=True),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
