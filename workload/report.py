"""Progress reporting: through Dagster Pipes when launched by Dagster, else plain stderr lines."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any, Protocol

from .failure import failure_record, report_failure


class Reporter(Protocol):
    def info(self, message: str) -> None: ...
    def metric(self, **values: Any) -> None: ...


class _StderrReporter:
    def info(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def metric(self, **values: Any) -> None:
        print("metrics: " + ", ".join(f"{k}={v}" for k, v in values.items()), file=sys.stderr, flush=True)


class _PipesReporter:
    def __init__(self, pipes: Any) -> None:
        self._pipes = pipes

    def info(self, message: str) -> None:
        self._pipes.log.info(message)

    def metric(self, **values: Any) -> None:
        self._pipes.report_custom_message({"metrics": values})
        self._pipes.log.info("metrics: " + ", ".join(f"{k}={v}" for k, v in values.items()))


def _blob_channels() -> dict[str, Any]:
    """Pipes over Azure Blob (remote compute such as Azure Batch), when WORKLOAD_PIPES_BLOB_URL is set.

    The URL is the storage account's blob endpoint, with a container-scoped SAS when the node has no
    managed identity; without a SAS the node's identity is used (DefaultAzureCredential).
    """
    url = os.environ.get("WORKLOAD_PIPES_BLOB_URL")
    if not url:
        return {}
    from azure.storage.blob import BlobServiceClient
    from dagster_pipes import PipesAzureBlobStorageContextLoader, PipesAzureBlobStorageMessageWriter

    if "?" in url:
        client = BlobServiceClient(account_url=url)
    else:
        from azure.identity import DefaultAzureCredential

        client = BlobServiceClient(account_url=url, credential=DefaultAzureCredential())
    interval = float(os.environ.get("WORKLOAD_PIPES_INTERVAL", "2"))
    return {
        "context_loader": PipesAzureBlobStorageContextLoader(client),
        "message_writer": PipesAzureBlobStorageMessageWriter(client, interval=interval),
    }


@contextlib.contextmanager
def _explaining_failures(pipes: Any | None) -> Iterator[None]:
    """On an error the workload can explain (a bad input file): print its traceback, then send its
    failure record (workload.failure) through Pipes and as the last stderr line, and re-raise it marked
    as reported, so `python -m workload` does not print the traceback a second time."""
    try:
        yield
    except Exception as error:
        if failure_record(error) is not None:
            traceback.print_exc()
            report_failure(error, pipes)
            error.workload_failure_reported = True  # type: ignore[attr-defined]
        raise


@contextlib.contextmanager
def reporter() -> Iterator[Reporter]:
    try:
        from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes
    except ImportError:  # remote compute without dagster-pipes installed
        with _explaining_failures(None):
            yield _StderrReporter()
        return
    if not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        with _explaining_failures(None):
            yield _StderrReporter()
        return
    with open_dagster_pipes(**_blob_channels()) as pipes, _explaining_failures(pipes):
        yield _PipesReporter(pipes)
