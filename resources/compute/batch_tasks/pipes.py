"""Dagster Pipes over Azure Blob for Batch tasks (dagster-azure's context injector and message reader).

The task finds the Pipes container through `WORKLOAD_PIPES_BLOB_URL` (a container-scoped SAS URL, see
workload/report.py). A step that reattaches to a task still running reads the messages where that task
writes them, so reattaching loses none of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import dagster as dg

from resources.storage import AzureBlobObjectStore

from .config import AzureBatchConfig
from .node_access import container_sas_url


@contextlib.contextmanager
def blob_pipes_session(
    context: dg.AssetExecutionContext,
    config: AzureBatchConfig,
    store: AzureBlobObjectStore,
    live_task_params: dict[str, Any] | None,
) -> Iterator[dg.PipesSession]:
    """A Pipes session over the store's account; `live_task_params`: the message params of a task still
    running for this step (None: a fresh message prefix)."""
    from dagster_azure.pipes import (
        PipesAzureBlobStorageContextInjector,
        PipesAzureBlobStorageMessageReader,
    )
    from dagster_pipes import PipesParams

    class Reader(PipesAzureBlobStorageMessageReader):
        """Reads where a task already launched writes (after a reattach), else at a fresh prefix."""

        @contextlib.contextmanager
        def get_params(self) -> Iterator[PipesParams]:
            if live_task_params is not None:
                yield live_task_params
                return
            with super().get_params() as params:
                yield params

    service = store.service_client()
    with contextlib.suppress(Exception):
        service.create_container(config.pipes_container)
    with dg.open_pipes_session(
        context=context,
        context_injector=PipesAzureBlobStorageContextInjector(
            container=config.pipes_container, client=service
        ),
        message_reader=Reader(
            interval=config.pipes_interval_seconds, container=config.pipes_container, client=service
        ),
    ) as session:
        yield session


def pipes_env(config: AzureBatchConfig, store: AzureBlobObjectStore) -> dict[str, str]:
    """How the task reaches the Pipes container: its URL with a container-scoped SAS, and the write interval."""
    url = f"{store.service_client().url.rstrip('/')}/"
    sas = container_sas_url(store, config.pipes_container, "rcwd", config.sas_hours).partition("?")[2]
    return {
        "WORKLOAD_PIPES_BLOB_URL": f"{url}?{sas}" if sas else url,
        "WORKLOAD_PIPES_INTERVAL": str(config.pipes_interval_seconds),
    }


def task_pipes_params(task: Any) -> dict[str, Any] | None:
    """The Pipes message params a launched task was given (from its environment settings), if any."""
    from dagster_pipes import DAGSTER_PIPES_MESSAGES_ENV_VAR, decode_param

    for setting in (task.environment_settings if task is not None else None) or []:
        if setting.name == DAGSTER_PIPES_MESSAGES_ENV_VAR and setting.value:
            return dict(decode_param(setting.value))
    return None
