"""The one place that chooses local or Azure implementations: resources built from the settings.

Secrets reach the resources as `dg.EnvVar` references (see `orchestration.settings.base`); Dagster
resolves them when a run starts. The AzureML backends are imported only when chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from orchestration.settings.compute import COMPUTE_CHOICES, ComputeRole
from orchestration.settings.errors import SettingsError
from resources.blob_events import BlobEventQueue
from resources.compute import ComputeBackend, LocalProcessBackend
from resources.compute.batch_tasks import AzureBatchBackend
from resources.mnist_source import MnistSource
from resources.prediction_checks import PredictionChecks
from resources.quality import QualityGate
from resources.serving import LocalModelServing, ModelServing
from resources.storage import AzureBlobObjectStore, LocalObjectStore, ObjectStore

if TYPE_CHECKING:
    from orchestration.settings.aggregate import Settings
    from resources.compute.batch_tasks import PoolMode

# Resource keys of the storage queues the event sensors read (see orchestration.sensors.factory).
INFERENCE_EVENTS = "inference_events"
TRAINING_EVENTS = "training_events"


def resources(settings: Settings) -> dict[str, Any]:
    """Every resource of the code location, by resource key."""
    events: dict[str, Any] = {}
    if settings.sensors.events:
        events = {
            INFERENCE_EVENTS: event_queue(settings, settings.sensors.inference_queue),
            TRAINING_EVENTS: event_queue(settings, settings.sensors.training_queue),
        }
    return {
        **events,
        "storage": object_store(settings),
        "training_compute": compute_backend(settings, "training"),
        "scoring_compute": compute_backend(settings, "scoring"),
        "ingest_compute": compute_backend(settings, "ingest"),
        "mnist_source": MnistSource(location=settings.source.location, checksums=settings.source.checksums),
        "quality": QualityGate(min_accuracy=settings.quality.min_accuracy),
        "model_serving": model_serving(settings),
        "prediction_checks": PredictionChecks(
            drift_psi_threshold=settings.prediction_checks.drift_psi_threshold,
            low_confidence_probability=settings.prediction_checks.low_confidence_probability,
            low_confidence_max_share=settings.prediction_checks.low_confidence_max_share,
        ),
    }


def object_store(settings: Settings) -> ObjectStore:
    storage = settings.storage
    if storage.kind == "local":
        return LocalObjectStore(root=str(storage.data_dir))
    return AzureBlobObjectStore(
        container=storage.container, account_url=storage.account_url, **storage.credentials()
    )


def event_queue(settings: Settings, queue: str) -> BlobEventQueue:
    """The storage queue `queue`, on the storage account, with the storage credentials."""
    return BlobEventQueue(
        queue=queue, account_url=settings.sensors.queue_url, **settings.storage.credentials()
    )


def compute_backend(settings: Settings, role: ComputeRole) -> ComputeBackend:
    """The backend that runs one role's workload tasks (`training`, `scoring` or `ingest`)."""
    choice = settings.compute.for_role(role)
    match choice:
        case "local":
            return LocalProcessBackend(work_dir=str(settings.compute.work_dir))
        case "azureml":
            return azureml_backend(settings, role)
        case "azure_batch":
            return azure_batch_backend(settings)
    raise SettingsError(f"unknown compute {choice!r}; expected one of {', '.join(COMPUTE_CHOICES)}")


def azureml_backend(settings: Settings, role: ComputeRole) -> ComputeBackend:
    """AzureML: training on the v1 PipelineEndpoint or as a v2 command job, scoring on the v2 batch endpoint."""
    from resources.compute.azureml import (
        AzureMLBatchEndpointBackend,
        AzureMLCommandJobBackend,
        AzureMLPipelineBackend,
    )

    if role == "ingest":
        raise SettingsError(
            "MNIST_INGEST_COMPUTE=azureml: AzureML runs training (v1 pipeline) and scoring (v2 batch "
            "endpoint); ingest runs on local or azure_batch"
        )
    aml = settings.azureml
    common: dict[str, Any] = {
        # Checked by Settings.from_env for the roles that run on AzureML.
        "subscription_id": aml.subscription_id,
        "resource_group": aml.resource_group,
        "workspace_name": aml.workspace_name,
        "datastore": aml.datastore,
        "poll_initial_seconds": aml.poll_initial,
        "poll_max_seconds": aml.poll_max,
        **aml.identity(),
    }
    if role == "training" and aml.training == "command_job":
        return AzureMLCommandJobBackend(
            **common,
            arm_url=aml.arm_url,
            region=aml.region,
            service_url=aml.service_url,
            compute_name=str(aml.compute_cluster),  # checked by Settings.from_env for command_job
            environment=aml.training_environment,
            experiment_name=aml.training_experiment,
            model_name=aml.model_name,
        )
    if role == "training":
        return AzureMLPipelineBackend(
            **common,
            region=aml.region,
            service_url=aml.service_url,
            # An endpoint id, when given, names the endpoint instead of its name.
            pipeline_endpoint=None if aml.pipeline_endpoint_id else aml.pipeline_endpoint,
            pipeline_endpoint_id=aml.pipeline_endpoint_id,
            pipeline_version=aml.pipeline_version,
            experiment_name=aml.training_experiment,
            pipes=aml.pipes,
        )
    return AzureMLBatchEndpointBackend(
        **common,
        arm_url=aml.arm_url,
        endpoint_name=aml.batch_endpoint,
        deployment_name=aml.batch_deployment,
        experiment_name=aml.scoring_experiment,
        region=aml.region,  # run history: the batch job's logs and errors
        service_url=aml.service_url,
    )


