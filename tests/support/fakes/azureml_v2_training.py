"""The AzureML v2 fake, extended with command jobs, model registration and run-history logs for v2 training.

`FakeAzureMLV2` is the batch-endpoint fake (`azureml_v2.FakeAzureMLBatch`, unchanged) plus:
- PUT jobs/<name>: a CommandJob, validated against the official 2023-10-01 mfe spec (CommandJob,
  UriFolderJobInput/Output, and no property the spec does not define). Only command jobs with
  uri_folder inputs and outputs on the registered datastore, on a known compute cluster and
  environment, are accepted; anything else is refused as the service would (400). A PUT of an
  existing name creates nothing: as the service documents ("for update case, the Tags in the
  definition passed in will replace Tags in the existing job"), it replaces the tags and answers 200
  with the existing job; a change to a create-only property is refused (400).
- GET jobs/<name>, POST jobs/<name>/cancel (202 + Location): for command jobs and batch jobs alike.
- PUT models/<name>/versions/<v>: an mlflow_model whose folder holds an MLmodel file; a version is
  immutable (another modelUri is refused), a repeated PUT answers 200. The batch fake's GET serves it.
- GET history/v1.0<workspace>/runs/<name>/details (workspace-scoped, as azure-ai-ml's `jobs.stream` reads
  it; also under experiments/<experiment>/, as azureml-core addresses a run): status, error and logFiles
  with user_logs/std_log.txt as a SAS-style URL (the command's stdout and stderr), checked against the
  run-history spec.

Jobs run the real command (the workload's `train` task from the package uploaded to the datastore)
with `${{inputs.x}}` / `${{outputs.y}}` mounted from and uploaded back to Azurite, on the shared
time-scaled clock; `mode="simulate"` writes a stand-in model and metrics instead.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resources.storage import ObjectStore
from tests.support.fakes import specs
from tests.support.fakes.azureml_v2 import STATUS, A, FakeAzureMLBatch
from tests.support.fakes.http import ARM, AZUREML_OR_ARM, FakeHttpServer, Reply, Request
from tests.support.fakes.jobs import Mount, SimJob

# What an update may change on an existing job (tags replaced; description and archiving are mutable).
MUTABLE = {"tags", "description", "isArchived"}
READ_ONLY = {"status", "parameters"}
_REFERENCE = re.compile(r"\$\{\{\s*(inputs|outputs)\.([A-Za-z0-9_]+)\s*\}\}")
_METRICS = {
    "held_out_accuracy": 0.99,
    "log_loss": 0.05,
    "train_seconds": 1.0,
    "n_train": 600,
    "n_held_out": 200,
    "confusion_matrix": [[20 if i == j else 0 for j in range(10)] for i in range(10)],
}


@dataclass
class CommandJob:
    name: str
    properties: dict[str, Any]  # the CommandJob as submitted (tags replaced by updates)
    job: SimJob
    puts: int = 1  # PUTs that named this job (1 created it, the rest were updates)


class FakeAzureMLV2(FakeAzureMLBatch):
    """The v2 workspace: batch endpoints (see `FakeAzureMLBatch`) and v2 training."""

    def __init__(
        self,
        store: ObjectStore | None,
        *,
        clusters: tuple[str, ...] = ("cpu-cluster",),
        environments: tuple[str, ...] = ("mnist-workload:1",),
        server: FakeHttpServer | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(store, server=server, **kw)
        self.clusters = set(clusters)
        self.environments = {
            self._arm_id(f"environments/{e.replace(':', '/versions/')}") for e in environments
        }
        self.command_jobs: dict[str, CommandJob] = {}
        self._training_routes()

    @property
    def submissions(self) -> int:
        """Command jobs created (a PUT that updated an existing job does not count)."""
        return len(self.command_jobs)

    def _training_routes(self) -> None:
        r = self.route  # kept in `seen`, for the SDK parity tests
        r("PUT", A + r"/jobs/(?P<job>[^/]+)", "job_put", self._put_job, audience=ARM)
        r(
            "PUT",
            A + r"/models/(?P<name>[^/]+)/versions/(?P<ver>[^/]+)",
            "model_put",
            self._put_model,
            audience=ARM,
        )
        r(
            "GET",
            r"/history/v1\.0" + A + r"/experiments/(?P<exp>[^/]+)/runs/(?P<run>[^/]+)/details",
            "history_details",
            self._details,
            audience=AZUREML_OR_ARM,
        )
        # A SAS-signed log URL, as run history hands out: no bearer token.
        r("GET", r"/logs/(?P<run>[^/]+)/std_log\.txt", "std_log", self._std_log, audience=None)

    # ---- command jobs ---------------------------------------------------------------------------------
    def _put_job(self, req: Request) -> Reply:
        if (bad := self._arm_check(req)) is not None:
            return bad
        body = req.body
        if (
            not isinstance(body, dict)
            or set(body) != {"properties"}
            or not isinstance(body["properties"], dict)
        ):
            return _error(400, "UserError", 'the body must be {"properties": {...}}')
        props: dict[str, Any] = body["properties"]
        if props.get("jobType") != "Command":
            return _error(
                400, "UserError", f"this workspace runs Command jobs only, not {props.get('jobType')}"
            )
        try:
            specs.validate(specs.MFE, "JobBaseResource", body)
            _strict("CommandJob", props, READ_ONLY)
            for name, value in (props.get("inputs") or {}).items():
                _typed(f"input {name}", "JobInput", value, "jobInputType", {"uri_folder"})
            for name, value in (props.get("outputs") or {}).items():
                _typed(f"output {name}", "JobOutput", value, "jobOutputType", {"uri_folder", "mlflow_model"})
        except specs.ContractError as err:
            return _error(400, "UserError", str(err))
        name = req.match["job"]
        existing = self.command_jobs.get(name)
        if existing is not None:
            keys = (set(props) | set(existing.properties)) - MUTABLE
            changed = sorted(k for k in keys if props.get(k) != existing.properties.get(k))
            if changed:
                return _error(400, "UserError", f"job {name} exists; {', '.join(changed)} cannot be changed")
            existing.properties["tags"] = dict(props.get("tags") or {})
            existing.puts += 1
            return Reply(200, self._command_resource(existing))
        if name in self.jobs:
            return _error(400, "UserError", f"job {name} exists and is not a command job")
        problem = self._check_references(props)
        if problem:
            return _error(400, "UserError", problem)
        job = CommandJob(name, json.loads(json.dumps(props)), self._command_sim(name, props))
        self.command_jobs[name] = job
        self.runner.add(job.job)
        return Reply(201, self._command_resource(job))

    def _check_references(self, props: dict[str, Any]) -> str | None:
        compute = str(props.get("computeId") or "")
        if (
            compute.rsplit("/computes/", 1)[0] != self._arm_id("").rstrip("/")
            or compute.rsplit("/", 1)[-1] not in self.clusters
        ):
            return f"compute {compute or '(none)'} not found in workspace {self.workspace}"
        if props["environmentId"] not in self.environments:
            return f"environment {props['environmentId']} not found"
        for kind in ("inputs", "outputs"):
            for name, value in (props.get(kind) or {}).items():
                if self._datastore_path(str(value.get("uri") or "").rstrip("/") + "/") is None:
                    return (
                        f"{kind[:-1]} {name}: {value.get('uri')} is not a path on datastore {self.datastore}"
                    )
        for kind, name in _REFERENCE.findall(props["command"]):
            if name not in (props.get(kind) or {}):
                return f"the command refers to {kind}.{name}, which the job does not define"
        return None

    def _command_sim(self, name: str, props: dict[str, Any]) -> SimJob:
        base = self.runner._root / name
        local: dict[tuple[str, str], Path] = {}
        mounts: list[Mount] = []
        for kind in ("inputs", "outputs"):
            for key, value in (props.get(kind) or {}).items():
                prefix = self._datastore_path(str(value["uri"]).rstrip("/") + "/")
                assert prefix is not None
                local[(kind, key)] = base / kind / key
                mounts.append(Mount(prefix.rstrip("/"), local[(kind, key)], output=kind == "outputs"))
        job = SimJob(id=name, created=self.clock.now(), queue_s=self.queue_s, run_s=self.run_s, mounts=mounts)
        fail, self.fail_next = self.fail_next, None
        if fail:  # run history's error code for it: UserError (the job's fault) or SystemError (AzureML's)
            self.error_codes[name], self.fail_next_code = self.fail_next_code, "UserError"
        if self.mode == "simulate" or fail:
            job.fail_message = fail
            job.simulated_log = [f"{name}: simulated training", "Execution failed" if fail else "done"]
            job.simulated_outputs = {
                "model/MLmodel": b"flavors:\n  sklearn: {}\n",
                "metrics.json": json.dumps(_METRICS).encode(),
            }
            return job
        # The compute's `python` is the one running the tests; the command runs under a shell, as on AzureML.
        shim = base / "bin"
        shim.mkdir(parents=True, exist_ok=True)
        # A script, not a symlink: a virtual environment is found from the path its python is started by.
        (shim / "python").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
        (shim / "python").chmod(0o755)
        command = _REFERENCE.sub(lambda m: str(local[(m.group(1), m.group(2))]), props["command"])
        job.command = ["sh", "-c", command]
        job.env = {
            **{str(k): str(v) for k, v in (props.get("environmentVariables") or {}).items()},
            "PATH": f"{shim}:/usr/bin:/bin",
        }
        return job

    def _command_resource(self, job: CommandJob) -> dict[str, Any]:
        wsid = f"/subscriptions/{self.subscription}/resourcegroups/{self.resource_group}/workspaces/{self.workspace}"
        res = {
            "id": self._arm_id(f"jobs/{job.name}"),
            "name": job.name,
            "type": "Microsoft.MachineLearningServices/workspaces/jobs",
            "properties": {
                **job.properties,
                "status": STATUS[job.job.state],
                "services": {"Studio": {"endpoint": f"https://ml.azure.com/runs/{job.name}?wsid={wsid}"}},
            },
        }
        specs.validate(specs.MFE, "JobBaseResource", res)
        return res

    def _job(self, req: Request) -> Reply:
        job = self.command_jobs.get(req.match["job"])
        if job is None:
            return super()._job(req)
        return self._arm_check(req) or Reply(200, self._command_resource(job))

    def _cancel(self, req: Request) -> Reply:
        job = self.command_jobs.get(req.match["job"])
        if job is None:
            return super()._cancel(req)
        if (bad := self._arm_check(req)) is not None:
            return bad
        self.runner.cancel(job.name)
        return Reply(202, None, {"Location": f"{self.url}/operations/cancel/{job.name}", "Retry-After": "0"})

    def _cancel_status(self, req: Request) -> Reply:
        job = self.command_jobs.get(req.match["job"])
        if job is None:
            return super()._cancel_status(req)
        return Reply(200 if job.job.terminal else 202, None)

    # ---- run history ------------------------------------------------------------------------------------
    def _details(self, req: Request) -> Reply:
        """Runs_GetDetailsByExperimentName (experiment-scoped, as azureml-core addresses a run)."""
        if (bad := self._history_check(req)) is not None:
            return bad
        job = self.command_jobs.get(req.match["run"])
        # A job's run lives in its experiment (the job's experimentName, "Default" when none was given).
        if job is None or (job.properties.get("experimentName") or "Default") != req.match["exp"]:
            return _error(
                404, "RunNotFound", f"run {req.match['run']} not found in experiment {req.match['exp']}"
            )
        return Reply(200, self._command_details(job))

    def _run_details(self, req: Request) -> Reply:
        """Runs_GetDetails (workspace-scoped, as azure-ai-ml's `jobs.stream` reads a job): command jobs here,
        batch jobs as the batch fake answers them."""
        job = self.command_jobs.get(req.match["run"])
        if job is None:
            return super()._run_details(req)
        return self._history_check(req) or Reply(200, self._command_details(job))

    def _command_details(self, job: CommandJob) -> dict[str, Any]:
        sim = job.job
        details: dict[str, Any] = {
            "runId": job.name,
            "status": STATUS[sim.state],
            "target": str(job.properties.get("computeId", "")).rsplit("/", 1)[-1],
            "properties": dict(job.properties.get("properties") or {}),
            "tags": dict(job.properties.get("tags") or {}),
        }
        if sim.log is not None and sim.log.exists():
            details["logFiles"] = {
                "user_logs/std_log.txt": f"{self.url}/logs/{job.name}/std_log.txt?sv=2021&sig=not-a-secret"
            }
        if sim.state == "Failed" and sim.error:
            details["error"] = {
                "error": {"code": self.error_codes.get(job.name, "UserError"), "message": sim.error}
            }
        specs.validate(specs.RUN_HISTORY, "RunDetails", details)
        return details

    def _std_log(self, req: Request) -> Reply:
        if "sig" not in req.query:
            return _error(403, "AuthenticationFailed", "missing SAS signature")
        job = self.command_jobs.get(req.match["run"])
        if job is None or job.job.log is None or not job.job.log.exists():
            return _error(404, "BlobNotFound", "log not found")
        return Reply(200, raw=job.job.log.read_bytes())

    # ---- models -------------------------------------------------------------------------------------------
    def _put_model(self, req: Request) -> Reply:
        if (bad := self._arm_check(req)) is not None:
            return bad
        try:
            specs.validate(specs.MFE, "ModelVersionResource", req.body)
            _strict("ModelVersion", req.body["properties"], {"provisioningState"})
        except (specs.ContractError, TypeError, KeyError) as err:
            return _error(400, "UserError", str(err))
        props = req.body["properties"]
        uri = str(props.get("modelUri") or "")
        if props.get("modelType") != "mlflow_model":
            return _error(
                400, "UserError", "a batch deployment serves mlflow_model models without a scoring script"
            )
        prefix = self._datastore_path(self._short_uri(uri).rstrip("/") + "/")
        if prefix is None or self.store is None or not self.store.exists(prefix + "MLmodel"):
            return _error(
                400, "UserError", f"{uri} is not an MLflow model folder on datastore {self.datastore}"
            )
        key = (req.match["name"], req.match["ver"])
        if key in self.models and self._short_uri(self.models[key]).rstrip("/") != self._short_uri(
            uri
        ).rstrip("/"):
            return _error(
                400,
                "UserError",
                f"model {key[0]}:{key[1]} exists with another modelUri; versions are immutable",
            )
        status = 200 if key in self.models else 201
        self.models[key] = uri.rstrip("/")
        res = {
            "id": self._arm_id(f"models/{key[0]}/versions/{key[1]}"),
            "name": key[1],
            "type": "Microsoft.MachineLearningServices/workspaces/models/versions",
            # The service reads the flavors from the MLmodel file; the fake names none (as its GET does).
            "properties": {"flavors": {}, **props, "provisioningState": "Succeeded"},
        }
        specs.validate(specs.MFE, "ModelVersionResource", res)
        return Reply(status, res)

    def _short_uri(self, uri: str) -> str:
        """A datastore URI in its short form: azure-ai-ml writes the workspace-qualified one
        (azureml://subscriptions/<s>/resourcegroups/<rg>/workspaces/<ws>/datastores/<d>/paths/<p>);
        the service takes both for this workspace."""
        long = (
            f"azureml://subscriptions/{self.subscription}/resourcegroups/{self.resource_group}/"
            f"workspaces/{self.workspace}/datastores/"
        )
        return "azureml://datastores/" + uri[len(long) :] if uri.lower().startswith(long.lower()) else uri


def _known(definition: str) -> set[str]:
    return set(specs._definitions(specs.MFE)[definition].get("properties") or {})


def _strict(definition: str, value: Any, read_only: set[str]) -> None:
    """Validate against `definition` and refuse properties it does not define, or the service sets."""
    specs.validate(specs.MFE, definition, value)
    unknown = sorted(set(value) - _known(definition))
    if unknown:
        raise specs.ContractError(
            f"{definition}: unknown propert{'ies' if len(unknown) > 1 else 'y'} {unknown}"
        )
    if given := sorted(set(value) & read_only):
        raise specs.ContractError(f"{definition}: {given} are read-only")


def _typed(what: str, base: str, value: Any, discriminator: str, allowed: set[str]) -> None:
    """A polymorphic input or output: its concrete definition (by discriminator), and only `allowed` kinds."""
    if not isinstance(value, dict) or value.get(discriminator) not in allowed:
        raise specs.ContractError(f"{what}: {discriminator} must be one of {sorted(allowed)}")
    kind = {"uri_folder": "UriFolder", "mlflow_model": "MLFlowModel"}[value[discriminator]]
    _strict(f"{kind}{base}", value, set())


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message}})
