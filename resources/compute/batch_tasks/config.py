"""What the Azure Batch backend is configured with: the account, the pool, delivery, polling, retries."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from resources.compute.base import ComputeBackend

PoolMode = Literal["persistent", "scale_to_zero", "ephemeral"]
POOL_MODES: tuple[str, ...] = ("persistent", "scale_to_zero", "ephemeral")

# Installs the workload's requirements on every node as it joins the pool (the ADF reference does the
# same with its start task). `{requirements}` is replaced by the quoted lines of workload/requirements.txt,
# so no SAS URL is baked into a long-lived pool.
DEFAULT_START_COMMAND = (
    "set -eu; command -v pip3 >/dev/null || (apt-get update -qq && "
    "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip); "
    "printf '%s\\n' {requirements} > requirements.txt; "
    "python3 -m pip install --quiet --break-system-packages -r requirements.txt"
)


class AzureBatchConfig(ComputeBackend):
    """The settings of `AzureBatchBackend` (see there); the modules of this package read them from here.

    Credentials: `account_key` (shared key, from `AZURE_BATCH_ACCOUNT_KEY` via `dg.EnvVar`) with
    `account_name`, else Entra ID: `DefaultAzureCredential`, or the factory `credential` names
    ("python:module:attr"). Nodes reach Blob with SAS URLs made from the storage credential (an account
    key, a SAS token, or a user delegation key for Entra ID).
    """

    account_url: str
    account_name: str | None = None
    account_key: str | None = Field(default=None, repr=False)  # secret: from AZURE_BATCH_ACCOUNT_KEY
    credential: str = "default"
    allow_http_loopback: bool = False  # a bearer token over http, to 127.0.0.1 only: the contract fake
    pool_id: str = "mnist-workload"
    vm_size: str = "standard_d2s_v3"
    image_publisher: str = "canonical"
    image_offer: str = "ubuntu-24_04-lts"
    image_sku: str = "server"
    node_agent_sku_id: str = "batch.node.ubuntu 24.04"
    node_count: int = 1
    autoscale_formula: str | None = None
    autoscale_interval_minutes: int = 5
    pool_mode: PoolMode = "scale_to_zero"
    job_retention_hours: float = 24.0
    task_max_wall_clock_hours: float = 24.0
    start_command: str = DEFAULT_START_COMMAND
    python: str = "python3"
    package_dir: str | None = None  # the workload package to deliver (default: this project's workload/)
    pipes_container: str = "dagster-pipes"
    pipes_interval_seconds: float = 1.0
    sas_hours: float = 48.0
    pool_delete_wait_seconds: float = 900.0
    # Requests: azure-core's retry policy retries transient failures `call_attempts - 1` times (the first
    # at once, then backoff_seconds doubling up to backoff_max_seconds, or the service's Retry-After);
    # waiting for a pool being deleted uses the same bounds.
    request_timeout_seconds: float = 30.0
    call_attempts: int = 6
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 30.0
    lro_polling_seconds: int = 5
    # Status polling: each wait is `poll_fraction` of the task's age, at least poll_initial_seconds and at
    # most poll_max_seconds, so a task is noticed within max(2 s, 5 % of its duration) with few requests.
    poll_initial_seconds: float = 2.0
    poll_max_seconds: float = 60.0
    poll_growth: float = 1.0
    poll_fraction: float = 0.05
    # While a task waits in the queue, look at its pool this often: a start task that failed on every node or a
    # resize error would otherwise leave it queued (and an ephemeral pool billing) until maxWallClockTime.
    queue_check_seconds: float = 60.0
