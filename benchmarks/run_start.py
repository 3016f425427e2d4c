"""Run-start benchmark: POST launchRun -> run STARTED, DefaultRunLauncher vs WarmRunLauncher.

    ./run bench-run-start              # 20 launches per launcher (plus one warm-up launch each)
    ./run bench-run-start --launches 5

A real dagster-webserver and dagster-daemon (tests/support/webserver.py) over a temporary DAGSTER_HOME
holding instance/local/dagster.yaml (QueuedRunCoordinator, dequeue every 1 s) with its run_launcher
section replaced: none (Dagster's DefaultRunLauncher: the code server spawns a fresh process per run)
or instance_plugins.warm_launcher.WarmRunLauncher (a fork of a warm, pre-imported process). The job is
`train_model` with an empty MNIST source, so the run fails right after it STARTED (STARTED is what is
measured, and it stays cheap). Launches are sequential: the next one is posted when the previous run
has finished. Prints p50/p95/max of POST -> STARTED and the 1-minute load average before/after.
Not a test: it reports.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]

from tests.support.webserver import dagster_services, graphql  # noqa: E402

LAUNCH = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status startTime endTime } }
}
"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
WARM = {
    "module": "instance_plugins.warm_launcher",
    "class": "WarmRunLauncher",
    "config": {"preload_modules": ["dagster", "orchestration.definitions"]},
}


def instance_yaml(launcher: dict[str, Any] | None) -> str:
    config = yaml.safe_load((PROJECT_ROOT / "instance" / "local" / "dagster.yaml").read_text())
    config.pop("run_launcher", None)
    if launcher:
        config["run_launcher"] = launcher
    return yaml.safe_dump(config)


def one_launch(url: str) -> tuple[float, str]:
    params = {
        "selector": {
            "repositoryLocationName": "mnist",
            "repositoryName": "__repository__",
            "jobName": "train_model",
        },
        "runConfigData": {},
    }
    posted = time.time()
    answer = graphql(url, LAUNCH, {"executionParams": params})["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    run_id = answer["run"]["runId"]
    started: float | None = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        run = graphql(url, STATUS, {"runId": run_id})["runOrError"]
        if started is None and run["startTime"]:
            started = run["startTime"]
        if run["status"] in FINISHED:
            break
        time.sleep(0.05)
    else:
        raise TimeoutError(f"run {run_id} did not finish")
    assert started is not None, f"run {run_id} never STARTED ({run['status']})"
    return started - posted, run_id


def measure(name: str, launcher: dict[str, Any] | None, launches: int, work: Path) -> dict[str, Any]:
    home = work / name
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(launcher))
    (work / "empty-source").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "MNIST_", "DAGSTER_"))}
    env.update(
        MNIST_SOURCE=str(work / "empty-source"),
        MNIST_DATA_DIR=str(work / name / "storage"),
        MNIST_WORK_DIR=str(work / name / "compute"),
    )
    with dagster_services(home, env) as services:
        load_before = os.getloadavg()[0]
        first, _ = one_launch(services.graphql_url)  # warm-up: code server / warm process start
        seconds = [one_launch(services.graphql_url)[0] for _ in range(launches)]
        load_after = os.getloadavg()[0]
    seconds.sort()
    return {
        "launcher": name,
        "first": first,
        "p50": statistics.median(seconds),
        "p95": seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))],
        "max": seconds[-1],
        "load": f"{load_before:.1f} -> {load_after:.1f}",
        "n": len(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--launches", type=int, default=20)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-run-start-") as tmp:
        for name, launcher in (("default", None), ("warm", WARM)):
            rows.append(measure(name, launcher, args.launches, Path(tmp)))
            print(f"{name}: done", file=sys.stderr)
    print(f"POST launchRun -> run STARTED, {args.launches} sequential launches each ({os.cpu_count()} CPUs)")
    print(f"{'launcher':10} {'first':>7} {'p50':>7} {'p95':>7} {'max':>7}  load avg (1 min)")
    for r in rows:
        print(
            f"{r['launcher']:10} {r['first']:6.2f}s {r['p50']:6.2f}s {r['p95']:6.2f}s {r['max']:6.2f}s  {r['load']}"
        )


if __name__ == "__main__":
    main()
