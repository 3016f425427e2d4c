"""Azure Batch compute: workload tasks as Batch jobs on a pool (azure-batch, imported lazily).

Modules by concern: `config` (settings), `client` (the account's client, retries, errors), `backend`
(the job protocol), `pools` (pool lifecycle), `task_spec` (workload package and task), `node_access`
(SAS URLs for nodes), `pipes` (Dagster Pipes over Blob).
"""

from resources.compute.batch_tasks.backend import AzureBatchBackend
from resources.compute.batch_tasks.client import AzureBatchError
from resources.compute.batch_tasks.config import POOL_MODES, PoolMode

__all__ = ["POOL_MODES", "AzureBatchBackend", "AzureBatchError", "PoolMode"]
