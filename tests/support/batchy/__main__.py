"""A controllable stand-in workload for the Azure Batch tests: `python -m batchy <task> --params JSON`.

Like tests/support/sleepy, but it speaks Dagster Pipes over Blob the way workload/report.py does on remote
compute (context from Blob, messages to Blob), so the tests see logs and metrics come back.
It is delivered to the (fake) Batch node as resource files, so it imports nothing from the project.
params: seconds (sleep), fail (exit code), ledger (file to append one line to per launch).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

from azure.storage.blob import BlobServiceClient
from dagster_pipes import (
    PipesAzureBlobStorageContextLoader,
    PipesAzureBlobStorageMessageWriter,
    open_dagster_pipes,
)

parser = argparse.ArgumentParser()
parser.add_argument("task")
parser.add_argument("--input", action="append", default=[])
parser.add_argument("--output", action="append", default=[])
parser.add_argument("--params", default="{}")
args = parser.parse_args()
params = json.loads(args.params)
with Path(params["ledger"]).open("a") as fh:
    fh.write(f"launched {args.task}\n")
client = BlobServiceClient(account_url=os.environ["WORKLOAD_PIPES_BLOB_URL"])
with open_dagster_pipes(
    context_loader=PipesAzureBlobStorageContextLoader(client),
    message_writer=PipesAzureBlobStorageMessageWriter(
        client, interval=float(os.environ["WORKLOAD_PIPES_INTERVAL"])
    ),
) as pipes:
    print(f"sleepy {args.task} started", flush=True)
    pipes.log.info(f"batchy {args.task} says hello through Pipes")
    inputs = {k: Path(v) for k, v in (i.split("=", 1) for i in args.input)}
    for name, folder in inputs.items():
        print(f"input {name}: {sorted(p.name for p in folder.rglob('*') if p.is_file())}", flush=True)
    time.sleep(float(params.get("seconds", 0)))
    if params.get("fail"):
        print(f"boom: {args.task} failed on purpose", file=sys.stderr, flush=True)
        sys.exit(int(params["fail"]))
    pipes.report_custom_message({"metrics": {"answer": 42}})
    for out in args.output:
        _, _, path = out.partition("=")
        (Path(path) / "sub").mkdir(parents=True, exist_ok=True)
        (Path(path) / "sub" / "nested.txt").write_text("nested")
        (Path(path) / "result.txt").write_text("done")
    print(f"sleepy {args.task} finished", flush=True)
