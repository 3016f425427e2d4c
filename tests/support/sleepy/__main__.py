"""A controllable stand-in workload for compute-driver tests: `python -m tests.support.sleepy <task> --params JSON`.

params: seconds (sleep), fail (exit code), ledger (file to append one line to per launch).
"""

import argparse
import json
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("task")
parser.add_argument("--input", action="append", default=[])
parser.add_argument("--output", action="append", default=[])
parser.add_argument("--params", default="{}")
args = parser.parse_args()
params = json.loads(args.params)
with Path(params["ledger"]).open("a") as fh:
    fh.write(f"launched {args.task}\n")
print(f"sleepy {args.task} started", flush=True)
time.sleep(float(params.get("seconds", 0)))
if params.get("fail"):
    print(f"boom: {args.task} failed on purpose", file=sys.stderr, flush=True)
    sys.exit(int(params["fail"]))
for out in args.output:
    _, _, path = out.partition("=")
    (Path(path) / "result.txt").write_text("done")
print(f"sleepy {args.task} finished", flush=True)
