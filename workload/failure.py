"""Why a workload task failed, as a small structured record the orchestration side turns into the step's
own failure message, on every backend.

A record is `{"what": ..., "file": ..., "expected": ..., "found": ...}`: what was wrong, in which input
file, what was expected there and what was found (e.g. "not an MNIST image file", "batch/x.idx3-ubyte.gz",
"magic number 0x00000803", "0x30cb48f0"). It travels two ways, so that it arrives whatever channel a
backend has back from its jobs:

- as a Dagster Pipes custom message `{"workload_failure": record}` when the task runs under Pipes
  (local processes, Azure Batch over Blob, AzureML v1 steps whose stderr carries Pipes messages);
- as the last line of stderr, `FAILURE_PREFIX + json(record)`, after the traceback, which every
  backend that keeps a failed job's stderr tail hands back.

No Dagster here: this module ships to remote compute with the workload.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

from .mnist_idx import IdxFormatError

FAILURE_PREFIX = "mnist-workload-failure: "
PIPES_KEY = "workload_failure"
FIELDS = ("what", "file", "expected", "found")
_MAX_FIELD = 500  # a record stays one short line: a file name or a magic number, not a dump


def failure_record(error: BaseException) -> dict[str, str] | None:
    """The record for an error the workload knows how to explain (bad input files), else None."""
    if isinstance(error, IdxFormatError):
        return {
            "what": "an input file is not an MNIST-shaped IDX file",
            "file": error.source[:_MAX_FIELD],
            "expected": error.expected[:_MAX_FIELD],
            "found": error.found[:_MAX_FIELD],
        }
    return None


def failure_line(record: dict[str, str]) -> str:
    """The stderr line carrying `record`."""
    return FAILURE_PREFIX + json.dumps(record, sort_keys=True)


def report_failure(error: BaseException, pipes: Any | None) -> None:
    """Send the record for `error` (if it has one) through Pipes and as the last line of stderr.

    Call it once the traceback has been printed, so the line is the last one of the stderr tail."""
    record = failure_record(error)
    if record is None:
        return
    if pipes is not None:
        # A closed or broken channel must not hide the original error.
        with contextlib.suppress(Exception):
            pipes.report_custom_message({PIPES_KEY: record})
    print(failure_line(record), file=sys.stderr, flush=True)
