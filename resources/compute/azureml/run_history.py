"""AzureML v1 run history: finding a pipeline run by property, its steps, their errors and their logs.

Calls (H = https://<region>.api.azureml.ms/history/v1.0/<workspace>/experiments/<exp>), each the one
azureml-core makes for the same purpose:
- find:   POST H/runs:query {"filter", "orderby", "top"}, the filter
          '((Properties/dagster.key_digest eq "<digest>") and (ParentRunId eq null))'
          (`Run.list(experiment, properties={...})`)
- steps:  GET H/runs/<id>/children?$orderby=StartTimeUtc desc&$top=500 (`Run.get_children()`; status,
          and properties azureml.reusedrunid mark a reused step)
- logs:   GET H/runs/<step>/details -> logFiles {name: SAS URL} (`Run.get_details()`), read incrementally

A v2 job is a run too. Its calls are workspace-scoped (W = .../history/v1.0/<workspace>), as azure-ai-ml's
RunOperations makes them (`jobs.stream`, `jobs.download`): GET W/runs/<id>/details (Runs_GetDetails) and
GET W/runs/<id>/children (Runs_GetChild: a batch job's one step, `batchscoring`), each with the query
`api-version=v1.0` and an ARM token, as that client sends them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from resources.azure.errors import PermanentAzureError, TransientAzureError
from resources.azure.rest import AzureRest

from .workspace import LogLinePipesReader

KEY_PROPERTY = "dagster.idempotency_key"
DIGEST_PROPERTY = "dagster.key_digest"
_TERMINAL_STEP = {"completed", "finished", "failed", "canceled", "cancelled"}
_NOT_STARTED_STEP = {"notstarted", "queued", "preparing", ""}


@dataclass
class Step:
    """What has been reported of one step run: its status, whether AzureML reused it, how far its logs were read."""

    name: str
    status: str = ""
    reused_from: str | None = None
    log_offsets: dict[str, int] = field(default_factory=dict)
    logs_done: bool = False


def property_filter(key: str, value: str) -> str:
    """An OData run filter 'property `key` equals `value`', written as azureml-core writes it
    (PROP_EQ_FORMAT_STR with value_to_odata_string: the literal in double quotes)."""
    if '"' in value or '"' in key:
        raise ValueError(f"an OData literal here cannot hold a double quote: {key}={value}")
    return f'(Properties/{key} eq "{value}")'


class RunHistory:
    """The run-history API of one experiment of a workspace (`url` turns a path under the workspace
    into a URL)."""

    def __init__(
        self, api: AzureRest, log_files: AzureRest, url: Callable[[str], str], experiment: str
    ) -> None:
        self.api = api
        self.log_files = log_files  # log files are SAS URLs: no token goes with them
        self.url = url
        self.experiment = experiment

    def _in_experiment(self, path: str) -> str:
        return self.url(f"experiments/{quote(self.experiment)}/{path}")

    def find_run(self, key_digest: str, key: str) -> str | None:
        """The newest top-level run of the experiment carrying idempotency key `key`, if any."""
        try:
            found = self.api.call(
                "POST",
                self._in_experiment("runs:query"),
                json_body={
                    # azureml-core's own body (Run.list(experiment, properties=...) through
                    # azureml/_restclient/_odata and create_query_params): literals in double quotes,
                    # top-level runs only, the field names it writes ("orderby"; the spec spells it
                    # orderBy).
                    "filter": f"({property_filter(DIGEST_PROPERTY, key_digest)} and (ParentRunId eq null))",
                    "orderby": "StartTimeUtc desc",
                    "top": 20,
                },
                what=f"looking up runs of experiment {self.experiment!r}",
                fix="MNIST_AZUREML_TRAINING_EXPERIMENT",
            ).json()
        except PermanentAzureError as err:
            if err.status == 404:  # no such experiment yet: nothing was submitted
                return None
            raise
        for run in (found or {}).get("value") or []:
            if (run.get("properties") or {}).get(KEY_PROPERTY) == key:
                return str(run["runId"])
        return None

    def children(self, run_id: str) -> list[dict[str, Any]]:
        data = self.api.call(
            "GET",
            self._in_experiment(f"runs/{quote(run_id)}/children"),
            params={"$orderby": "StartTimeUtc desc", "$top": "500"},
            what=f"steps of run {run_id}",
        ).json()
        return list((data or {}).get("value") or [])

    def details(self, run_id: str) -> dict[str, Any]:
        return (
            self.api.call(
                "GET", self._in_experiment(f"runs/{quote(run_id)}/details"), what=f"details of run {run_id}"
            ).json()
            or {}
        )

    def step_errors(self, run_id: str) -> list[str]:
        """'step <name>: <error>' for each failed step (best effort: what the portal shows)."""
        errors: list[str] = []
        with contextlib.suppress(TransientAzureError, PermanentAzureError):
            for child in self.children(run_id):
                if str(child.get("status", "")).lower() != "failed":
                    continue
                details = self.details(str(child["runId"]))
                error = ((details.get("error") or {}).get("error") or {}).get("message")
                name = child.get("displayName") or child.get("name") or child["runId"]
                errors.append(f"step {name}: {error or 'failed'}")
        return errors

    def step_error_codes(self, run_id: str) -> list[str | None]:
        """The error code (UserError, SystemError...) of each failed step, None where none was given."""
        codes: list[str | None] = []
        with contextlib.suppress(TransientAzureError, PermanentAzureError):
            for child in self.children(run_id):
                if str(child.get("status", "")).lower() == "failed":
                    details = self.details(str(child["runId"]))
                    codes.append(((details.get("error") or {}).get("error") or {}).get("code"))
        return codes

    def new_lines(self, run_id: str, steps: dict[str, Step], pipes: LogLinePipesReader | None) -> list[str]:
        """Step transitions and new log lines since the last call; Pipes messages go to `pipes`."""
        lines: list[str] = []
        for child in self.children(run_id):
            step_id = str(child["runId"])
            step = steps.setdefault(
                step_id, Step(str(child.get("displayName") or child.get("name") or step_id))
            )
            status = str(child.get("status", ""))
            reused = (child.get("properties") or {}).get("azureml.reusedrunid")
            if reused and step.reused_from is None:
                step.reused_from = str(reused)
                lines.append(
                    f"step {step.name}: reused AzureML run {reused} (allow_reuse): this step did no work in this run"
                )
            if status != step.status:
                step.status = status
                lines.append(f"step {step.name}: {status}")
            if step.reused_from or step.logs_done or status.lower() in _NOT_STARTED_STEP:
                continue
            lines += self._read_logs(step_id, step, pipes)
            if status.lower() in _TERMINAL_STEP:
                step.logs_done = True  # read once more after the end, then never again
        return lines

    def run_log_lines(
        self, run_id: str, step: Step, pipes: LogLinePipesReader | None, prefix: str = ""
    ) -> list[str]:
        """New lines of one run's own log files whose names start with `prefix` (a v2 job is one run)."""
        return self._read_logs(run_id, step, pipes, prefix)

    def _read_logs(
        self, step_id: str, step: Step, pipes: LogLinePipesReader | None, prefix: str = ""
    ) -> list[str]:
        log_files = self.details(step_id).get("logFiles") or {}
        lines: list[str] = []
        for name in sorted(n for n in log_files if n.startswith(prefix)):
            offset = step.log_offsets.get(name, 0)
            try:
                body = self.log_files.call(
                    "GET", str(log_files[name]), what=f"log file {name} of step {step.name}"
                ).body
            except (TransientAzureError, PermanentAzureError) as err:
                # Logs are best effort: a log that is not readable yet must not fail the run.
                lines.append(f"{step.name}/{name}: (log not readable now: {err.status or 'no answer'})")
                continue
            complete = body[offset : body.rfind(b"\n") + 1] if len(body) > offset else b""
            step.log_offsets[name] = offset + len(complete)
            for line in complete.decode(errors="replace").splitlines():
                if not line.strip():
                    continue
                if pipes is not None and pipes.feed(line):
                    continue
                lines.append(f"{step.name}/{name}: {line}")
        return lines


