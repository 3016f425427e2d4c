from .base import (
    ComputeBackend,
    JobState,
    JobStatus,
    WorkloadFailed,
    WorkloadRequest,
    WorkloadResult,
    idempotency_key,
)
from .local_process import LocalProcessBackend

__all__ = [
    "ComputeBackend",
    "JobState",
    "JobStatus",
    "LocalProcessBackend",
    "WorkloadFailed",
    "WorkloadRequest",
    "WorkloadResult",
    "idempotency_key",
]
