"""A run's maximum runtime and run-level retries, with a real dagster-daemon (run queue, warm run
launcher, run monitoring, automatic run retries) on the shipped local instance (run monitoring every
second instead of 10 s, to keep the test short), for the test code location's `remote_sleep_job`
(tests/support/launcher_location.py: the real compute driver running tests.support.sleepy locally).

- A run that reaches its `dagster/max_runtime` is stopped by run monitoring: it ends FAILURE saying
  so, its remote job is cancelled (the path a user's *Terminate* takes) and the workload process is
  gone; run retries do not start it again (the run coordinator refuses that retry).
- A run whose worker dies (SIGKILL) is failed by run monitoring and retried by run retries, through
  the run coordinator; the retry reattaches to the job still running: exactly one remote job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget

from instance_plugins.run_worker import WORKER_TAG
from resources.compute import JobState, LocalProcessBackend

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODULE = "tests.support.launcher_location"
LOCATION = "launcher_test"


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dg.DagsterInstance, WorkspaceProcessContext]]:
    home = tmp_path_factory.mktemp("home")
    config = yaml.safe_load((PROJECT_ROOT / "instance" / "local" / "dagster.yaml").read_text())
    config["run_monitoring"]["poll_interval_seconds"] = 1
    config["run_launcher"]["config"]["preload_modules"] = ["dagster", MODULE]
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    workspace = home / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_module": {
                            "module_name": MODULE,
                            "location_name": LOCATION,
                            "working_directory": str(PROJECT_ROOT),
                        }
                    }
                ]
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "MNIST_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), PYTHONPATH=str(PROJECT_ROOT))
    # The instance first: its storage is created once, before the daemon and code servers open it.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        with (home / "daemon.log").open("ab") as log:
            daemon = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
                cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            # The daemon's workspace: runs made here have the origin the daemon's retries get.
            with WorkspaceProcessContext(instance, WorkspaceFileTarget([str(workspace)])) as context:
                yield instance, context
        finally:
            daemon.send_signal(signal.SIGINT)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()


def submit(
    site: tuple[dg.DagsterInstance, WorkspaceProcessContext],
    tmp_path: Path,
    seconds: float,
    tags: dict[str, str],
) -> str:
    """Queue a run of remote_sleep_job as the webserver does (the run coordinator); the daemon launches it."""
    instance, context = site
    workspace = context.create_request_context()
    remote_job = next(iter(workspace.get_code_location(LOCATION).get_repositories().values())).get_full_job(
        "remote_sleep_job"
    )
    from tests.support.launcher_location import defs

    run_config: dict[str, Any] = {
        "resources": {
            "compute": {
                "config": {
                    "work_dir": str(tmp_path / "compute"),
                    "module": "tests.support.sleepy",
                    "poll_initial_seconds": 0.05,
                }
            },
            "storage": {"config": {"root": str(tmp_path / "store")}},
        },
        "ops": {"remote_sleep": {"config": {"ledger": str(tmp_path / "ledger"), "seconds": seconds}}},
    }
    run = instance.create_run_for_job(
        job_def=defs.resolve_job_def("remote_sleep_job"),
        run_config=run_config,
        tags=tags,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
    )
    instance.submit_run(run.run_id, workspace)
    return run.run_id


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [e.message or "" for e in instance.all_logs(run_id)]


def launches(tmp_path: Path) -> int:
    ledger = tmp_path / "ledger"
    return len(ledger.read_text().splitlines()) if ledger.exists() else 0


def the_job(tmp_path: Path) -> tuple[LocalProcessBackend, str]:
    (job_dir,) = (tmp_path / "compute" / "jobs").iterdir()
    return LocalProcessBackend(work_dir=str(tmp_path / "compute")), job_dir.name


def test_a_run_reaching_its_max_runtime_is_stopped_with_its_remote_job_and_not_retried(
    site: tuple[dg.DagsterInstance, WorkspaceProcessContext], tmp_path: Path
) -> None:
    instance, _ = site
    run_id = submit(site, tmp_path, seconds=120, tags={"dagster/max_runtime": "4"})
    wait_for(lambda: launches(tmp_path) == 1, 60, "the workload to start")
    wait_for(lambda: instance.get_run_by_id(run_id).is_finished, 60, "run monitoring to stop the run")  # type: ignore[union-attr]
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
    assert any("Exceeded maximum runtime of 4 seconds" in m for m in messages(instance, run_id))
    backend, job = the_job(tmp_path)
    # The run worker got Dagster's interrupt and cancelled the job, as for a user's Terminate.
    wait_for(lambda: backend.status(job).state is JobState.CANCELED, 30, "the remote job to be cancelled")
    assert any("Dagster run interrupted: cancelling job" in m for m in messages(instance, run_id))
    # Run retries would start the work again: the daemon's retry is refused by the run coordinator.
    wait_for(
        lambda: any("Failed to retry run" in m for m in messages(instance, run_id)),
        60,
        "the retry to be refused",
    )
    assert not [r for r in instance.get_runs() if r.parent_run_id == run_id]
    assert launches(tmp_path) == 1


def test_a_run_whose_worker_died_is_retried_and_reattaches_to_its_remote_job(
    site: tuple[dg.DagsterInstance, WorkspaceProcessContext], tmp_path: Path
) -> None:
    instance, _ = site
    run_id = submit(site, tmp_path, seconds=6, tags={})
    wait_for(lambda: launches(tmp_path) == 1, 60, "the workload to start")
    run = instance.get_run_by_id(run_id)
    assert run is not None and WORKER_TAG in run.tags
    os.kill(json.loads(run.tags[WORKER_TAG])["pid"], signal.SIGKILL)  # the run's container died
    wait_for(lambda: instance.get_run_by_id(run_id).is_finished, 30, "run monitoring to fail the run")  # type: ignore[union-attr]

    def retry() -> dg.DagsterRun | None:
        return next((r for r in instance.get_runs() if r.parent_run_id == run_id), None)

    wait_for(lambda: retry() is not None and retry().is_finished, 90, "the run retry to finish")  # type: ignore[union-attr]
    child = retry()
    assert child is not None
    assert child.status == dg.DagsterRunStatus.SUCCESS, "\n".join(messages(instance, child.run_id)[-25:])
    assert child.tags.get("dagster/retry_number") == "1"
    assert any("Reattached to work job" in m for m in messages(instance, child.run_id))
    assert launches(tmp_path) == 1, "the retry followed the job still running: one remote job"
