"""Helpers shared by the remote compute backends' tests (Azure Batch, AzureML v1 and v2): a blob container
of its own on Azurite, a failed step's error text, and a Dagster interrupt while the remote job runs."""

from __future__ import annotations

import uuid

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError

from resources.compute import JobState, JobStatus
from resources.storage import AzureBlobObjectStore


def new_blob_store(azurite: dict[str, str], prefix: str = "t") -> AzureBlobObjectStore:
    """A store over a new container (`prefix` + 16 random hex digits) in the Azurite emulator."""
    return AzureBlobObjectStore(
        container=f"{prefix}{uuid.uuid4().hex[:16]}", connection_string=azurite["connection_string"]
    )


def error_text(result: dg.ExecuteInProcessResult) -> str:
    """The error (with its causes) of the first failed step of `result`."""
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    return failure.to_string()


def interrupt_if_running(status: JobStatus) -> JobStatus:
    """`status`, unless the remote job is running: then the Dagster run is terminated (as on interrupt)."""
    if status.state is JobState.RUNNING:
        raise DagsterExecutionInterruptedError()
    return status
