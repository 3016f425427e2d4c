import pytest

from orchestration.settings import Settings, SettingsError
from resources.storage import AzureBlobObjectStore, InvalidObjectName, LocalObjectStore, validate_name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("../etc/passwd", "'..'"),
        ("a/../../b", "'..'"),
        ("/abs/path", "absolute"),
        ("C:/windows", "absolute"),
        ("a\\b", "backslash"),
        ("a//b", "empty"),
        ("a/./b", "'.'"),
        ("a/b/", "empty"),
        ("bad\x00name", "control"),
        ("x" * 1025, "more than 1024"),
        (".staging/x", "reserved"),
    ],
)
def test_bad_names_refused(name: str, problem: str) -> None:
    with pytest.raises(InvalidObjectName, match=problem):
        validate_name(name)


@pytest.mark.parametrize(
    "name", ["raw/mnist/x.gz", "inference/batch 1/ünïcødé ✓.idx", "a" * 1024, "a/.hidden"]
)
def test_good_names_allowed(name: str) -> None:
    assert validate_name(name) == name


def test_defaults_need_no_environment() -> None:
    s = Settings.from_env({})
    assert s.storage.kind == "local" and s.compute.default == "local" and s.quality.min_accuracy == 0.97
    assert isinstance(s.object_store(), LocalObjectStore)


def test_unknown_setting_is_an_error() -> None:
    with pytest.raises(SettingsError, match=r"unknown setting\(s\) MNIST_SOURC.*known MNIST_\* settings are"):
        Settings.from_env({"MNIST_SOURC": "/tmp/x"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MNIST_STORAGE": "s3"}, r"MNIST_STORAGE: expected one of local, azure_blob, found 's3'"),
        ({"MNIST_MIN_ACCURACY": "high"}, r"expected a number between 0 and 1, found 'high'"),
        ({"MNIST_MIN_ACCURACY": "1.5"}, r"between 0 and 1"),
        ({"MNIST_STORAGE": "azure_blob"}, r"needs AZURE_STORAGE_ACCOUNT_URL"),
    ],
)
def test_bad_values_are_explained(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_secrets_stay_in_the_environment() -> None:
    secret = "c2VjcmV0LWtleS12YWx1ZQ=="
    s = Settings.from_env(
        {
            "MNIST_STORAGE": "azure_blob",
            "AZURE_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net",
            "AZURE_STORAGE_KEY": secret,
        }
    )
    assert secret not in repr(s)
    store = s.object_store()
    assert isinstance(store, AzureBlobObjectStore)
    # The resource carries a reference to the variable, not its value.
    assert secret not in repr(store.__dict__)
    assert "AZURE_STORAGE_KEY" in repr(store.__dict__)


def test_every_bad_value_names_the_variable_what_was_expected_and_what_was_found() -> None:
    for env, message in [
        ({"MNIST_SENSOR_INTERVAL": "0"}, "MNIST_SENSOR_INTERVAL: expected a positive int, found '0'"),
        ({"MNIST_SENSOR_INTERVAL": "5.0"}, "MNIST_SENSOR_INTERVAL: expected a positive int, found '5.0'"),
        (
            {"MNIST_BATCH_QUIET_SECONDS": "soon"},
            "MNIST_BATCH_QUIET_SECONDS: expected a positive float, found 'soon'",
        ),
        (
            {"MNIST_BATCH_MARKER": "a/b"},
            "MNIST_BATCH_MARKER: expected a file name like _SUCCESS, found 'a/b'",
        ),
        ({"MNIST_COMPUTE": "gpu"}, "MNIST_COMPUTE: expected one of local, azureml, azure_batch, found 'gpu'"),
        ({"MNIST_AZUREML_PIPES": "yes"}, "MNIST_AZUREML_PIPES: expected true or false, found 'yes'"),
    ]:
        with pytest.raises(SettingsError) as error:
            Settings.from_env(env)
        assert str(error.value) == message


def test_empty_variables_count_as_unset_and_gateway_variables_are_the_gateways() -> None:
    s = Settings.from_env({"MNIST_STORAGE": "", "MNIST_SENSOR_INTERVAL": "", "MNIST_GATEWAY_ANYTHING": "x"})
    assert s.storage.kind == "local" and s.sensors.interval_seconds == 5
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"MNIST_SOURC": "/tmp/x"})
    assert "MNIST_SOURCE," in str(error.value) and "MNIST_GATEWAY" not in str(error.value)


def test_defaults_of_the_settings_are_the_resources_own() -> None:
    """The settings pass every value explicitly: unset, each equals the resource's own default."""
    from resources.compute.azureml import AzureMLBatchEndpointBackend, AzureMLPipelineBackend
    from resources.compute.batch_tasks import AzureBatchBackend

    batch = Settings.from_env(
        {
            "MNIST_STORAGE": "azure_blob",
            "AZURE_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net",
            "MNIST_COMPUTE": "azure_batch",
            "AZURE_BATCH_ACCOUNT_URL": "https://acct.westeurope.batch.azure.com",
        }
    )
    assert batch.compute_backend("training") == AzureBatchBackend(
        account_url="https://acct.westeurope.batch.azure.com"
    )
    azureml = Settings.from_env(
        {
            "MNIST_COMPUTE": "azureml",
            "MNIST_AZUREML_SUBSCRIPTION": "s",
            "MNIST_AZUREML_RESOURCE_GROUP": "r",
            "MNIST_AZUREML_WORKSPACE": "w",
            "MNIST_AZUREML_REGION": "westeurope",
        }
    )
    assert azureml.compute_backend("training") == AzureMLPipelineBackend(
        subscription_id="s",
        resource_group="r",
        workspace_name="w",
        region="westeurope",
        pipeline_endpoint="mnist-training",
    )
    assert azureml.compute_backend("scoring") == AzureMLBatchEndpointBackend(
        subscription_id="s", resource_group="r", workspace_name="w", region="westeurope"
    )
