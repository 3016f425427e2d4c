"""What the two AzureML backends share: the workspace, its REST clients, the poll schedule, Pipes over logs.

The AzureML datastore named in the settings is the same Blob container as the project's
`AzureBlobObjectStore`: a store prefix `p` is the datastore path `p` (v1 DataPath
`{DataStoreName, RelativePath: p}`, v2 URI `azureml://datastores/<ds>/paths/p`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from resources.azure.credentials import token_credential
from resources.azure.rest import AzureRest
from resources.compute.base import ComputeBackend, JobStatus, WorkloadRequest
from resources.storage import ObjectStore


class AzureMLBackend(ComputeBackend):
    """Configuration shared by the AzureML backends (no client is opened until a job is run)."""

    subscription_id: str
    resource_group: str
    workspace_name: str
    datastore: str = "workspaceblobstore"
    experiment_name: str = "mnist"
    # Credentials: a service principal when client_secret is set (from dg.EnvVar), else
    # DefaultAzureCredential; `credential` may name a factory instead ("python:module:attr").
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    credential: str = "default"
    allow_http_loopback: bool = False  # only for contract fakes on 127.0.0.1
    request_timeout_seconds: float = 60.0
    request_retries: int = 6
    # The poll schedule (see `PollSchedule`): short jobs are noticed within ~2 s, long ones within a few
    # % of their duration.
    poll_initial_seconds: float = 1.0
    poll_growth: float = 1.5
    poll_floor_seconds: float | None = 1.8  # under the 2 s lag target, with room for the request itself
    poll_fraction: float = 0.045
    poll_max_seconds: float = 30.0

    _rest_clients: dict[str, AzureRest] = PrivateAttr(default_factory=dict)
    _last_poll: dict[str, float] = PrivateAttr(default_factory=dict)
    _log_pipes: LogLinePipesReader | None = PrivateAttr(default=None)

    # ---- plumbing ---------------------------------------------------------------------------
    def _rest(self, scope: str | None, service: str) -> AzureRest:
        key = f"{scope}|{service}"
        if key not in self._rest_clients:
            credential = (
                token_credential(
                    self.credential,
                    tenant_id=self.tenant_id,
                    client_id=self.client_id,
                    client_secret=self.client_secret,
                )
                if scope
                else None
            )
            self._rest_clients[key] = AzureRest(
                credential,
                scope,
                service=service,
                allow_http_loopback=self.allow_http_loopback,
                read_timeout=self.request_timeout_seconds,
                retry_total=self.request_retries,
            )
        return self._rest_clients[key]

    @property
    def workspace_path(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace_name}"
        )

    def portal_url(self, run_id: str) -> str:
        wsid = (
            f"/subscriptions/{self.subscription_id}/resourcegroups/{self.resource_group}"
            f"/workspaces/{self.workspace_name}"
        )
        tenant = f"&tid={self.tenant_id}" if self.tenant_id else ""
        return f"https://ml.azure.com/runs/{run_id}?wsid={wsid}{tenant}"

    def datastore_uri(self, prefix: str) -> str:
        return f"azureml://datastores/{self.datastore}/paths/{prefix.strip('/')}/"

    # ---- Dagster Pipes --------------------------------------------------------------------------
    @contextlib.contextmanager
    def pipes_session(
        self, context: dg.AssetExecutionContext, request: WorkloadRequest, store: ObjectStore
    ) -> Iterator[dg.PipesSession]:
        """Pipes messages travel in the job's log lines (`LogLinePipesReader`), fed as the logs are read."""
        reader = LogLinePipesReader()
        self._log_pipes = reader
        try:
            with dg.open_pipes_session(
                context=context, context_injector=dg.PipesEnvContextInjector(), message_reader=reader
            ) as session:
                yield session
        finally:
            self._log_pipes = None

    # ---- polling ------------------------------------------------------------------------------
    def wait(self, job_id: str, seconds: float) -> JobStatus:
        """Ask for the status `seconds` after the previous status request (not after the log reads
        that followed it), so reading steps and logs does not add to the detection lag."""
        last = self._last_poll.get(job_id)
        time.sleep(seconds if last is None else max(0.0, last + seconds - time.monotonic()))
        self._last_poll[job_id] = time.monotonic()
        return self.status(job_id)


class LogLinePipesReader(dg.PipesMessageReader):
    """Dagster Pipes messages that travel inside the remote task's log.

    The task writes Pipes messages as JSON lines on stderr (`{"stdio": "stderr"}`); the service keeps
    stderr in the step's log file, which the backend reads while the job runs. Each line fed here is
    either a Pipes message (handled: logs, metrics, custom messages reach Dagster) or plain log text.
    """

    def __init__(self) -> None:
        self._handler: Any = None

    @contextlib.contextmanager
    def read_messages(self, handler: Any) -> Iterator[dict[str, Any]]:
        self._handler = handler
        try:
            yield {"stdio": "stderr"}
        finally:
            self._handler = None

    def feed(self, line: str) -> bool:
        """Handle `line` if it is a Pipes message; False means it is ordinary log text."""
        text = line.strip()
        if not (text.startswith("{") and "__dagster_pipes_version" in text):
            return False
        try:
            message = json.loads(text)
        except ValueError:
            return False
        if self._handler is not None:
            self._handler.handle_message(message)
        return True

    def no_messages_debug_text(self) -> str:
        return (
            "Pipes messages come back inside the remote step's stderr log. None arrived: the step may have "
            "been reused (allow_reuse) or may not have started the workload."
        )
