"""Rolling the promoted model out to an AzureML v2 batch deployment, over its REST contract (no azure-ai-ml).

What `python -m deploy.azureml.deploy_batch` does after each promotion, done by Dagster: the
deployment itself (environment, code, compute) is created once by that command; a rollout only
changes which registered model it serves.

Calls (ARM = https://management.azure.com<workspace>, api-version 2023-10-01):
- GET ARM/models/<name>/versions/<v>   already registered? (same modelUri: nothing to do)
- PUT ARM/models/<name>/versions/<v>   {modelType: mlflow_model, modelUri}: the version is the Dagster
  model version, so registering is idempotent (the v2 command-job training registers the same version)
- GET ARM/batchEndpoints/<ep>          which deployment is the default
- GET ARM/batchEndpoints/<ep>/deployments/<d>   what it serves, its provisioningState
- PUT ARM/batchEndpoints/<ep>/deployments/<d>   the deployment as read, with `model` set to the new
  version (BatchDeployments_CreateOrUpdate; its PATCH takes only description and tags), a long-running
  operation: 201 + Azure-AsyncOperation, polled until Succeeded or Failed
- PUT ARM/batchEndpoints/<ep>          defaults.deploymentName, when the deployment named in the settings
  is not the endpoint's default yet (BatchEndpoints_Update takes only tags and identity)

Exactly one update: the PUT is sent once; after a lost answer, or a 409 (an update in flight), the
deployment is read before anything is sent again. A deployment that is Creating or Updating has an
update in flight (ours from an earlier attempt, or someone else's): it is waited for, never
overtaken. ARM has no cancel for a deployment update: a cancelled Dagster run stops waiting and the
update goes on in AzureML; the next rollout finds it in flight and reattaches.

A failed update leaves the deployment serving the model it served before (the service keeps the
previous model; the rollout reads it back and says which) and raises `RolloutFailed` with the
service's error.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError

from resources.azure.errors import PermanentAzureError, TransientAzureError
from resources.azure.retry import Backoff
from resources.compute.azureml.batch_endpoint_scoring import (
    API_VERSION,
    AzureMLBatchEndpointBackend,
    _datastore_path,
)
from resources.compute.base import PollSchedule
from resources.storage import ObjectStore

from .base import ModelServing, PromotedModel, Rollout, RolloutFailed

IN_FLIGHT = frozenset({"creating", "updating", "deleting"})
T = TypeVar("T")
# Read-only properties of the resources read back: never sent in a PUT.
_READ_ONLY = frozenset({"provisioningState", "scoringUri", "swaggerUri"})
_RESOURCE_KEYS = ("location", "tags", "identity", "kind", "sku")


class AzureMLBatchDeploymentServing(ModelServing):
    """Serves the promoted model from a deployment of an AzureML v2 batch endpoint (the scoring backend's).

    `deployment_name` None: the endpoint's default deployment is updated; named: that deployment, made
    the endpoint's default when `make_default`.
    """

    subscription_id: str
    resource_group: str
    workspace_name: str
    datastore: str = "workspaceblobstore"
    arm_url: str = "https://management.azure.com"
    endpoint_name: str = "mnist-batch"
    deployment_name: str | None = None
    model_name: str = "mnist"
    make_default: bool = True
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    credential: str = "default"
    allow_http_loopback: bool = False  # only for contract fakes on 127.0.0.1
    request_timeout_seconds: float = 60.0
    request_retries: int = 6
    # How long a deployment update may take before the rollout gives up waiting (the update goes on).
    update_timeout_seconds: float = 3600.0
    # The poll schedule of the AzureML backends (see `PollSchedule`).
    poll_initial_seconds: float = 1.0
    poll_growth: float = 1.5
    poll_floor_seconds: float | None = 1.8
    poll_fraction: float = 0.045
    poll_max_seconds: float = 30.0

    # ---- plumbing: the scoring backend's client, endpoint, deployment and model check ----------------------
    def _scoring(self) -> AzureMLBatchEndpointBackend:
        fields = set(AzureMLBatchEndpointBackend.model_fields)
        return AzureMLBatchEndpointBackend(
            **{k: v for k, v in self.model_dump().items() if k in fields}, check_model=True
        )

    def describe(self) -> str:
        which = f"deployment {self.deployment_name!r}" if self.deployment_name else "the default deployment"
        return f"AzureML batch endpoint {self.endpoint_name!r}, {which}"

    def _schedule(self) -> PollSchedule:
        return PollSchedule(
            initial=self.poll_initial_seconds,
            maximum=self.poll_max_seconds,
            growth=self.poll_growth,
            floor=self.poll_floor_seconds,
            fraction=self.poll_fraction,
        )

    def _model_path(self, version: str) -> str:
        return f"models/{quote(self.model_name)}/versions/{quote(version)}"

    def _deployment_path(self, name: str) -> str:
        return f"batchEndpoints/{quote(self.endpoint_name)}/deployments/{quote(name)}"

    # ---- the rollout ------------------------------------------------------------------------------------------------
    def roll_out(
        self, context: dg.AssetExecutionContext, model: PromotedModel, store: ObjectStore
    ) -> Rollout:
        scoring = self._scoring()
        log = context.log
        asset_id = self._register(scoring, model, log)
        endpoint = scoring._endpoint()
        default = (endpoint.get("defaults") or {}).get("deploymentName")
        name = self.deployment_name or default
        if not name:
            raise PermanentAzureError(
                f"AzureML: batch endpoint {self.endpoint_name!r} has no default deployment to roll model "
                f"{model.version} out to: set MNIST_AZUREML_BATCH_DEPLOYMENT, or create the deployment once "
                "with python -m deploy.azureml.deploy_batch"
            )
        try:
            changed = self._update_deployment(scoring, name, asset_id, model, log)
            made_default = False
            if self.make_default and name != default:
                self._set_default(scoring, name, log)
                made_default = True
        except DagsterExecutionInterruptedError:
            log.warning(
                f"Cancelled while waiting for deployment {name!r} of batch endpoint {self.endpoint_name!r}. ARM "
                "has no cancel for a deployment update: it goes on in AzureML, and the deployment serves the "
                "previous model until it succeeds. The next rollout finds it in flight and waits for it "
                "instead of sending another."
            )
            raise
        # The scoring backend's own check: what scoring will verify before every invocation.
        _, deployment = scoring._deployment({"defaults": {"deploymentName": name}})
        served = scoring._check_model(name, deployment, model.folder)
        log.info(
            f"Deployment {name!r} of batch endpoint {self.endpoint_name!r} serves {served} ({model.folder})"
        )
        return Rollout(
            served=served,
            changed=changed or made_default,
            metadata={
                "serving": self.describe(),
                "azureml_model": served,
                "azureml_batch_endpoint": self.endpoint_name,
                "azureml_deployment": name,
                "deployment_updated": changed,
                "made_default": made_default,
            },
        )

    # ---- 1. the model version --------------------------------------------------------------------------------------
    def _register(self, scoring: AzureMLBatchEndpointBackend, model: PromotedModel, log: Any) -> str:
        """Register the MLflow model folder as `model_name:<version>` unless it is; returns its asset id."""
        path = self._model_path(model.version)
        ref = f"{self.model_name}:{model.version}"
        uri = scoring.datastore_uri(model.folder).rstrip("/")
        try:
            existing = scoring._get(path, f"looking up model {ref}")
        except PermanentAzureError as err:
            if err.status != 404:
                raise
            existing = None
        if existing is not None:
            registered = str((existing.get("properties") or {}).get("modelUri") or "").rstrip("/")
            if _datastore_path(registered) != _datastore_path(uri):
                raise PermanentAzureError(
                    f"AzureML: model {ref} is registered from {registered or 'an unknown location'}, not from the "
                    f"promoted model's folder {uri}; model versions are immutable. Check MNIST_AZUREML_MODEL_NAME."
                )
            log.info(f"Model {ref} is registered already ({uri})")
        else:
            body = {
                "properties": {
                    "modelType": "mlflow_model",
                    "modelUri": uri,
                    "description": "MNIST classifier promoted by Dagster",
                    "tags": {"dagster.model_version": model.version, "dagster.model_path": model.folder},
                    # What azure-ai-ml's Model writes for these (tests/contract/test_sdk_parity_azureml.py).
                    "properties": {},
                    "isAnonymous": False,
                    "isArchived": False,
                }
            }
            # A PUT of the same version and body is idempotent: safe for the retry policy to repeat.
            scoring._api().call(
                "PUT",
                scoring._arm(path),
                params={"api-version": API_VERSION},
                json_body=body,
                what=f"registering model {ref}",
                fix="MNIST_AZUREML_MODEL_NAME and the datastore (MNIST_AZUREML_DATASTORE)",
            )
            log.info(f"Registered model {ref} from {uri}")
        return f"{scoring.workspace_path}/{path}"

    # ---- 2. the deployment ---------------------------------------------------------------------------------------
    def _read_deployment(self, scoring: AzureMLBatchEndpointBackend, name: str) -> dict[str, Any]:
        return scoring._get(
            self._deployment_path(name),
            f"deployment {name!r} of batch endpoint {self.endpoint_name!r}",
            "MNIST_AZUREML_BATCH_DEPLOYMENT, or create the deployment once with python -m deploy.azureml.deploy_batch",
        )

    def _update_deployment(
        self, scoring: AzureMLBatchEndpointBackend, name: str, asset_id: str, model: PromotedModel, log: Any
    ) -> bool:
        """Make deployment `name` serve `asset_id`; True if an update was sent and succeeded."""
        resends = Backoff(self.poll_initial_seconds, attempts=5).waits()
        sent = False  # an update was answered; a lost answer is found out by reading the deployment
        initial: str | None = None  # what the deployment served when the rollout began
        while True:
            resource = self._read_deployment(scoring, name)
            props = resource.get("properties") or {}
            state = str(props.get("provisioningState") or "Succeeded")
            if initial is None:  # an update in flight at the start counts as this rollout's change
                initial = "in flight" if state.lower() in IN_FLIGHT else (_model_of(props) or "none")
            if state.lower() in IN_FLIGHT:
                log.info(
                    f"Deployment {name!r} is {state}: an update is in flight (an earlier attempt's, or another "
                    "client's); waiting for it instead of sending another"
                )
                self._wait(lambda: self._settled(scoring, name), f"deployment {name!r} to finish updating")
                continue
            if _serves(props, asset_id) and state.lower() == "succeeded":
                changed = initial != _model_of(props)
                if not changed:
                    log.info(f"Deployment {name!r} serves {self.model_name}:{model.version} already")
                return changed
            if sent:
                raise RolloutFailed(
                    f"AzureML: the update of deployment {name!r} of batch endpoint {self.endpoint_name!r} ended "
                    f"{state}, but the deployment serves {_model_of(props) or 'no model'}, not "
                    f"{self.model_name}:{model.version}"
                )
            previous = _model_of(props)
            try:
                operation = self._put_deployment(scoring, name, resource, asset_id)
            except TransientAzureError as err:
                # No answer: the update may have started. Look at the deployment before sending again.
                if next(resends, None) is None:
                    raise
                log.warning(
                    f"No answer to the update of deployment {name!r} ({err}); checking before resending"
                )
                continue
            except PermanentAzureError as err:
                if err.status != 409 or next(resends, None) is None:
                    raise
                log.warning(
                    f"Deployment {name!r} refused the update as conflicting ({err}); reading it again"
                )
                continue
            sent = True
            log.info(
                f"Updating deployment {name!r} of batch endpoint {self.endpoint_name!r} from {previous or 'none'} to "
                f"{self.model_name}:{model.version}"
            )
            status, error = ("", None)
            if operation is not None:
                status, error = self._wait(
                    functools.partial(self._operation_done, scoring, operation),
                    f"the update of deployment {name!r}",
                )
            if status.lower() in ("failed", "canceled"):
                after = _model_of(self._read_deployment(scoring, name).get("properties") or {}) or "no model"
                raise RolloutFailed(
                    f"AzureML: updating deployment {name!r} of batch endpoint {self.endpoint_name!r} to model "
                    f"{self.model_name}:{model.version} ({model.folder}) {status.lower()}: {error or 'no reason given'}. "
                    f"The deployment still serves {after}; scoring refuses it for the promoted model until a "
                    "rollout succeeds (materialize this asset again once the cause is fixed)."
                )

    def _put_deployment(
        self, scoring: AzureMLBatchEndpointBackend, name: str, resource: dict[str, Any], asset_id: str
    ) -> str | None:
        """Send the update once; returns the Azure-AsyncOperation URL (None: finished at once)."""
        body = _writable(resource)
        body["properties"]["model"] = {"referenceType": "Id", "assetId": asset_id}
        answer = scoring._api().call(
            "PUT",
            scoring._arm(self._deployment_path(name)),
            params={"api-version": API_VERSION},
            json_body=body,
            retry=False,
            what=f"updating deployment {name!r} of batch endpoint {self.endpoint_name!r}",
            fix="MNIST_AZUREML_BATCH_DEPLOYMENT",
        )
        return _operation_url(answer.headers)

    def _settled(self, scoring: AzureMLBatchEndpointBackend, name: str) -> str | None:
        state = str(
            (self._read_deployment(scoring, name).get("properties") or {}).get("provisioningState") or ""
        )
        return None if state.lower() in IN_FLIGHT else state

    def _operation_done(
        self, scoring: AzureMLBatchEndpointBackend, url: str
    ) -> tuple[str, str | None] | None:
        """(status, error message) of an ARM async operation once it ended; None while it runs."""
        op = scoring._api().call("GET", url, what="reading the status of a deployment update").json() or {}
        status = str(op.get("status") or "InProgress")
        if status.lower() in ("inprogress", "running", "accepted", "creating", "updating", "notstarted"):
            return None
        error = op.get("error") or {}
        message = ": ".join(str(error[k]) for k in ("code", "message") if error.get(k)) or None
        return status, message

    def _wait(self, check: Callable[[], T | None], what: str) -> T:
        """Poll `check` on the AzureML poll schedule until it answers; a Dagster cancel interrupts the sleep."""
        started = time.monotonic()
        for interval in self._schedule().intervals():
            if (result := check()) is not None:
                return result
            if time.monotonic() - started > self.update_timeout_seconds:
                raise TransientAzureError(
                    f"AzureML: still waiting for {what} after {self.update_timeout_seconds:.0f} s "
                    "(MNIST_AZUREML_ROLLOUT_TIMEOUT); it goes on in AzureML, and the next rollout waits for it"
                )
            time.sleep(interval)
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- 3. the endpoint's default --------------------------------------------------------------------------------
    def _set_default(self, scoring: AzureMLBatchEndpointBackend, name: str, log: Any) -> None:
        path = f"batchEndpoints/{quote(self.endpoint_name)}"
        body = _writable(scoring._get(path, f"batch endpoint {self.endpoint_name!r}"))
        body["properties"]["defaults"] = {"deploymentName": name}
        # The same body again is harmless: the retry policy may repeat this PUT.
        answer = scoring._api().call(
            "PUT",
            scoring._arm(path),
            params={"api-version": API_VERSION},
            json_body=body,
            what=f"making {name!r} the default deployment of batch endpoint {self.endpoint_name!r}",
            fix="MNIST_AZUREML_BATCH_DEPLOYMENT",
        )
        if (url := _operation_url(answer.headers)) is not None:
            status, error = self._wait(lambda: self._operation_done(scoring, url), "the endpoint's update")
            if status.lower() != "succeeded":
                raise RolloutFailed(
                    f"AzureML: making {name!r} the default deployment of batch endpoint {self.endpoint_name!r} "
                    f"{status.lower()}: {error or 'no reason given'}"
                )
        log.info(f"Deployment {name!r} is now the default of batch endpoint {self.endpoint_name!r}")


def _writable(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource as read, without what the service sets itself (id, name, type, systemData, states)."""
    body: dict[str, Any] = {k: resource[k] for k in _RESOURCE_KEYS if resource.get(k) is not None}
    props = resource.get("properties") or {}
    body["properties"] = {k: v for k, v in props.items() if k not in _READ_ONLY and v is not None}
    return body


def _model_of(props: dict[str, Any]) -> str | None:
    """'name:version' of the model a deployment's properties name, None without one."""
    asset_id = str((props.get("model") or {}).get("assetId") or "")
    if "/models/" not in asset_id or "/versions/" not in asset_id:
        return None
    name, _, version = asset_id.split("/models/", 1)[1].partition("/versions/")
    return f"{name}:{version}"


def _serves(props: dict[str, Any], asset_id: str) -> bool:
    return _model_of(props) is not None and _model_of(props) == _model_of({"model": {"assetId": asset_id}})


def _operation_url(headers: Any) -> str | None:
    lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
    return lowered.get("azure-asyncoperation") or lowered.get("location")
