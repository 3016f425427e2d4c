"""WarmRunLauncher: runs start as forks of a warm process; terminate, health checks and fallback.

Runs are launched with `instance.launch_run` against a real code server (a WorkspaceProcessContext,
as the daemon uses) on a temporary SQLite instance configured with the launcher, for a test-only code
location (tests/support/launcher_location.py). Termination and health checks go through a *second* instance
object whose launcher never launched anything: they work from the run's tags alone, as they must
from the webserver or another daemon process.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.launcher.base import WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from instance_plugins.run_worker import WORKER_TAG, worker_alive
from instance_plugins.warm_launcher import WarmRunLauncher
from resources.compute import JobState, LocalProcessBackend

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCATION = "launcher_test"


def launcher_config(*modules: str) -> dict[str, Any]:
    return {
        "run_launcher": {
            "module": "instance_plugins.warm_launcher",
            "class": "WarmRunLauncher",
            "config": {"preload_modules": ["dagster", *modules]},
        }
    }


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dg.DagsterInstance, WorkspaceProcessContext]]:
    home = tmp_path_factory.mktemp("home")
    with dg.instance_for_test(
        temp_dir=str(home), overrides=launcher_config("tests.support.launcher_location")
    ) as instance:
        target = ModuleTarget("tests.support.launcher_location", None, str(PROJECT_ROOT), LOCATION)
        with WorkspaceProcessContext(instance, target) as context:
            yield instance, context


def launch(
    instance: dg.DagsterInstance, context: WorkspaceProcessContext, job: str, run_config: dict[str, Any] | None = None,
    location: str = LOCATION,
) -> str:  # fmt: skip
    workspace = context.create_request_context()
    code_location = workspace.get_code_location(location)
    repository = next(iter(code_location.get_repositories().values()))
    remote_job = repository.get_full_job(job)
    job_def = code_location_job_def(location, job)
    run = instance.create_run_for_job(
        job_def=job_def,
        run_config=run_config,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
    )
    instance.launch_run(run.run_id, workspace)
    return run.run_id


def code_location_job_def(location: str, job: str) -> dg.JobDefinition:
    import importlib

    module = importlib.import_module("tests.support.launcher_location" if location == LOCATION else location)
    return module.defs.resolve_job_def(job)


def wait_finished(instance: dg.DagsterInstance, run_id: str, timeout: float = 90) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        if run.is_finished:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s: {messages(instance, run_id)[-10:]}")


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [e.message or "" for e in instance.all_logs(run_id)]


def sleep_config(tmp_path: Path, seconds: float = 60) -> dict[str, Any]:
    return {
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


def other_process_view(instance: dg.DagsterInstance) -> dg.DagsterInstance:
    """A second instance (and launcher) on the same storage, as the webserver would have."""
    return dg.DagsterInstance.from_ref(instance.get_ref())


def test_run_starts_warm_and_succeeds(site: tuple[dg.DagsterInstance, WorkspaceProcessContext]) -> None:
    instance, context = site
    assert isinstance(instance.run_launcher, WarmRunLauncher)
    # The first launch starts the warm process; the second is a plain fork.
    first = launch(instance, context, "quick")
    assert wait_finished(instance, first).status == dg.DagsterRunStatus.SUCCESS, messages(instance, first)
    assert any("Started the warm process (first launch)" in m for m in messages(instance, first))
    started = time.monotonic()
    run_id = launch(instance, context, "quick")
    run = wait_finished(instance, run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS, messages(instance, run_id)
    assert WORKER_TAG in run.tags and GRPC_INFO_TAG not in run.tags
    worker = json.loads(run.tags[WORKER_TAG])
    assert worker["pid"] != os.getpid()
    logs = messages(instance, run_id)
    assert not any("Started the warm process" in m for m in logs), "the second launch reuses it"
    assert any(f"Started process for run (pid: {worker['pid']})" in m for m in logs)
    stats = instance.get_run_stats(run_id)
    assert stats.start_time is not None
    print(f"warm launch -> finished in {time.monotonic() - started:.2f} s")


def test_terminate_from_another_launcher_cancels_remote_job(
    site: tuple[dg.DagsterInstance, WorkspaceProcessContext], tmp_path: Path
) -> None:
    instance, context = site
    run_id = launch(instance, context, "remote_sleep_job", sleep_config(tmp_path))
    wait_for(lambda: (tmp_path / "ledger").exists(), 60, "the workload to start")

    with other_process_view(instance) as webserver:
        assert webserver.run_launcher.terminate(run_id) is True

    run = wait_finished(instance, run_id)
    assert run.status == dg.DagsterRunStatus.CANCELED, messages(instance, run_id)[-10:]
    logs = messages(instance, run_id)
    # The step's interrupt path ran: it cancelled the workload job.
    assert any("Dagster run interrupted: cancelling job" in m for m in logs), logs[-10:]
    (job_dir,) = (tmp_path / "compute" / "jobs").iterdir()
    status = LocalProcessBackend(work_dir=str(tmp_path / "compute")).status(job_dir.name)
    assert status.state is JobState.CANCELED


def test_killed_worker_is_marked_failed_by_run_monitoring(
    site: tuple[dg.DagsterInstance, WorkspaceProcessContext], tmp_path: Path
) -> None:
    instance, context = site
    run_id = launch(instance, context, "remote_sleep_job", sleep_config(tmp_path))
    wait_for(lambda: (tmp_path / "ledger").exists(), 60, "the workload to start")
    backend = LocalProcessBackend(work_dir=str(tmp_path / "compute"))
    try:
        with other_process_view(instance) as daemon:
            run = daemon.get_run_by_id(run_id)
            assert run is not None and run.status == dg.DagsterRunStatus.STARTED
            assert daemon.run_launcher.check_run_worker_health(run).status is WorkerStatus.RUNNING

            worker = json.loads(run.tags[WORKER_TAG])
            os.kill(worker["pid"], signal.SIGKILL)
            wait_for(lambda: not worker_alive(worker["pid"], worker["start"]), 10, "the worker to die")

            health = daemon.run_launcher.check_run_worker_health(run)
            assert health.status is WorkerStatus.FAILED, health
            (record,) = daemon.get_run_records(dg.RunsFilter(run_ids=[run_id]))
            with context.create_request_context() as workspace:
                monitor_started_run(daemon, workspace, record, logging.getLogger("test"))
            run = daemon.get_run_by_id(run_id)
            assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
            assert any("exited without finishing the run" in m for m in messages(daemon, run_id))
    finally:  # the killed worker could not cancel its workload: do it here
        for job_dir in (tmp_path / "compute" / "jobs").iterdir():
            backend.cancel(job_dir.name)


def test_changed_code_restarts_the_warm_process_and_broken_import_falls_back(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    module = code / "warm_loc.py"
    out = tmp_path / "out.txt"

    def write(version: str, extra: str = "") -> None:
        module.write_text(
            "import dagster as dg\n"
            f"{extra}\n"
            "@dg.op\n"
            f"def mark() -> None:\n    open({str(out)!r}, 'w').write({version!r})\n"
            "@dg.job(executor_def=dg.in_process_executor)\n"
            "def marker() -> None:\n    mark()\n"
            "defs = dg.Definitions(jobs=[marker])\n"
        )
        if version == "v1":  # older than the warm process by more than the launcher's safety margin
            past = time.time() - 10
            os.utime(module, (past, past))

    write("v1")
    (tmp_path / "home").mkdir()
    with (
        dg.instance_for_test(
            temp_dir=str(tmp_path / "home"), overrides=launcher_config("warm_loc")
        ) as instance,
        WorkspaceProcessContext(instance, ModuleTarget("warm_loc", None, str(code), "warm_loc")) as context,
    ):
        import sys

        sys.path.insert(0, str(code))
        try:
            run_id = launch(instance, context, "marker", location="warm_loc")
            assert wait_finished(instance, run_id).status == dg.DagsterRunStatus.SUCCESS
            assert out.read_text() == "v1"
            assert WORKER_TAG in instance.get_run_by_id(run_id).tags  # type: ignore[union-attr]

            # Changed code: the warm process is replaced, and the run sees the new code.
            write("v2")
            run_id = launch(instance, context, "marker", location="warm_loc")
            assert wait_finished(instance, run_id).status == dg.DagsterRunStatus.SUCCESS
            assert out.read_text() == "v2"
            assert any("warm_loc.py changed" in m for m in messages(instance, run_id))

            # Broken code: the warm process cannot import it, so the code server launches the run
            # (which then fails to load the code, exactly as with the default launcher).
            write("v3", extra="import a_module_that_does_not_exist_anywhere")
            run_id = launch(instance, context, "marker", location="warm_loc")
            run = wait_finished(instance, run_id)
            assert GRPC_INFO_TAG in run.tags and WORKER_TAG not in run.tags
            assert any("could not import warm_loc" in m for m in messages(instance, run_id))
        finally:
            sys.path.remove(str(code))
            sys.modules.pop("warm_loc", None)
