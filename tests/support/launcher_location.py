"""A small code location for tests/integration/test_launcher.py only (the project's location carries no test jobs).

`quick`: one trivial op. `remote_sleep_job`: one asset that runs `tests.support.sleepy` through the real
compute driver (`ComputeBackend.run`), so interrupting the run exercises the cancel-on-interrupt path.
Resources are configured at launch (run config), so tests choose their own temporary directories.
"""

import dagster as dg

from resources.compute import ComputeBackend, LocalProcessBackend, WorkloadRequest, idempotency_key
from resources.storage import LocalObjectStore, ObjectStore


@dg.op
def hello() -> int:
    return 1


@dg.job(executor_def=dg.in_process_executor)
def quick() -> None:
    hello()


class SleepConfig(dg.Config):
    ledger: str
    seconds: float = 60.0


@dg.asset
def remote_sleep(
    context: dg.AssetExecutionContext, config: SleepConfig, compute: ComputeBackend, storage: ObjectStore
) -> dg.MaterializeResult:
    request = WorkloadRequest(
        task="work",
        idempotency_key=idempotency_key(context, "work"),
        inputs={},
        outputs={"out": "results/x"},
        params={"ledger": config.ledger, "seconds": config.seconds},
    )
    result = compute.run(context, request, storage)
    return dg.MaterializeResult(metadata={"job": result.job_id})


remote_sleep_job = dg.define_asset_job(
    "remote_sleep_job", selection=[remote_sleep], executor_def=dg.in_process_executor
)

defs = dg.Definitions(
    assets=[remote_sleep],
    jobs=[quick, remote_sleep_job],
    resources={
        "compute": LocalProcessBackend.configure_at_launch(),
        "storage": LocalObjectStore.configure_at_launch(),
    },
)
