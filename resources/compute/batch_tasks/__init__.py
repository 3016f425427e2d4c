"""Azure Batch compute: workload tasks as Batch jobs on a pool (azure-batch, imported lazily)."""

from resources.compute.batch_tasks.backend import POOL_MODES, AzureBatchBackend
from resources.compute.batch_tasks.calls import AzureBatchError

__all__ = ["POOL_MODES", "AzureBatchBackend", "AzureBatchError"]
