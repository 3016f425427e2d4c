"""mnist_model_serving: its automation condition (after the model's blocking check passed, and only then),
the local serving resource, and which serving the settings choose."""

import datetime
from pathlib import Path

import dagster as dg
import pytest

from assets.model import ACCURACY_CHECK
from assets.serving import mnist_model_serving
from orchestration.definitions import build_definitions
from orchestration.rollout import ROLLOUT_SENSOR
from orchestration.settings import Settings
from resources.serving import LocalModelServing
from resources.storage import LocalObjectStore

MODEL = dg.AssetKey("mnist_model")
SERVING = mnist_model_serving.key


class ModelConfig(dg.Config):
    passed: bool


@dg.asset(
    name="mnist_model",
    check_specs=[dg.AssetCheckSpec(ACCURACY_CHECK, asset="mnist_model", blocking=True)],
)
def model_stub(config: ModelConfig) -> dg.MaterializeResult:
    """Stands in for mnist_model: the same key and the same blocking check, passing or not as configured."""
    return dg.MaterializeResult(
        check_results=[dg.AssetCheckResult(check_name=ACCURACY_CHECK, passed=config.passed)]
    )


def train(instance: dg.DagsterInstance, passed: bool) -> None:
    dg.materialize(
        [model_stub],
        instance=instance,
        run_config=dg.RunConfig(ops={"mnist_model": ModelConfig(passed=passed)}),
        raise_on_error=False,
    )


def test_the_rollout_is_requested_after_the_models_blocking_check_passed_and_only_then(
    tmp_path: Path,
) -> None:
    defs = dg.Definitions(
        assets=[model_stub, mnist_model_serving],
        resources={"storage": LocalObjectStore(root=str(tmp_path)), "model_serving": LocalModelServing()},
    )
    instance = dg.DagsterInstance.ephemeral()
    now = datetime.datetime.now(datetime.UTC)
    cursor = None

    def tick() -> int:
        """One evaluation, as the automation sensor's tick makes it: how many rollouts it requests."""
        nonlocal cursor, now
        now += datetime.timedelta(minutes=1)
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=cursor, evaluation_time=now
        )
        cursor = result.cursor
        assert result.get_num_requested(MODEL) == 0, "the model itself is never automated"
        return result.get_num_requested(SERVING)

    assert tick() == 0, "no model yet"
    train(instance, passed=False)
    assert tick() == 0, "the model failed its blocking check: nothing is rolled out"
    assert tick() == 0
    train(instance, passed=True)
    assert tick() == 1, "a model that passed its check is rolled out"
    assert tick() == 0, "once per materialization of the model"
    train(instance, passed=False)
    assert tick() == 0, "a later model that fails its check is not rolled out"
    train(instance, passed=True)
    assert tick() == 1


def test_local_serving_reports_the_promoted_folder_and_deploys_nothing(tmp_path: Path) -> None:
    store = LocalObjectStore(root=str(tmp_path))
    store.put_json("models/mnist/current.json", {"version": "v1", "model": "models/mnist/v1/model"})
    store.put_bytes("models/mnist/v1/model/MLmodel", b"flavors: {}\n")
    result = dg.materialize(
        [mnist_model_serving], resources={"storage": store, "model_serving": LocalModelServing()}
    )
    meta = result.asset_materializations_for_node("mnist_model_serving")[0].metadata
    assert meta["model_version"].value == "v1" and meta["served"].value == "models/mnist/v1/model"
    assert meta["changed"].value is False and "nothing to deploy" in str(meta["serving"].value)


def test_a_promoted_folder_without_mlmodel_fails_with_what_and_where(tmp_path: Path) -> None:
    store = LocalObjectStore(root=str(tmp_path))
    store.put_json("models/mnist/current.json", {"version": "v1", "model": "models/mnist/v1/model"})
    result = dg.materialize(
        [mnist_model_serving],
        resources={"storage": store, "model_serving": LocalModelServing()},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = result.get_step_failure_events()
    text = str(failure.step_failure_data.error)
    assert "promoted model v1" in text and "holds no MLmodel file" in text and "models/mnist/v1/model" in text


AZUREML = {
    "MNIST_SCORING_COMPUTE": "azureml",
    "MNIST_AZUREML_SUBSCRIPTION": "sub",
    "MNIST_AZUREML_RESOURCE_GROUP": "rg",
    "MNIST_AZUREML_WORKSPACE": "ws",
    "MNIST_AZUREML_BATCH_DEPLOYMENT": "green",
    "MNIST_AZUREML_ROLLOUT_TIMEOUT": "600",
}


@pytest.mark.parametrize(
    ("env", "kind"), [({}, "LocalModelServing"), (AZUREML, "AzureMLBatchDeploymentServing")]
)
def test_serving_follows_the_scoring_backend_and_the_sensor_runs_from_the_start(
    env: dict[str, str], kind: str
) -> None:
    settings = Settings.from_env(env)
    serving = settings.resources()["model_serving"]
    assert type(serving).__name__ == kind
    if env:
        assert (serving.endpoint_name, serving.deployment_name) == ("mnist-batch", "green")  # type: ignore[attr-defined]
        assert serving.update_timeout_seconds == 600  # type: ignore[attr-defined]
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def(ROLLOUT_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    condition = defs.resolve_asset_graph().get(SERVING).automation_condition
    assert condition is not None and "blocking checks passed" in str(condition.get_label())
