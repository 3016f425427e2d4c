"""AzureML compute: training on a v1 PipelineEndpoint or as a v2 command job, scoring on a v2 batch endpoint."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, PositiveFloat

from orchestration.settings.base import EnvironmentSettings, EnvReference, variable
from orchestration.settings.compute import ComputeRole


def _true_or_false(value: Any) -> Any:
    if isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise ValueError("expected true or false")
        return value.lower() == "true"
    return value


# Exactly `true` or `false`, in any case (not pydantic's wider yes/no/1/0).
TrueOrFalse = Annotated[bool, BeforeValidator(_true_or_false)]
# How training runs on AzureML: a v1 PipelineEndpoint run (what ADF's Machine Learning Execute Pipeline
# activity starts) or a v2 command job.
TrainingJob = Literal["pipeline_endpoint", "command_job"]


class AzureMLSettings(EnvironmentSettings):
    """AzureML compute: training on a v1 PipelineEndpoint or as a v2 command job, and scoring on a v2 batch
    endpoint, for the roles whose compute is `azureml`.

    Credentials: a service principal when AZURE_CLIENT_SECRET is set, else DefaultAzureCredential
    (managed identity, `az login`).
    """

    subscription_id: str | None = variable(
        "MNIST_AZUREML_SUBSCRIPTION", None, "subscription id of the workspace"
    )
    resource_group: str | None = variable(
        "MNIST_AZUREML_RESOURCE_GROUP", None, "resource group of the workspace"
    )
    workspace_name: str | None = variable("MNIST_AZUREML_WORKSPACE", None, "workspace name")
    region: str | None = variable(
        "MNIST_AZUREML_REGION",
        None,
        "workspace region, e.g. westeurope (v1 pipelines and run history, where v2 training and scoring read job "
        "logs and errors, are https://<region>.api.azureml.ms)",
    )
    service_url: str | None = variable(
        "MNIST_AZUREML_SERVICE_URL", None, "v1 pipelines/run-history base URL instead of the regional one"
    )
    arm_url: str = variable(
        "MNIST_AZUREML_ARM_URL",
        "https://management.azure.com",
        "Azure Resource Manager URL, for v2 batch endpoints, command jobs and models",
    )
    datastore: str = variable(
        "MNIST_AZUREML_DATASTORE",
        "workspaceblobstore",
        "datastore registered on the project's Blob container",
    )
    pipeline_endpoint: str = variable(
        "MNIST_AZUREML_PIPELINE_ENDPOINT", "mnist-training", "v1: training PipelineEndpoint name"
    )
    pipeline_endpoint_id: str | None = variable(
        "MNIST_AZUREML_PIPELINE_ENDPOINT_ID", None, "v1: training PipelineEndpoint id (instead of its name)"
    )
    pipeline_version: str | None = variable(
        "MNIST_AZUREML_PIPELINE_VERSION",
        None,
        "v1: pin a pipeline version (unset: the endpoint's default version)",
    )
    training_experiment: str = variable(
        "MNIST_AZUREML_TRAINING_EXPERIMENT", "mnist-training", "experiment of training runs (v1) or jobs (v2)"
    )
    pipes: TrueOrFalse = variable(
        "MNIST_AZUREML_PIPES",
        True,
        "v1: true passes the Dagster Pipes bootstrap as a pipeline parameter; false lets allow_reuse work",
    )
    training: TrainingJob = variable(
        "MNIST_AZUREML_TRAINING",
        "pipeline_endpoint",
        "how training runs: 'pipeline_endpoint' (v1, what ADF's Machine Learning Execute Pipeline starts) or "
        "'command_job' (v2, a command job on a compute cluster)",
    )
    compute_cluster: str | None = variable(
        "MNIST_AZUREML_COMPUTE_CLUSTER", None, "v2 training: the compute cluster command jobs run on"
    )
    training_environment: str = variable(
        "MNIST_AZUREML_TRAINING_ENVIRONMENT",
        "mnist-workload:1",
        "v2 training: registered environment 'name:version' (or its ARM id) with workload/requirements.txt",
    )
    model_name: str = variable(
        "MNIST_AZUREML_MODEL_NAME",
        "mnist",
        "the registered model each model folder becomes (version: the Dagster model version), by v2 training "
        "and by the rollout to the batch deployment",
    )
    batch_endpoint: str = variable(
        "MNIST_AZUREML_BATCH_ENDPOINT", "mnist-batch", "v2: scoring batch endpoint name"
    )
    batch_deployment: str | None = variable(
        "MNIST_AZUREML_BATCH_DEPLOYMENT",
        None,
        "v2: deployment to invoke (unset: the endpoint's default deployment)",
    )
    rollout_timeout: PositiveFloat = variable(
        "MNIST_AZUREML_ROLLOUT_TIMEOUT",
        3600.0,
        "v2: seconds a rollout waits for the batch deployment's update (mnist_model_serving) before it fails; "
        "the update itself goes on",
    )
    scoring_experiment: str = variable(
        "MNIST_AZUREML_SCORING_EXPERIMENT", "mnist-scoring", "v2: experiment of scoring jobs"
    )
    poll_initial: PositiveFloat = variable(
        "MNIST_AZUREML_POLL_INITIAL", 1.0, "first status poll after this many seconds"
    )
    poll_max: PositiveFloat = variable(
        "MNIST_AZUREML_POLL_MAX", 30.0, "longest wait between status polls, in seconds"
    )
    tenant_id: EnvReference = variable(
        "AZURE_TENANT_ID",
        None,
        "service principal tenant (with AZURE_CLIENT_SECRET)",
        reference=True,
    )
    client_id: EnvReference = variable(
        "AZURE_CLIENT_ID",
        None,
        "service principal (or user-assigned managed identity) client id",
        reference=True,
    )
    client_secret: EnvReference = variable(
        "AZURE_CLIENT_SECRET",
        None,
        "service principal secret; unset: DefaultAzureCredential (managed identity, az login)",
        secret=True,
    )

    def missing(self, roles: list[ComputeRole]) -> list[str]:
        """The variables that running `roles` on AzureML needs and that are unset."""
        needed = {
            "MNIST_AZUREML_SUBSCRIPTION": self.subscription_id,
            "MNIST_AZUREML_RESOURCE_GROUP": self.resource_group,
            "MNIST_AZUREML_WORKSPACE": self.workspace_name,
        }
        if "training" in roles:
            needed["MNIST_AZUREML_REGION"] = self.region or self.service_url
            if self.training == "command_job":
                needed["MNIST_AZUREML_COMPUTE_CLUSTER"] = self.compute_cluster
        return [name for name, value in needed.items() if not value]

    def identity(self) -> dict[str, Any]:
        """The identity variables that are set, as references (the backends' tenant_id, client_id, client_secret)."""
        given = {
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        return {field: ref for field, ref in given.items() if ref is not None}
