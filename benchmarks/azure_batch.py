"""Azure Batch benchmark on the time-scaled contract fake + Azurite (the real azure-batch SDK throughout).

    .venv/bin/python benchmarks/azure_batch.py [--scale 10]

1. Detection lag: a task of 5 s, 60 s and 600 s (simulated); lag from the task's end (as the fake records
   it) to the moment the backend's status poll reports it, and the status requests made (Get Task and Get
   Job), beside ADF's fixed 120 s poll on the same task. Target: lag <= max(2 s, 5 % of the duration) and on
   average <= 1 status request per 10 s on long tasks. Times are simulated seconds: the fake runs `--scale`
   simulated seconds per real second and the backend's poll intervals are scaled the same way.
2. Pool-minutes left running after a failed and after a cancelled run, for each pool mode: node-minutes
   billed from the moment the run ended, counted one simulated hour later. Target with `ephemeral`: 0 left
   running (the auto pool is deleted with its job; what is billed is the deletion itself).
Not a test: it reports.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]

from resources.compute.base import JobState, WorkloadRequest  # noqa: E402
from resources.compute.batch_tasks import AzureBatchBackend  # noqa: E402
from resources.storage import AzureBlobObjectStore  # noqa: E402
from tests.support.azurite import run_azurite  # noqa: E402
from tests.support.fakes.azure_batch import BatchFake  # noqa: E402

SLEEPY = PROJECT_ROOT / "tests" / "support" / "sleepy"  # stdlib only: starts in milliseconds
ADF_POLL = 120.0
WINDOW = 180.0  # simulated seconds watched after a run ends
STATUS_OPS = ("Tasks_GetTask", "Jobs_GetJob")


def backend(fake: BatchFake, scale: float, **overrides: Any) -> AzureBatchBackend:
    return AzureBatchBackend(
        account_url=fake.url,
        account_name=fake.account_name,
        account_key=fake.account_key,
        pool_id=f"bench{uuid.uuid4().hex[:6]}",
        package_dir=str(SLEEPY),
        start_command="echo {requirements}",
        # The shipped polling policy, in simulated seconds.
        poll_initial_seconds=2.0 / scale,
        poll_max_seconds=60.0 / scale,
        backoff_seconds=0.01,
        lro_polling_seconds=0,
        **overrides,
    )


def request(params: dict[str, Any]) -> WorkloadRequest:
    return WorkloadRequest(
        task="work", idempotency_key=uuid.uuid4().hex, inputs={}, outputs={"out": "bench/out"}, params=params
    )


def status_requests(fake: BatchFake, since: float, until: float) -> int:
    return sum(1 for r in fake.requests() if r.operation in STATUS_OPS and since <= r.at <= until)


def detection_lag(
    fake: BatchFake, store: AzureBlobObjectStore, scale: float, seconds: float, tmp: Path
) -> dict[str, float]:
    b = backend(fake, scale, pool_mode="persistent")
    b.pools().ensure()
    while not all(p.start_task_ok for p in fake.all_pools() if p.id == b.pools().name()):
        time.sleep(0.02)  # measure the task, not the pool's first allocation
    job_id = b.submit(request({"ledger": str(tmp / "ledger"), "seconds": seconds / scale}), store, {})
    submitted = fake.now()
    status = b.status(job_id)
    for interval in b.poll_intervals():
        status = b.wait(job_id, interval)
        if status.state.terminal:
            break
    noticed = fake.now()
    assert status.state is JobState.SUCCEEDED, status.message
    task = fake.jobs[job_id].tasks["workload"]
    assert task.end_time is not None and task.start_time is not None
    ended = task.end_time
    # ADF polls every 120 s from submission: it notices at the first poll after the end.
    adf_noticed = submitted + math.ceil((ended - submitted) / ADF_POLL) * ADF_POLL
    return {
        "duration": ended - task.start_time,
        "lag": noticed - ended,
        "requests": status_requests(fake, submitted, noticed),
        "elapsed": noticed - submitted,
        "adf_lag": adf_noticed - ended,
        "adf_requests": math.ceil((ended - submitted) / ADF_POLL),
    }


def left_running(
    fake: BatchFake, store: AzureBlobObjectStore, scale: float, mode: str, outcome: str, tmp: Path
) -> tuple[float, float]:
    """(node-minutes billed while the pool stops, node-minutes per hour still billing afterwards)."""
    b = backend(fake, scale, pool_mode=mode)
    before = {p.id for p in fake.all_pools()}
    params: dict[str, Any] = {"ledger": str(tmp / "ledger"), "seconds": 600 / scale}
    if outcome == "failed":
        params = {**params, "seconds": 1 / scale, "fail": 1}
    job_id = b.submit(request(params), store, {})
    for interval in b.poll_intervals():
        status = b.wait(job_id, interval)
        if outcome == "cancelled" and status.state is JobState.RUNNING:
            b.cancel(job_id)  # what the driver does when the Dagster run is cancelled
        if status.state.terminal:
            break
    b.release(None)  # the driver's `finally`
    pools = {p.id for p in fake.all_pools()} - before
    billed_before = sum(fake.billed_node_minutes(p) for p in pools)
    time.sleep(WINDOW / scale)  # long enough for a pool deletion (120 s) to finish
    billed = sum(fake.billed_node_minutes(p) for p in pools) - billed_before
    nodes_now = sum(p.current for p in fake.all_pools() if p.id in pools and p.deleted_at is None)
    return round(billed, 1), float(nodes_now * 60)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scale", type=float, default=10.0, help="simulated seconds per real second (lag part)"
    )
    args = parser.parse_args()
    scale = args.scale
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for sub in ("azurite", "fake", "fake2"):
            (tmp / sub).mkdir()
        with run_azurite(tmp / "azurite") as info:
            store = AzureBlobObjectStore(container="bench", connection_string=info["connection_string"])
            with BatchFake(
                tmp / "fake", time_scale=scale, resize_seconds=60, pool_delete_seconds=120
            ) as fake:
                print(
                    f"Azure Batch on the contract fake, {scale:g} simulated s per real s (times in simulated s)\n"
                )
                print(
                    "| task | lag | target | status requests | per 10 s | ADF 120 s poll: lag | ADF requests |"
                )
                print("| --- | --- | --- | --- | --- | --- | --- |")
                for seconds in (5.0, 60.0, 600.0):
                    r = detection_lag(fake, store, scale, seconds, tmp)
                    target = max(2.0, 0.05 * seconds)
                    print(
                        f"| {seconds:g} s (ran {r['duration']:.1f} s) | {r['lag']:.1f} s | <= {target:g} s | "
                        f"{r['requests']:.0f} | {10 * r['requests'] / max(r['elapsed'], 1):.2f} | "
                        f"{r['adf_lag']:.1f} s | {r['adf_requests']:.0f} |",
                        flush=True,
                    )
            with BatchFake(
                tmp / "fake2", time_scale=60.0, resize_seconds=60, pool_delete_seconds=120
            ) as fake:
                print(
                    "\nAfter the run ended (1-node pools; a pool deletion takes 120 s): node-minutes billed while "
                    f"stopping in the next {WINDOW:g} s, and node-minutes per hour still billing after that\n"
                )
                print(
                    "| pool mode | failed: while stopping | failed: left running (/h) "
                    "| cancelled: while stopping | cancelled: left running (/h) |"
                )
                print("| --- | --- | --- | --- | --- |")
                for mode in ("ephemeral", "scale_to_zero", "persistent"):
                    f_stop, f_left = left_running(fake, store, 60.0, mode, "failed", tmp)
                    c_stop, c_left = left_running(fake, store, 60.0, mode, "cancelled", tmp)
                    print(f"| {mode} | {f_stop:g} | {f_left:g} | {c_stop:g} | {c_left:g} |", flush=True)


if __name__ == "__main__":
    main()
