"""Scoring script of the AzureML batch deployment: the workload's `score` task on one mini-batch.

AzureML's batch driver calls `init()` once (the registered model is in $AZUREML_MODEL_DIR) and
`run(mini_batch)` with a list of file paths. The deployment (deploy_batch.py) uses
`output_action=summary_only` and a mini-batch larger than any inference batch, so one `run()` sees
the whole batch and writes `predictions.csv` and `summary.json` (last) into the job's output folder
($AZUREML_BI_OUTPUT_PATH), exactly as the local backend would.

`python deploy/azureml/batch_score.py --model-dir M --output-dir O FILE...` runs the same two calls
as the batch driver does (used by the tests' contract fake). No Dagster here.

On a bad input file the workload prints its traceback, then its failure record as the last line of
stderr, and `run()` raises: the batch job fails (the deployment's error threshold is 0) and the
orchestrator reads the record from the step's stderr log through run history.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the code snapshot root holds `workload`

_model_dir: Path | None = None


def _find_model(root: Path) -> Path:
    """$AZUREML_MODEL_DIR holds the registered folder; the MLflow model is where MLmodel is."""
    found = sorted(root.rglob("MLmodel"))
    if not found:
        raise FileNotFoundError(f"{root}: no MLflow model (MLmodel file) in the registered model")
    return found[0].parent


def init() -> None:
    global _model_dir
    _model_dir = _find_model(Path(os.environ["AZUREML_MODEL_DIR"]))


def run(mini_batch: list[str]) -> list[str]:
    from workload.report import reporter
    from workload.score import score

    assert _model_dir is not None, "init() was not called"
    out = Path(os.environ["AZUREML_BI_OUTPUT_PATH"])
    # The workload scores a folder: link this mini-batch's files into one.
    with tempfile.TemporaryDirectory() as tmp:
        for path in mini_batch:
            shutil.copy(path, Path(tmp) / Path(path).name)
        with reporter() as report:
            summary: dict[str, Any] = score(_model_dir, Path(tmp), out, report)
    return [f"{Path(p).name}: scored" for p in mini_batch] + [f"images: {summary.get('images')}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batch_score")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    os.environ["AZUREML_MODEL_DIR"] = args.model_dir
    os.environ["AZUREML_BI_OUTPUT_PATH"] = args.output_dir
    init()
    try:
        lines = run(args.files)
    except Exception as error:
        # As the batch driver does, an error of run() is not printed again after the script's own report:
        # the workload's failure record stays the last line of stderr (workload.failure).
        if getattr(error, "workload_failure_reported", False):
            return 1
        raise
    for line in lines:
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