def model_serving(settings: Settings) -> ModelServing:
    """Serving follows scoring: the AzureML batch deployment that scoring invokes, else nothing to deploy
    (local and Azure Batch scoring read the promoted model folder themselves)."""
    if settings.compute.for_role("scoring") != "azureml":
        return LocalModelServing()
    from resources.serving.azureml_batch import AzureMLBatchDeploymentServing

    aml = settings.azureml
    return AzureMLBatchDeploymentServing(
        # Checked by Settings.from_env, since scoring runs on AzureML.
        subscription_id=str(aml.subscription_id),
        resource_group=str(aml.resource_group),
        workspace_name=str(aml.workspace_name),
        datastore=aml.datastore,
        arm_url=aml.arm_url,
        endpoint_name=aml.batch_endpoint,
        deployment_name=aml.batch_deployment,
        model_name=aml.model_name,
        update_timeout_seconds=aml.rollout_timeout,
        poll_initial_seconds=aml.poll_initial,
        poll_max_seconds=aml.poll_max,
        **aml.identity(),
    )


def azure_batch_backend(settings: Settings) -> AzureBatchBackend:
    """Azure Batch, configured from the MNIST_AZBATCH_* / AZURE_BATCH_* settings (checked by Settings.from_env)."""
    batch = settings.azure_batch
    publisher, offer, sku = batch.image_parts
    return AzureBatchBackend(
        account_url=batch.required_account_url(),
        account_name=batch.account_name,
        account_key=batch.account_key,
        pool_id=batch.pool_id,
        vm_size=batch.vm_size,
        image_publisher=publisher,
        image_offer=offer,
        image_sku=sku,
        node_agent_sku_id=batch.node_agent_sku_id,
        node_count=batch.node_count,
        autoscale_formula=batch.autoscale_formula,
        pool_mode=cast("PoolMode", batch.pool_mode),  # one of POOL_MODES, checked when read
        job_retention_hours=batch.job_retention_hours,
    )


# ---- concurrency pools: one per compute target (orchestration.step_policies) ---------------------
TRAINING_KIND: tuple[ComputeRole, ...] = ("ingest", "training")  # what decides the model: one run at a time


def concurrency_pool(settings: Settings, role: ComputeRole) -> str:
    """The concurrency pool of the compute target a role's tasks run on.

    Roles on the same target share it (and its limit): an AzureML compute cluster, pipeline endpoint or
    batch endpoint, an Azure Batch pool (or, for ephemeral auto pools, the account's quota). Local
    tasks run beside their run worker, which in production is a container of its own, so there the pool
    is the kind of work: `local:training` (ingest and training) or `local:scoring`.
    """
    choice = settings.compute.for_role(role)
    if choice == "local":
        return "local:training" if role in TRAINING_KIND else "local:scoring"
    if choice == "azure_batch":
        batch = settings.azure_batch
        if batch.pool_mode == "ephemeral":
            host = urlsplit(batch.account_url or "").hostname or "default"
            return f"azure-batch-account:{batch.account_name or host.split('.')[0]}"
        return f"azure-batch-pool:{batch.pool_id}"
    aml = settings.azureml
    if role == "training" and aml.training == "command_job":
        return f"azureml-cluster:{aml.compute_cluster}"
    if role == "training":
        return f"azureml-pipeline-endpoint:{aml.pipeline_endpoint_id or aml.pipeline_endpoint}"
    return f"azureml-batch-endpoint:{aml.batch_endpoint}"


def pool_limit(settings: Settings, role: ComputeRole) -> int:
    """How many runs may use the pool of `role`'s compute target at once: 1 when ingest or training
    uses it (one training at a time), else MNIST_POOL_SCORING_LIMIT."""
    pool = concurrency_pool(settings, role)
    if any(concurrency_pool(settings, other) == pool for other in TRAINING_KIND):
        return 1
    return settings.pools.scoring_limit
