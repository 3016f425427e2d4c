"""Rolling the promoted model out to an AzureML v2 batch deployment, against the stateful contract fake
(+ Azurite as the datastore): mnist_model_serving with AzureMLBatchDeploymentServing, and azure-ai-ml
driving the same routes."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.errors import DagsterExecutionInterruptedError

from assets.serving import mnist_model_serving
from resources.azure.errors import PermanentAzureError
from resources.compute.azureml import AzureMLBatchEndpointBackend
from resources.serving.azureml_batch import AzureMLBatchDeploymentServing
from resources.storage import ObjectStore
from tests.support.fakes.azureml_v2_serving import FakeAzureMLServing
from tests.support.fakes.http import FAULTS
from tests.support.remote import error_text, new_blob_store

pytestmark = pytest.mark.azurite

OLD = "models/mnist/m1/model"
NEW = "models/mnist/m2/model"
ROUTES = ("model", "model_put", "endpoint", "deployment", "deployment_put", "operation")


@pytest.fixture
def store(azurite: dict[str, str]) -> ObjectStore:
    store = new_blob_store(azurite)
    for folder in (OLD, NEW):
        store.put_bytes(f"{folder}/MLmodel", b"flavors:\n  sklearn: {}\n")
    store.put_json("models/mnist/current.json", {"version": "m2", "prefix": "models/mnist/m2", "model": NEW})
    return store


@pytest.fixture
def fake(store: ObjectStore) -> Iterator[FakeAzureMLServing]:
    fake = FakeAzureMLServing(store, mode="simulate", update_s=0.4).start()
    fake.deploy(OLD)  # mnist:1 on "blue", the endpoint's default: what deploy_batch.py left behind
    try:
        yield fake
    finally:
        fake.stop()


def workspace(fake: FakeAzureMLServing) -> dict[str, Any]:
    return {
        "subscription_id": fake.subscription,
        "resource_group": fake.resource_group,
        "workspace_name": fake.workspace,
        "datastore": fake.datastore,
        "arm_url": fake.url,
        "allow_http_loopback": True,
        "credential": "python:tests.support.fakes.http:fake_credential",
        "endpoint_name": fake.endpoint_name,
        "poll_initial_seconds": 0.05,
        "poll_floor_seconds": 0.1,
        "poll_max_seconds": 0.2,
        "request_timeout_seconds": 0.5,
    }


def serving(
    fake: FakeAzureMLServing,
    cls: type[AzureMLBatchDeploymentServing] = AzureMLBatchDeploymentServing,
    **kw: Any,
) -> AzureMLBatchDeploymentServing:
    return cls(**{**workspace(fake), **kw})


def roll_out(
    model_serving: AzureMLBatchDeploymentServing,
    store: ObjectStore,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [mnist_model_serving],
        resources={"storage": store, "model_serving": model_serving},
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def registrations(fake: FakeAzureMLServing) -> int:
    """Model versions created (a repeated PUT of the same version answers 200 and creates nothing)."""
    return len([c for c in fake.server.calls_to("model_put") if c.status == 201])


def scoring_guard(fake: FakeAzureMLServing, folder: str) -> str:
    """The scoring backend's check before every invocation: the deployment serves `folder`'s model."""
    scoring = AzureMLBatchEndpointBackend(**workspace(fake))
    name, deployment = scoring._deployment(scoring._endpoint())
    return scoring._check_model(name, deployment, folder)


def test_rollout_registers_once_updates_the_deployment_and_scoring_passes_its_model_check(
    fake: FakeAzureMLServing, store: ObjectStore
) -> None:
    with pytest.raises(PermanentAzureError, match="serves model mnist:1"):
        scoring_guard(fake, NEW)  # before: the mismatch guard refuses to score
    result = roll_out(serving(fake), store)
    assert result.success, error_text(result)
    assert fake.models[("mnist", "m2")] == f"azureml://datastores/{fake.datastore}/paths/{NEW}"
    assert registrations(fake) == 1 and fake.deployment_updates == ["blue"]
    assert fake.deployments["blue"] == ("mnist", "m2") and fake.provisioning["blue"] == "Succeeded"
    assert scoring_guard(fake, NEW) == "mnist:m2"
    assert {c.audience for c in fake.server.calls} == {"https://management.azure.com"}, "ARM tokens only"
    meta = result.asset_materializations_for_node("mnist_model_serving")[0].metadata
    assert meta["azureml_model"].value == "mnist:m2" and meta["deployment_updated"].value is True
    assert meta["made_default"].value is False and fake.endpoint_updates == 0
    # The update kept the rest of the deployment as it was (code, output action, mini-batch size).
    [put] = fake.server.calls_to("deployment_put")
    assert put.body["properties"]["codeConfiguration"]["scoringScript"] == "deploy/azureml/batch_score.py"
    assert "provisioningState" not in put.body["properties"]

    again = roll_out(serving(fake), store)
    assert again.success, error_text(again)
    assert registrations(fake) == 1 and fake.deployment_updates == ["blue"], "nothing to do the second time"
    meta = again.asset_materializations_for_node("mnist_model_serving")[0].metadata
    assert meta["deployment_updated"].value is False and meta["changed"].value is False


def test_a_named_deployment_is_made_the_endpoint_default(
    fake: FakeAzureMLServing, store: ObjectStore
) -> None:
    fake.deploy(OLD, deployment="green", default=False)
    result = roll_out(serving(fake, deployment_name="green"), store)
    assert result.success, error_text(result)
    assert fake.deployment_updates == ["green"] and fake.default_deployment == "green"
    assert fake.endpoint_updates == 1 and fake.deployments["blue"] == ("mnist", "1")
    [put] = fake.server.calls_to("endpoint_put")
    assert put.body["properties"]["defaults"] == {"deploymentName": "green"}
    assert "scoringUri" not in put.body["properties"]


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_at_every_call_still_one_registration_and_one_update(
    fake: FakeAzureMLServing, store: ObjectStore, fault: str
) -> None:
    for route in ROUTES:
        fake.server.inject(route, fault)
    result = roll_out(serving(fake), store)
    assert result.success, error_text(result)
    assert registrations(fake) == 1, "exactly one model registration"
    assert fake.deployment_updates == ["blue"], "exactly one deployment update"
    # A lost answer to the update is followed by reading the deployment (it shows the update in flight), not
    # by its operation URL, which was in the lost answer.
    polled = set(ROUTES) - ({"operation"} if fault == "timeout" else set())
    assert {c.route for c in fake.server.calls if c.fault == fault} == polled
    assert scoring_guard(fake, NEW) == "mnist:m2"
    meta = result.asset_materializations_for_node("mnist_model_serving")[0].metadata
    assert meta["deployment_updated"].value is True, "an update whose answer was lost still counts"


def test_failed_update_leaves_the_previous_model_serving_and_fails_with_the_reason(
    fake: FakeAzureMLServing, store: ObjectStore
) -> None:
    fake.fail_next_update = "ImageBuildFailure: the environment's conda file could not be resolved"
    result = roll_out(serving(fake), store)
    assert not result.success
    text = error_text(result)
    assert "RolloutFailed" in text
    assert "updating deployment 'blue' of batch endpoint 'mnist-batch' to model mnist:m2" in text
    assert (
        "failed: DeploymentFailed: ImageBuildFailure: the environment's conda file could not be resolved"
        in text
    )
    assert "The deployment still serves mnist:1" in text
    assert fake.deployments["blue"] == ("mnist", "1") and fake.provisioning["blue"] == "Failed"
    assert fake.deployment_updates == ["blue"]
    assert scoring_guard(fake, OLD) == "mnist:1", "the previous deployment still serves"
    # Once the cause is fixed, materializing again rolls out.
    retried = roll_out(serving(fake), store)
    assert retried.success, error_text(retried)
    assert fake.deployment_updates == ["blue", "blue"] and registrations(fake) == 1


def test_a_version_registered_from_another_folder_or_no_deployment_to_update_fails_clearly(
    fake: FakeAzureMLServing, store: ObjectStore
) -> None:
    fake.models[("mnist", "m2")] = f"azureml://datastores/{fake.datastore}/paths/models/elsewhere/model"
    result = roll_out(serving(fake), store)
    assert not result.success
    text = error_text(result)
    assert (
        "model mnist:m2 is registered from azureml://datastores/mnist_blob/paths/models/elsewhere/model"
        in text
    )
    assert f"not from the promoted model's folder azureml://datastores/mnist_blob/paths/{NEW}" in text
    assert "MNIST_AZUREML_MODEL_NAME" in text
    del fake.models[("mnist", "m2")]
    fake.default_deployment = None
    result = roll_out(serving(fake), store)
    assert not result.success
    text = error_text(result)
    assert "batch endpoint 'mnist-batch' has no default deployment to roll model m2 out to" in text
    assert "MNIST_AZUREML_BATCH_DEPLOYMENT" in text and "python -m deploy.azureml.deploy_batch" in text
    assert fake.deployment_updates == []


class InterruptedServing(AzureMLBatchDeploymentServing):
    """Terminates the Dagster run (as Dagster's interrupt does) while the update is in progress."""

    def _operation_done(self, scoring: Any, url: str) -> tuple[str, str | None] | None:
        done = super()._operation_done(scoring, url)
        if done is None:
            raise DagsterExecutionInterruptedError()
        return done


def test_cancel_while_waiting_stops_waiting_and_a_retry_reattaches_to_the_update_in_flight(
    fake: FakeAzureMLServing, store: ObjectStore
) -> None:
    fake.update_s = 3.0
    instance = dg.DagsterInstance.ephemeral()
    with pytest.raises(DagsterExecutionInterruptedError):
        dg.materialize(
            [mnist_model_serving],
            resources={"storage": store, "model_serving": serving(fake, InterruptedServing)},
            instance=instance,
        )
    # ARM has no cancel for a deployment update: it goes on; the old model serves until it ends.
    assert fake.deployment_updates == ["blue"] and fake.in_flight("blue") is not None
    messages = [e.user_message for e in instance.all_logs(instance.get_runs()[0].run_id)]
    assert any("ARM has no cancel for a deployment update" in m for m in messages)
    result = roll_out(serving(fake), store, instance)
    assert result.success, error_text(result)
    assert fake.deployment_updates == ["blue"], "the retry waited for the update in flight, sent none"
    assert len(fake.server.calls_to("deployment_put")) == 1
    meta = result.asset_materializations_for_node("mnist_model_serving")[0].metadata
    assert meta["deployment_updated"].value is True
    assert scoring_guard(fake, NEW) == "mnist:m2"


def test_the_fake_refuses_a_second_update_in_flight_and_an_unregistered_model(
    fake: FakeAzureMLServing, store: ObjectStore
) -> None:
    from resources.azure.rest import ARM_SCOPE, AzureRest
    from tests.support.fakes.http import FakeCredential

    rest = AzureRest(FakeCredential(), ARM_SCOPE, service="test", allow_http_loopback=True)
    url = f"{fake.url}{fake._arm_id(f'batchEndpoints/{fake.endpoint_name}/deployments/blue')}"
    resource = rest.call("GET", url, params={"api-version": "2023-10-01"}, what="read").json()
    body = {"location": resource["location"], "properties": dict(resource["properties"])}
    with pytest.raises(PermanentAzureError, match="read-only"):
        rest.call("PUT", url, params={"api-version": "2023-10-01"}, json_body=body, what="put", retry=False)
    del body["properties"]["provisioningState"]
    body["properties"]["model"] = {"referenceType": "Id", "assetId": fake._arm_id("models/mnist/versions/9")}
    with pytest.raises(PermanentAzureError, match="not a registered model"):
        rest.call("PUT", url, params={"api-version": "2023-10-01"}, json_body=body, what="put", retry=False)
    body["properties"]["model"]["assetId"] = fake._arm_id("models/mnist/versions/1")
    body["properties"]["unknownSetting"] = 1
    with pytest.raises(PermanentAzureError, match="'unknownSetting' was unexpected"):
        rest.call("PUT", url, params={"api-version": "2023-10-01"}, json_body=body, what="put", retry=False)
    del body["properties"]["unknownSetting"]
    answer = rest.call(
        "PUT", url, params={"api-version": "2023-10-01"}, json_body=body, what="put", retry=False
    )
    assert answer.status == 201 and "Azure-AsyncOperation" in answer.headers
    with pytest.raises(PermanentAzureError, match="409"):
        rest.call("PUT", url, params={"api-version": "2023-10-01"}, json_body=body, what="put", retry=False)
    assert fake.deployment_updates == ["blue"]


def test_real_sdk_registers_and_updates_the_deployment_on_the_fake(
    fake: FakeAzureMLServing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """azure-ai-ml's models.create_or_update and batch_deployments.begin_create_or_update (an LRO it
    polls through Azure-AsyncOperation) against the same routes the rollout uses."""
    pytest.importorskip("azure.ai.ml", reason="azure-ai-ml is in the dev extra")
    from tests.support.azureml_sdk import sdk_roll_out

    served = sdk_roll_out(fake, tmp_path, monkeypatch, NEW, "m2")
    assert served == ("mnist", "m2") == fake.deployments["blue"]
    # The SDK writes the workspace-qualified datastore URI; the service takes both forms.
    assert (
        fake._short_uri(fake.models[("mnist", "m2")]) == f"azureml://datastores/{fake.datastore}/paths/{NEW}"
    )
    assert fake.deployment_updates == ["blue"] and fake.provisioning["blue"] == "Succeeded"
    assert scoring_guard(fake, NEW) == "mnist:m2"


@pytest.mark.slow
def test_a_promoted_model_is_rolled_out_by_automation_and_scoring_on_the_endpoint_uses_it(
    store: ObjectStore, synthetic_source: Path, tmp_path: Path
) -> None:
    """raw -> mnist_model (trained locally, check passed) -> the automation condition requests the rollout ->
    mnist_model_serving on the fake -> mnist_predictions on the batch endpoint, which runs the real scoring
    script with the model the rollout deployed, without anybody running deploy_batch.py."""
    from assets.model import TrainingConfig, mnist_model
    from assets.predictions import INFERENCE_BATCHES, mnist_predictions
    from assets.raw_mnist import raw_mnist
    from resources.compute import LocalProcessBackend
    from resources.mnist_source import MnistSource
    from resources.prediction_checks import PredictionChecks
    from resources.quality import QualityGate
    from tests.support.synthetic import write_batch

    instance = dg.DagsterInstance.ephemeral()
    fake = FakeAzureMLServing(store, mode="process").start()
    fake.deploy(OLD)  # what deploy_batch.py deployed once
    try:
        local = LocalProcessBackend(work_dir=str(tmp_path / "compute"))
        resources = {
            "storage": store,
            "training_compute": local,
            "ingest_compute": local,
            "scoring_compute": AzureMLBatchEndpointBackend(
                **{**workspace(fake), "request_timeout_seconds": 30}
            ),
            "model_serving": serving(fake, request_timeout_seconds=30),
            "mnist_source": MnistSource(location=str(synthetic_source)),
            "quality": QualityGate(min_accuracy=0.8),
            "prediction_checks": PredictionChecks(),
        }
        assets = [raw_mnist, mnist_model, mnist_predictions, mnist_model_serving]
        defs = dg.Definitions(assets=assets, resources=resources)
        config = dg.RunConfig(ops={"mnist_model": TrainingConfig(pca_components=20, kernel_components=200)})
        # The automation sensor ticks all along (a first tick sees a model that was there before it: eager
        # rolls out what is updated after that).
        before = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert before.total_requested == 0
        trained = dg.materialize(
            [raw_mnist, mnist_model], resources=resources, instance=instance, run_config=config
        )
        assert trained.success, error_text(trained)
        current = store.get_json("models/mnist/current.json")

        requested = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=before.cursor)
        assert requested.get_num_requested(mnist_model_serving.key) == 1, "the rollout follows the promotion"
        rolled = roll_out(resources["model_serving"], store, instance)
        assert rolled.success, error_text(rolled)
        assert fake.deployments["blue"] == ("mnist", current["version"]) and fake.deployment_updates == [
            "blue"
        ]

        store.put_file("inference/b1/images.idx3-ubyte.gz", write_batch(tmp_path / "b1", n=50))
        store.put_bytes("inference/b1/_SUCCESS", b"")
        instance.add_dynamic_partitions(INFERENCE_BATCHES, ["b1"])
        scored = dg.materialize(
            [mnist_predictions], resources=resources, instance=instance, partition_key="b1"
        )
        assert scored.success, error_text(scored)
        meta = scored.asset_materializations_for_node("mnist_predictions")[0].metadata
        assert meta["images"].value == 50 and meta["azureml_model"].value == f"mnist:{current['version']}"
        assert fake.invocations == 1
    finally:
        fake.stop()
