"""When is a STARTING run an orphaned launch that the coordinator puts back in the queue?

`orphan_reason` decides from the run's tags and times alone; these cases pin each rule. The end-to-end
case (a daemon SIGKILLed mid-launch) is tests/e2e/test_daemon.py.
"""

from __future__ import annotations

import json
import os
import socket

import dagster as dg

from instance_plugins.run_worker import WORKER_TAG, process_start_time
from instance_plugins.warm_launcher import LAUNCHER_TAG, ORPHAN_GRACE_SECONDS, orphan_reason

NOW = 1_000_000.0


def starting(tags: dict[str, str] | None = None) -> dg.DagsterRun:
    return dg.DagsterRun(job_name="score_batch", status=dg.DagsterRunStatus.STARTING, tags=tags or {})


def test_a_run_dequeued_by_a_daemon_that_died_before_launching_is_an_orphan() -> None:
    """No launcher recorded: marked STARTING by the previous daemon, which is gone."""
    long_ago = NOW - ORPHAN_GRACE_SECONDS - 1
    reason = orphan_reason(starting(), NOW, starting_since=long_ago, daemon_started=long_ago + 0.5)
    assert reason == "the daemon that took it from the queue ended before launching it"


def test_a_run_this_daemon_is_launching_is_never_an_orphan() -> None:
    """Marked STARTING by the current daemon (after it started): it may still be launching it."""
    started = NOW - 600
    assert orphan_reason(starting(), NOW, starting_since=NOW - 60, daemon_started=started) is None
    # Recent, or when it was marked STARTING is unknown: wait.
    assert orphan_reason(starting(), NOW, starting_since=NOW - 1, daemon_started=NOW) is None
    assert orphan_reason(starting(), NOW) is None


def test_a_run_with_a_worker_or_a_live_launcher_is_never_an_orphan() -> None:
    worker = {WORKER_TAG: json.dumps({"pid": 1, "host": socket.gethostname()})}
    long_ago = NOW - 3600
    assert orphan_reason(starting(worker), NOW, long_ago, long_ago + 1) is None
    me = {
        LAUNCHER_TAG: json.dumps(
            {
                "pid": os.getpid(),
                "start": process_start_time(os.getpid()),
                "host": socket.gethostname(),
                "at": 0,
            }
        )
    }
    assert orphan_reason(starting(me), NOW) is None  # its launcher (this process) is alive


def test_the_launcher_tag_is_hidden_from_the_ui() -> None:
    assert LAUNCHER_TAG.startswith(".dagster/")