def run_error(details: Mapping[str, Any]) -> str | None:
    """The error message of a run's details (ErrorResponse.error.message), if any."""
    return ((details.get("error") or {}).get("error") or {}).get("message")


V1 = {"api-version": "v1.0"}  # azure-ai-ml's run-history client adds it to every call


class WorkspaceRuns(RunHistory):
    """Run history addressed by run id alone (workspace-scoped), as azure-ai-ml reads v2 jobs."""

    def __init__(self, api: AzureRest, log_files: AzureRest, url: Callable[[str], str]) -> None:
        super().__init__(api, log_files, url, experiment="")

    def run_details(self, run_id: str) -> dict[str, Any]:
        """Runs_GetDetails: status, error, logFiles (`RunOperations.get_run_details`)."""
        return (
            self.api.call(
                "GET", self.url(f"runs/{quote(run_id)}/details"), params=V1, what=f"details of run {run_id}"
            ).json()
            or {}
        )

    def run_children(self, run_id: str) -> list[dict[str, Any]]:
        """Runs_GetChild, the first page (`RunOperations.get_run_children`, no $top)."""
        data = self.api.call(
            "GET", self.url(f"runs/{quote(run_id)}/children"), params=V1, what=f"steps of run {run_id}"
        ).json()
        return list((data or {}).get("value") or [])

    def new_log_text(
        self, log_files: Mapping[str, str], names: Iterable[str], step: Step
    ) -> list[tuple[str, str]]:
        """(file name, line) for each complete line written to the files `names` (from `log_files`, name ->
        SAS URL) since the last call; offsets are kept in `step`. A file not readable now is skipped (logs are
        best effort), its URL never shown."""
        read: list[tuple[str, str]] = []
        for name in names:
            offset = step.log_offsets.get(name, 0)
            try:
                body = self.log_files.call(
                    "GET", str(log_files[name]), what=f"log file {name} of {step.name}"
                ).body
            except (TransientAzureError, PermanentAzureError):
                continue
            complete = body[offset : body.rfind(b"\n") + 1] if len(body) > offset else b""
            step.log_offsets[name] = offset + len(complete)
            read += [(name, line) for line in complete.decode(errors="replace").splitlines() if line.strip()]
        return read
