"""Progress reporting: through Dagster Pipes when launched by Dagster, else plain stderr lines."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, Protocol


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
def reporter() -> Iterator[Reporter]:
    try:
        from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes
    except ImportError:  # remote compute without dagster-pipes installed
        yield _StderrReporter()
        return
    if not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        yield _StderrReporter()
        return
    with open_dagster_pipes(**_blob_channels()) as pipes:
        yield _PipesReporter(pipes)
