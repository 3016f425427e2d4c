"""The AzureML v2 fake, extended with what rolling a model out to a batch deployment needs.

`FakeAzureMLServing` is `FakeAzureMLV2` (batch endpoints, v2 training, model registration: PUT
models/<name>/versions/<v>, immutable per version) plus:

- PUT batchEndpoints/<ep>/deployments/<d> (BatchDeployments_CreateOrUpdate, a long-running operation
  with final state via the original URI): the body is validated against the official 2023-10-01 spec
  (BatchDeploymentTrackedResource; no property BatchDeployment does not define, none it sets
  itself such as provisioningState), the model must be a registered model version. The answer is
  201 with `Azure-AsyncOperation` (an operation status URL) while the deployment is `Updating`;
  it ends `update_s` simulated seconds later. ARM refuses a PUT while an update is in flight (409
  Conflict) and has no cancel for it. A failed update (`fail_next_update`) leaves the deployment
  serving its previous model, `provisioningState` Failed, and the operation `Failed` with its error.
- GET .../locations/<region>/mfeOperationsStatus/<id>: the ARM async operation (`status`
  InProgress, Succeeded, Failed; `error` when it failed).
- PUT batchEndpoints/<ep> (BatchEndpoints_CreateOrUpdate; the PATCH of the spec takes only tags and
  identity, so `defaults.deploymentName` is changed by a PUT of the whole endpoint): validated
  against BatchEndpointTrackedResource; the default must name an existing deployment.
- GET workspaces/<ws>: the workspace's location (azure-ai-ml reads it before it writes a
  deployment). The Workspace model is in another spec file; this answer is checked for shape only.

`deployment_updates` lists every deployment update that started (one per accepted PUT), so a test
can assert that faults and retries never started a second one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from resources.storage import ObjectStore
from tests.support.fakes import specs
from tests.support.fakes.azureml_v2 import A
from tests.support.fakes.azureml_v2_training import FakeAzureMLV2, _strict
from tests.support.fakes.http import ARM, FakeHttpServer, Reply, Request

REGION = "westeurope"
IN_FLIGHT = ("Creating", "Updating")
# Where a model version lives, as a deployment's `model.assetId` names it (ARM id of the version).
_MODEL_ID = r"/models/(?P<name>[^/]+)/versions/(?P<ver>[^/]+)$"


@dataclass
class Operation:
    """One ARM long-running operation (a deployment or endpoint update)."""

    id: str
    target: str  # the deployment's name, or "" for the endpoint
    model: tuple[str, str] | None  # the model the deployment is to serve
    previous: tuple[str, str] | None  # the model it served before
    done_at: float
    fail: str | None = None
    status: str = "InProgress"  # InProgress, Succeeded, Failed


class FakeAzureMLServing(FakeAzureMLV2):
    """The v2 workspace with model registration, deployment updates and endpoint defaults."""

    def __init__(
        self,
        store: ObjectStore | None,
        *,
        update_s: float = 0.5,
        server: FakeHttpServer | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(store, server=server, **kw)
        self.update_s = update_s  # simulated seconds a deployment update takes
        self.fail_next_update: str | None = None  # the next deployment update fails with this message
        self.provisioning: dict[str, str] = {}  # deployment -> provisioningState (default Succeeded)
        self.deployment_properties: dict[str, dict[str, Any]] = {}  # deployment -> the last PUT's properties
        self.operations: dict[str, Operation] = {}
        self.deployment_updates: list[str] = []  # the deployment of every update that started
        self.endpoint_updates = 0
        self._serving_routes()

    def _serving_routes(self) -> None:
        r = self.route  # kept in `seen`, for the SDK parity tests
        r(
            "PUT",
            A + r"/batchEndpoints/(?P<ep>[^/]+)/deployments/(?P<dep>[^/]+)",
            "deployment_put",
            self._put_deployment,
            audience=ARM,
        )
        r("PUT", A + r"/batchEndpoints/(?P<ep>[^/]+)", "endpoint_put", self._put_endpoint, audience=ARM)
        r(
            "GET",
            r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.MachineLearningServices/locations/"
            r"(?P<region>[^/]+)/mfeOperationsStatus/(?P<op>[^/]+)",
            "operation",
            self._operation,
            audience=ARM,
        )
        r("GET", A, "workspace", self._workspace, audience=ARM)

    # ---- state ------------------------------------------------------------------------------------------
    def _advance(self) -> None:
        """Finish the operations whose time has come (on the shared time-scaled clock)."""
        now = self.clock.now()
        with self.server.lock:
            for op in self.operations.values():
                if op.status != "InProgress" or now < op.done_at:
                    continue
                if op.fail:
                    op.status = "Failed"
                    if op.target and op.previous is not None:
                        self.deployments[op.target] = op.previous  # the previous model keeps serving
                    if op.target:
                        self.provisioning[op.target] = "Failed"
                else:
                    op.status = "Succeeded"
                    if op.target:
                        self.provisioning[op.target] = "Succeeded"

    def in_flight(self, deployment: str) -> Operation | None:
        self._advance()
        return next(
            (o for o in self.operations.values() if o.target == deployment and o.status == "InProgress"), None
        )

    def _operation_url(self, op: Operation) -> str:
        return (
            f"{self.url}/subscriptions/{self.subscription}/providers/Microsoft.MachineLearningServices/locations/"
            f"{REGION}/mfeOperationsStatus/{op.id}?api-version=2023-10-01"
        )

    def _deployment_resource(self, name: str) -> dict[str, Any]:
        self._advance()
        res = super()._deployment_resource(name)
        props = res["properties"]
        for key, value in self.deployment_properties.get(name, {}).items():
            if key != "model":
                props[key] = value
        props["provisioningState"] = self.provisioning.get(name, "Succeeded")
        specs.validate(specs.MFE, "BatchDeploymentTrackedResource", res)
        return res

    def _endpoint_resource(self) -> dict[str, Any]:
        self._advance()
        if self.default_deployment is not None:
            return super()._endpoint_resource()
        # An endpoint with no deployment yet has no default (the spec's validator here takes no null).
        res = {
            "id": self._arm_id(f"batchEndpoints/{self.endpoint_name}"),
            "name": self.endpoint_name,
            "type": "Microsoft.MachineLearningServices/workspaces/batchEndpoints",
            "location": REGION,
            "properties": {
                "authMode": "AADToken",
                "scoringUri": self.scoring_uri,
                "provisioningState": "Succeeded",
            },
        }
        specs.validate(specs.MFE, "BatchEndpointTrackedResource", res)
        return res

    # ---- deployment update ------------------------------------------------------------------------------------
    def _put_deployment(self, req: Request) -> Reply:
        if (bad := self._arm_check(req)) is not None:
            return bad
        body = req.body
        try:
            if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
                raise specs.ContractError('the body must be {"location": ..., "properties": {...}}')
            specs.validate(specs.MFE, "BatchDeploymentTrackedResource", body)
            _strict("BatchDeployment", body["properties"], {"provisioningState"})
            extra = set(body) - {"location", "tags", "identity", "kind", "sku", "properties"}
            if extra:
                raise specs.ContractError(f"BatchDeploymentTrackedResource: {sorted(extra)} are read-only")
        except specs.ContractError as err:
            return _error(400, "UserError", str(err))
        props: dict[str, Any] = body["properties"]
        model = _model_key(props.get("model"))
        if model is None or model not in self.models:
            return _error(
                400,
                "UserError",
                f"model {(props.get('model') or {}).get('assetId')} is not a registered model",
            )
        name = req.match["dep"]
        if self.in_flight(name) is not None:
            return _error(
                409,
                "Conflict",
                f"deployment {name} has an operation in progress; wait until it completes before updating it",
            )
        op = Operation(
            uuid.uuid4().hex,
            name,
            model,
            self.deployments.get(name),
            self.clock.now() + self.update_s,
            self.fail_next_update,
        )
        self.fail_next_update = None
        with self.server.lock:
            self.operations[op.id] = op
            self.deployment_updates.append(name)
            created = name not in self.deployments
            self.deployments[name] = model
            self.deployment_properties[name] = {k: v for k, v in props.items() if k != "model"}
            self.provisioning[name] = "Creating" if created else "Updating"
            if self.default_deployment is None:
                self.default_deployment = name
        headers = {"Azure-AsyncOperation": self._operation_url(op), "x-ms-async-operation-timeout": "PT1H"}
        return Reply(201, self._deployment_resource(name), headers)

    def _operation(self, req: Request) -> Reply:
        if req.match["sub"] != self.subscription:
            return _error(404, "ResourceNotFound", f"subscription {req.match['sub']} not found")
        self._advance()
        op = self.operations.get(req.match["op"])
        if op is None:
            return _error(404, "NotFound", f"operation {req.match['op']} not found")
        answer: dict[str, Any] = {"id": req.path, "name": op.id, "status": op.status}
        if op.status == "Failed":
            answer["error"] = {"code": "DeploymentFailed", "message": op.fail}
        # ARM asks for a poll after whole seconds (azure-core takes "0" as "use your own interval").
        return Reply(200, answer, {"Retry-After": "1"} if op.status == "InProgress" else {})

    # ---- endpoint defaults ----------------------------------------------------------------------------------------
    def _put_endpoint(self, req: Request) -> Reply:
        if (bad := self._arm_check(req)) is not None:
            return bad
        body = req.body
        try:
            if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
                raise specs.ContractError('the body must be {"location": ..., "properties": {...}}')
            # EndpointAuthMode is `modelAsString`: the service takes its values in any case (azure-ai-ml
            # writes "aadToken"); compared here as the spec writes them.
            props = body["properties"]
            if isinstance(props.get("authMode"), str):
                props["authMode"] = _canonical(props["authMode"], "EndpointAuthMode")
            specs.validate(specs.MFE, "BatchEndpointTrackedResource", body)
            _strict("BatchEndpoint", body["properties"], {"provisioningState", "scoringUri", "swaggerUri"})
            extra = set(body) - {"location", "tags", "identity", "kind", "sku", "properties"}
            if extra:
                raise specs.ContractError(f"BatchEndpointTrackedResource: {sorted(extra)} are read-only")
        except specs.ContractError as err:
            return _error(400, "UserError", str(err))
        default = (
            (body["properties"].get("defaults") or {}).get("deploymentName")
        ) or self.default_deployment
        if default is not None and default not in self.deployments:
            return _error(400, "UserError", f"default deployment {default} does not exist on the endpoint")
        op = Operation(uuid.uuid4().hex, "", None, None, self.clock.now())
        with self.server.lock:
            self.operations[op.id] = op
            self.endpoint_updates += 1
            self.default_deployment = default
        headers = {"Azure-AsyncOperation": self._operation_url(op), "x-ms-async-operation-timeout": "PT1H"}
        return Reply(201, self._endpoint_resource(), headers)

    def _workspace(self, req: Request) -> Reply:
        if (bad := self._arm_check(req)) is not None:
            return bad
        return Reply(
            200,
            {
                "id": self._arm_id("").rstrip("/"),
                "name": self.workspace,
                "type": "Microsoft.MachineLearningServices/workspaces",
                "location": REGION,
                "properties": {"friendlyName": self.workspace, "provisioningState": "Succeeded"},
            },
        )


def _canonical(value: str, enum: str) -> str:
    """`value` spelled as the spec's `modelAsString` enum `enum` spells it (unchanged if it is not one)."""
    for known in specs.load_spec(specs.MFE)["definitions"][enum]["enum"]:
        if known.lower() == value.lower():
            return known
    return value


def _model_key(reference: Any) -> tuple[str, str] | None:
    """(name, version) of the model version a deployment's `model` refers to by id."""
    import re

    if not isinstance(reference, dict) or reference.get("referenceType") != "Id":
        return None
    m = re.search(_MODEL_ID, str(reference.get("assetId") or ""))
    return (m.group("name"), m.group("ver")) if m else None


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message}})
