"""The pool lifecycle of the Azure Batch backend, per pool mode.

- `persistent`: a named pool, always on.
- `scale_to_zero`: a named pool resized to 0 nodes when no job of ours is active (or an autoscale formula).
- `ephemeral`: a Batch auto pool that lives and dies with the job, so even a crashed orchestrator leaves
  nothing billing once the task ends.
A named pool's id is the configured prefix plus a hash of its spec, so a pool with another VM size, image
or requirements is never reused by mistake.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shlex
from datetime import timedelta
from typing import Any

from resources.azure.errors import AzureCallError, PermanentAzureError, TransientAzureError
from resources.azure.retry import Backoff, wait_until

from .client import BatchService
from .config import AzureBatchConfig
from .task_spec import duration, requirements

OWNER_KEY = "created-by"
OWNER = "mnist-orchestration"
OWNER_METADATA = [{"name": OWNER_KEY, "value": OWNER}]
# Batch ids: letters, digits, hyphens and underscores, at most 64 characters.
ID_OK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# What `ensure` finds when it created the pool itself (a new pool already has its target node count).
CREATED = object()


class Pools:
    """Creates, resizes and releases the pools the backend's jobs run on; remembers the pools it readied."""

    def __init__(self, config: AzureBatchConfig, service: BatchService) -> None:
        self.config = config
        self.service = service
        self.ready: set[str] = set()

    def spec(self) -> dict[str, Any]:
        """The pool the workload needs (VM size, image, start task installing its requirements)."""
        c = self.config
        quoted = " ".join(shlex.quote(r) for r in requirements(c))
        spec: dict[str, Any] = {
            "vmSize": c.vm_size,
            "virtualMachineConfiguration": {
                "imageReference": {
                    "publisher": c.image_publisher,
                    "offer": c.image_offer,
                    "sku": c.image_sku,
                    "version": "latest",
                },
                "nodeAgentSKUId": c.node_agent_sku_id,
            },
            "startTask": {
                "commandLine": "/bin/bash -c "
                + shlex.quote(c.start_command.replace("{requirements}", quoted)),
                "waitForSuccess": True,
                "maxTaskRetryCount": 2,
                "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "admin"}},
            },
            "taskSlotsPerNode": 1,
        }
        if c.autoscale_formula:
            spec["enableAutoScale"] = True
            spec["autoScaleFormula"] = c.autoscale_formula
            spec["autoScaleEvaluationInterval"] = duration(timedelta(minutes=c.autoscale_interval_minutes))
        else:
            spec["targetDedicatedNodes"] = c.node_count
        return spec

    def name(self) -> str:
        """The named pool of the persistent and scale-to-zero modes: the prefix plus a hash of its spec."""
        digest = hashlib.sha256(json.dumps(self.spec(), sort_keys=True).encode()).hexdigest()[:10]
        name = f"{self.config.pool_id}-{digest}"
        if not ID_OK.match(name):
            raise PermanentAzureError(
                f"MNIST_AZBATCH_POOL_ID {self.config.pool_id!r} makes an invalid pool id {name!r}: use at most "
                "53 letters, digits, hyphens or underscores"
            )
        return name

    def info(self) -> dict[str, Any]:
        """The job's `poolInfo`: an auto pool (ephemeral mode), else the named pool, made ready."""
        if self.config.pool_mode == "ephemeral":
            return {
                "autoPoolSpecification": {
                    "autoPoolIdPrefix": self.config.pool_id[:20],
                    # The pool is created with the job and deleted by Batch when the job completes (or is
                    # terminated): nothing keeps billing after a failed or cancelled run.
                    "poolLifetimeOption": "job",
                    "keepAlive": False,
                    "pool": {**self.spec(), "metadata": OWNER_METADATA},
                }
            }
        return {"poolId": self.ensure()}

    def ensure(self) -> str:
        """Make sure the named pool exists and, when it scales to zero between runs, has nodes coming."""
        from azure.batch import models  # noqa: TID251 (lazy: only when Batch is used)

        c, client = self.config, self.service.client
        pool_id = self.name()

        def usable() -> Any:
            """The pool once it exists and is not being deleted; creates it when it is missing."""
            pool = self.service.get("get_pool", client.get_pool, pool_id)
            if pool is not None:
                return None if pool.state == "deleting" else pool
            body = {"id": pool_id, **self.spec(), "metadata": OWNER_METADATA}
            try:
                self.service.call(
                    "create_pool",
                    client.create_pool,
                    models.BatchPoolCreateOptions(body),
                    exists_ok=("PoolExists",),
                )
            except AzureCallError as exc:
                if exc.code != "PoolBeingDeleted":
                    raise
                return None
            return CREATED

        # A pool being deleted (by a cleanup, another run or an operator) blocks its id until the deletion
        # finishes: wait for it rather than failing the run.
        waits = Backoff(c.backoff_seconds, c.backoff_max_seconds, seconds=c.pool_delete_wait_seconds)
        pool = wait_until(usable, waits)
        if pool is None:
            raise TransientAzureError(
                f"pool {pool_id} was still being deleted after {c.pool_delete_wait_seconds:.0f} s; "
                "wait for the deletion to finish or set another MNIST_AZBATCH_POOL_ID"
            )
        if (
            pool is not CREATED
            and c.pool_mode == "scale_to_zero"
            and not pool.enable_auto_scale
            and (pool.target_dedicated_nodes or 0) < c.node_count
        ):
            self.resize(pool_id, c.node_count)
        self.ready.add(pool_id)
        return pool_id

    def resize(self, pool_id: str, nodes: int) -> None:
        """Set the pool's target; a resize already under way (PoolNotSteady) is stopped first so this one wins."""
        from azure.batch import models  # noqa: TID251 (lazy: only when Batch is used)

        c, client = self.config, self.service.client

        def resized() -> bool | None:
            try:
                self.service.call(
                    "resize_pool",
                    client.begin_resize_pool,
                    pool_id,
                    models.BatchPoolResizeOptions(
                        target_dedicated_nodes=nodes,
                        node_deallocation_option="taskcompletion" if nodes == 0 else None,
                    ),
                    polling_interval=c.lro_polling_seconds,
                )  # the resize carries on server-side; nothing to wait for
                return True
            except AzureCallError as exc:
                if exc.code != "PoolNotSteady":
                    raise
            stop = self.service.call(
                "stop_pool_resize",
                client.begin_stop_pool_resize,
                pool_id,
                polling_interval=c.lro_polling_seconds,
            )
            if stop is not None:
                with contextlib.suppress(Exception):
                    stop.result(timeout=30)
            return None

        # Up to ten tries with no sleep between them: stopping the resize under way (above) is the wait.
        # A pool that never steadies keeps its target (the queue check reports it).
        wait_until(resized, Backoff(0.0, 0.0, attempts=9))

    def release(self, log: Any = None) -> None:
        """Scale-to-zero mode: resize the pools readied here to 0 nodes when no active job of ours uses them."""
        c = self.config
        if c.pool_mode != "scale_to_zero" or c.autoscale_formula or not self.ready:
            return
        client = self.service.client
        for pool_id in sorted(self.ready):
            active = self.service.call(
                "list_jobs", lambda: list(client.list_jobs(filter="state eq 'active'"))
            )
            if any(j.pool_info is not None and j.pool_info.pool_id == pool_id for j in active or []):
                continue
            pool = self.service.get("get_pool", client.get_pool, pool_id)
            if pool is not None and pool.state == "active" and (pool.target_dedicated_nodes or 0) > 0:
                self.resize(pool_id, 0)
                if log is not None:
                    log.info(
                        f"Pool {pool_id} scaled to 0 nodes (no active jobs): it costs nothing while idle"
                    )

    def delete(self, pool_id: str) -> None:
        self.service.get(
            "delete_pool",
            self.service.client.begin_delete_pool,
            pool_id,
            polling_interval=self.config.lro_polling_seconds,
        )

    def queue_problem(self, job_id: str) -> str | None:
        """Why a job's queued task can never start (its pool is gone, cannot get nodes, or its start task
        failed on every node), if so. A named pool scaled down under the task is given its nodes back."""
        c, client = self.config, self.service.client
        job = self.service.get("get_job", client.get_job, job_id)
        pool_id = job.execution_info.pool_id if job is not None and job.execution_info else None
        if not pool_id:
            return None
        pool = self.service.get("get_pool", client.get_pool, pool_id)
        if pool is None or pool.state == "deleting":
            return f"pool {pool_id} of job {job_id} is gone or being deleted"
        if pool.resize_errors:
            errors = "; ".join(f"{e.code}: {e.message}" for e in pool.resize_errors)
            return f"pool {pool_id} cannot get nodes ({errors}); check the VM size, quota and image settings"
        if (
            c.pool_mode == "scale_to_zero"
            and not pool.enable_auto_scale
            and pool.allocation_state == "steady"
            and (pool.target_dedicated_nodes or 0) == 0
        ):
            # Another step scaled the pool down between our submit and the start of our task.
            self.resize(pool_id, c.node_count)
            return None
        nodes = self.service.call("list_nodes", lambda: list(client.list_nodes(pool_id))) or []
        if nodes and all(n.state == "starttaskfailed" for n in nodes):
            info = nodes[0].start_task_info
            exit_code = info.exit_code if info is not None else None
            return (
                f"the start task failed on every node of pool {pool_id} (exit code {exit_code}): the workload's "
                "requirements could not be installed; see the node's startup/stderr.txt, check "
                "workload/requirements.txt and the image (MNIST_AZBATCH_IMAGE)"
            )
        return None
