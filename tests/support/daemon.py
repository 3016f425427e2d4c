"""A real Dagster daemon (sensors, run queue, run launcher) over a temporary instance, for end-to-end tests."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import dagster as dg

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class Daemon:
    def __init__(self, home: Path, env: dict[str, str], postgres_url: str | None = None) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / "instance" / "local" / "dagster.yaml", home / "dagster.yaml")
        if postgres_url:  # the shipped local settings, with runs and events in PostgreSQL
            with (home / "dagster.yaml").open("a") as fh:
                fh.write(f"storage:\n  postgres:\n    postgres_url: {postgres_url}\n")
        self.env = {**env, "DAGSTER_HOME": str(home)}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / "daemon.log"

    def set_max_concurrent_runs(self, n: int) -> None:
        path = self.home / "dagster.yaml"
        text = path.read_text()
        assert "max_concurrent_runs: 2" in text, "the shipped local instance changed"
        path.write_text(text.replace("max_concurrent_runs: 2", f"max_concurrent_runs: {n}", 1))

    def cli(self, *args: str, target: tuple[str, ...] = ("-w", str(PROJECT_ROOT / "workspace.yaml"))) -> None:
        subprocess.run(
            [str(BIN / "dagster"), *args, *target],
            cwd=PROJECT_ROOT, env=self.env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")],
                cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL the daemon process itself, as a crash would (no clean shutdown)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def instance(self) -> dg.DagsterInstance:
        old = os.environ.get("DAGSTER_HOME")
        os.environ["DAGSTER_HOME"] = str(self.home)
        try:
            return dg.DagsterInstance.get()
        finally:
            if old is None:
                os.environ.pop("DAGSTER_HOME", None)
            else:
                os.environ["DAGSTER_HOME"] = old


# Events that say why a run did not succeed: step and run failures, and what the launcher, the run
# coordinator and run monitoring reported (engine events).
_WHY_EVENTS = frozenset(
    {
        dg.DagsterEventType.STEP_FAILURE,
        dg.DagsterEventType.RUN_FAILURE,
        dg.DagsterEventType.RESOURCE_INIT_FAILURE,
        dg.DagsterEventType.ENGINE_EVENT,
        dg.DagsterEventType.RUN_CANCELED,
    }
)


def failure_report(instance: dg.DagsterInstance, runs: Sequence[dg.DagsterRun]) -> str:
    """For every run in `runs` that did not succeed: its id, status and tags, then its failure and
    engine events (message, and the error with its stack when the event carries one)."""
    lines: list[str] = []
    for run in runs:
        if run.status == dg.DagsterRunStatus.SUCCESS:
            continue
        fresh = instance.get_run_by_id(run.run_id) or run
        lines.append(f"run {fresh.run_id} ({fresh.status.value}), tags {dict(fresh.tags)}")
        for entry in instance.all_logs(fresh.run_id):
            event = entry.dagster_event
            if event is None:
                if entry.level in (logging.ERROR, logging.CRITICAL, "ERROR", "CRITICAL"):
                    lines.append(f"  [{entry.timestamp:.1f}] log: {entry.user_message}")
                continue
            if event.event_type not in _WHY_EVENTS:
                continue
            lines.append(
                f"  [{entry.timestamp:.1f}] {event.event_type.value} {event.step_key or ''}: {event.message}"
            )
            error = getattr(event.event_specific_data, "error", None)
            if error is not None:
                lines.append("    " + error.to_string().rstrip().replace("\n", "\n    "))
    return "\n".join(lines)


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    log: Path | None = None,
    explain: Callable[[], str] | None = None,
) -> None:
    """Wait until `condition()`; on timeout fail with the daemon log's tail and `explain()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    why = explain() if explain else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{why}\n{tail}")
