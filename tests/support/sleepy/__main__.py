"""A controllable stand-in workload for compute-driver tests: `python -m tests.support.sleepy <task> --params JSON`.

params: seconds (sleep), fail (exit code), ledger (file to append one line to per launch),
preempt (count: the first `preempt` launches are killed by SIGKILL after their sleep, as a preempted or
lost node kills a task), bad_input (fail as the workload does on an input it refuses: with its failure
record as the last line of stderr).
"""

import argparse
import json
import os
import signal
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
launch = len(Path(params["ledger"]).read_text().splitlines())
print(f"sleepy {args.task} started", flush=True)
time.sleep(float(params.get("seconds", 0)))
if launch <= int(params.get("preempt", 0)):
    os.kill(os.getpid(), signal.SIGKILL)  # the machine went away mid-task
if params.get("bad_input"):
    from workload.failure import failure_line

    record = {
        "what": "not an MNIST image file",
        "file": "batch/x.idx3-ubyte",
        "expected": "0x803",
        "found": "0x0",
    }
    print("Traceback: IdxFormatError", file=sys.stderr)
    print(failure_line(record), file=sys.stderr, flush=True)
    sys.exit(1)
if params.get("fail"):
    print(f"boom: {args.task} failed on purpose", file=sys.stderr, flush=True)
    sys.exit(int(params["fail"]))
for out in args.output:
    _, _, path = out.partition("=")
    (Path(path) / "result.txt").write_text("done")
print(f"sleepy {args.task} finished", flush=True)
