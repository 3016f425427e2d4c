"""Settings: the one place that reads the environment and chooses local or Azure implementations.

Every variable the project understands is listed in `KNOWN`; a variable with a project prefix that is
not known is an error (a typo must not silently fall back to a default).
Secrets are never read here: they are passed to resources as `dg.EnvVar`, resolved only at run time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dagster as dg

from orchestration.sensors import SensorSettings
from orchestration.sensors.completeness import BatchRules
from resources.blob_events import BlobEventQueue
from resources.compute import ComputeBackend, LocalProcessBackend
from resources.compute.batch_tasks import POOL_MODES, AzureBatchBackend
from resources.mnist_source import CANONICAL_URL, MnistSource
from resources.quality import QualityGate
from resources.storage import AzureBlobObjectStore, LocalObjectStore, ObjectStore

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PREFIX = "MNIST_"

KNOWN: dict[str, str] = {
    "MNIST_STORAGE": "where data lives: 'local' (default, a directory) or 'azure_blob'",
    "MNIST_DATA_DIR": "root directory of local storage (default ./data/storage)",
    "MNIST_COMPUTE": "where workload tasks run: 'local' (default, a subprocess) or 'azure_batch'",
    "MNIST_TRAINING_COMPUTE": "where training runs, overriding MNIST_COMPUTE for training",
    "MNIST_SCORING_COMPUTE": "where scoring runs, overriding MNIST_COMPUTE for scoring",
    "MNIST_INGEST_COMPUTE": "where raw MNIST is fetched and verified (the ingest task); default local",
    "MNIST_WORK_DIR": "scratch directory of the local compute backend (default ./data/compute)",
    "MNIST_SOURCE": f"base URL or directory of the four MNIST files (default {CANONICAL_URL})",
    "MNIST_SOURCE_CHECKSUMS": "explicit 'file=md5,...' for a source without an md5sums file",
    "MNIST_MIN_ACCURACY": "held-out accuracy a model needs to be promoted (default 0.97)",
    "MNIST_SENSOR_MODE": "how sensors notice new data: 'listing' (default) or 'events' (Event Grid via storage queues)",
    "MNIST_SENSOR_INTERVAL": "seconds between sensor ticks (default 5; the daemon ticks at most every 5 s)",
    "MNIST_SENSOR_FULL_PASS_SECONDS": "listing mode: longest time between full passes over every folder once a pass "
    "costs more than 0.5 s (default 60; folders named after today's UTC date are seen on every tick)",
    "MNIST_BATCH_MARKER": "object that marks a folder complete (default _SUCCESS)",
    "MNIST_BATCH_QUIET_SECONDS": "also treat a folder as complete after this many seconds without new objects",
    "MNIST_SENSOR_MAX_PER_TICK": "folders (listing) or queue messages (events) handled per tick (default 50 / 256)",
    "MNIST_INFERENCE_QUEUE": "events mode: storage queue receiving BlobCreated events for inference/",
    "MNIST_TRAINING_QUEUE": "events mode: storage queue receiving BlobCreated events for training/",
    "AZURE_STORAGE_QUEUE_URL": "events mode: https://<account>.queue.core.windows.net (else from the connection string)",
    "AZURE_STORAGE_CONTAINER": "blob container (default 'mnist'), with MNIST_STORAGE=azure_blob",
    "AZURE_STORAGE_ACCOUNT_URL": "e.g. https://<account>.blob.core.windows.net",
    "AZURE_STORAGE_CONNECTION_STRING": "secret: connection string (instead of account URL + credential)",
    "AZURE_STORAGE_KEY": "secret: account key",
    "AZURE_STORAGE_SAS_TOKEN": "secret: SAS token",
    # --- authenticating gateway for ADF (read by adf_bridge/gateway/app.py, GatewaySettings.from_env) ---
    "MNIST_GATEWAY_UPSTREAM": "gateway: the internal webserver's GraphQL URL (default http://127.0.0.1:3000/graphql)",
    "MNIST_GATEWAY_HOST": "gateway: address to listen on (default 127.0.0.1)",
    "MNIST_GATEWAY_PORT": "gateway: port to listen on (default 8080)",
    "MNIST_GATEWAY_AUTH": "gateway: 'entra' (default, Entra ID bearer tokens) or 'static' (local use)",
    "MNIST_GATEWAY_TENANT_ID": "gateway: Entra tenant id; tokens must be issued by it (v1 or v2 issuer)",
    "MNIST_GATEWAY_AUDIENCE": "gateway: accepted token audience(s), comma-separated (app id URI and/or client id)",
    "MNIST_GATEWAY_JWKS_URL": "gateway: signing keys URL (default the tenant's discovery/v2.0/keys)",
    "MNIST_GATEWAY_IDENTITIES": "gateway: allowed callers and their jobs, JSON or a YAML/JSON file path",
    "MNIST_GATEWAY_STATIC_TOKEN": "gateway secret: the shared token of static mode (at least 32 characters)",
    "MNIST_GATEWAY_STATIC_JOBS": "gateway: static mode: jobs the token may launch, comma-separated",
    "MNIST_GATEWAY_LOCATION": "gateway: code location whose jobs may be launched (default mnist)",
    "MNIST_GATEWAY_UPSTREAM_TIMEOUT": "gateway: seconds to wait for the webserver (default 120)",
    "MNIST_GATEWAY_MAX_LAUNCHES": "gateway: launches forwarded to the webserver at once (default 2)",
    # --- end gateway ---
    # ---- AzureML compute (MNIST_*_COMPUTE=azureml) ----
    "MNIST_AZUREML_SUBSCRIPTION": "AzureML: subscription id of the workspace",
    "MNIST_AZUREML_RESOURCE_GROUP": "AzureML: resource group of the workspace",
    "MNIST_AZUREML_WORKSPACE": "AzureML: workspace name",
    "MNIST_AZUREML_REGION": "AzureML: workspace region, e.g. westeurope (v1 service https://<region>.api.azureml.ms)",
    "MNIST_AZUREML_SERVICE_URL": "AzureML: v1 pipelines/run-history base URL instead of the regional one",
    "MNIST_AZUREML_ARM_URL": "AzureML: Azure Resource Manager URL for v2 batch endpoints (default https://management.azure.com)",
    "MNIST_AZUREML_DATASTORE": "AzureML: datastore registered on the project's Blob container (default workspaceblobstore)",
    "MNIST_AZUREML_PIPELINE_ENDPOINT": "AzureML v1: training PipelineEndpoint name (default mnist-training)",
    "MNIST_AZUREML_PIPELINE_ENDPOINT_ID": "AzureML v1: training PipelineEndpoint id (instead of its name)",
    "MNIST_AZUREML_PIPELINE_VERSION": "AzureML v1: pin a pipeline version (default: the endpoint's default version)",
    "MNIST_AZUREML_TRAINING_EXPERIMENT": "AzureML v1: experiment of training runs (default mnist-training)",
    "MNIST_AZUREML_PIPES": "AzureML v1: 'true' (default) passes the Dagster Pipes bootstrap as a pipeline parameter; 'false' lets allow_reuse work",
    "MNIST_AZUREML_BATCH_ENDPOINT": "AzureML v2: scoring batch endpoint name (default mnist-batch)",
    "MNIST_AZUREML_BATCH_DEPLOYMENT": "AzureML v2: deployment to invoke (default: the endpoint's default deployment)",
    "MNIST_AZUREML_SCORING_EXPERIMENT": "AzureML v2: experiment of scoring jobs (default mnist-scoring)",
    "MNIST_AZUREML_POLL_INITIAL": "AzureML: first status poll after this many seconds (default 1)",
    "MNIST_AZUREML_POLL_MAX": "AzureML: longest wait between status polls in seconds (default 30)",
    "AZURE_TENANT_ID": "service principal tenant (with AZURE_CLIENT_SECRET); else DefaultAzureCredential",
    "AZURE_CLIENT_ID": "service principal (or user-assigned managed identity) client id",
    "AZURE_CLIENT_SECRET": "secret: service principal secret; without it, DefaultAzureCredential (managed identity, az login)",
    # ---- Azure Batch compute (MNIST_COMPUTE=azure_batch); needs MNIST_STORAGE=azure_blob ----
    "AZURE_BATCH_ACCOUNT_URL": "azure_batch: https://<account>.<region>.batch.azure.com",
    "AZURE_BATCH_ACCOUNT_NAME": "azure_batch: account name (for the shared key; default: from the URL)",
    "AZURE_BATCH_ACCOUNT_KEY": "secret: Batch shared key (without it: Entra ID via DefaultAzureCredential)",
    "MNIST_AZBATCH_POOL_ID": "azure_batch: pool id prefix (default mnist-workload; a spec hash is appended)",
    "MNIST_AZBATCH_VM_SIZE": "azure_batch: node VM size (default standard_d2s_v3)",
    "MNIST_AZBATCH_IMAGE": "azure_batch: node image 'publisher:offer:sku' (default canonical:ubuntu-24_04-lts:server)",
    "MNIST_AZBATCH_NODE_AGENT_SKU": "azure_batch: node agent SKU id (default 'batch.node.ubuntu 24.04')",
    "MNIST_AZBATCH_NODE_COUNT": "azure_batch: dedicated nodes of a fixed-size pool (default 1)",
    "MNIST_AZBATCH_AUTOSCALE_FORMULA": "azure_batch: autoscale formula (instead of a fixed node count)",
    "MNIST_AZBATCH_POOL_MODE": "azure_batch: persistent | scale_to_zero (default) | ephemeral (auto pool per job)",
    "MNIST_AZBATCH_JOB_RETENTION_HOURS": "azure_batch: completed jobs older than this are deleted (default 24)",
}
# AzureML settings by variable (values are plain configuration; the secret stays an EnvVar).
AZUREML_VARS = {
    "subscription_id": "MNIST_AZUREML_SUBSCRIPTION",
    "resource_group": "MNIST_AZUREML_RESOURCE_GROUP",
    "workspace_name": "MNIST_AZUREML_WORKSPACE",
    "region": "MNIST_AZUREML_REGION",
    "service_url": "MNIST_AZUREML_SERVICE_URL",
    "arm_url": "MNIST_AZUREML_ARM_URL",
    "datastore": "MNIST_AZUREML_DATASTORE",
    "pipeline_endpoint": "MNIST_AZUREML_PIPELINE_ENDPOINT",
    "pipeline_endpoint_id": "MNIST_AZUREML_PIPELINE_ENDPOINT_ID",
    "pipeline_version": "MNIST_AZUREML_PIPELINE_VERSION",
    "training_experiment": "MNIST_AZUREML_TRAINING_EXPERIMENT",
    "pipes": "MNIST_AZUREML_PIPES",
    "batch_endpoint": "MNIST_AZUREML_BATCH_ENDPOINT",
    "batch_deployment": "MNIST_AZUREML_BATCH_DEPLOYMENT",
    "scoring_experiment": "MNIST_AZUREML_SCORING_EXPERIMENT",
    "poll_initial": "MNIST_AZUREML_POLL_INITIAL",
    "poll_max": "MNIST_AZUREML_POLL_MAX",
}
AZURE_IDENTITY = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET")
SECRETS = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN")
BATCH_SECRETS = ("AZURE_BATCH_ACCOUNT_KEY",)


# Where workload tasks can run. Remote backends add their name here and a case in `compute_backend`.
ComputeChoice = Literal["local", "azureml", "azure_batch"]
COMPUTE_CHOICES: tuple[str, ...] = ("local", "azureml", "azure_batch")
ComputeRole = Literal["training", "scoring", "ingest"]


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    storage: Literal["local", "azure_blob"] = "local"
    data_dir: Path = PROJECT_ROOT / "data" / "storage"
    compute: ComputeChoice = "local"
    training_compute: ComputeChoice | None = None  # None: same as `compute`
    scoring_compute: ComputeChoice | None = None
    # Ingest stays local unless set: fetching MNIST is cheap and the local demo must stay fast.
    ingest_compute: ComputeChoice = "local"
    work_dir: Path = PROJECT_ROOT / "data" / "compute"
    source: str = CANONICAL_URL
    source_checksums: str | None = None
    min_accuracy: float = 0.97
    azure_container: str = "mnist"
    azure_account_url: str | None = None
    # Which secrets are present (names only; values stay in the environment).
    azure_secrets: tuple[str, ...] = ()
    sensor_mode: Literal["listing", "events"] = "listing"
    sensor_interval: int = 5
    batch_marker: str = "_SUCCESS"
    batch_quiet_seconds: float | None = None
    sensor_max_per_tick: int | None = None
    sensor_full_pass_seconds: float = 60.0
    inference_queue: str = "inference-events"
    training_queue: str = "training-events"
    azure_queue_url: str | None = None
    # AzureML compute: the MNIST_AZUREML_* values that are set (see AZUREML_VARS), and which of the
    # AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET variables are set (names only).
    azureml: tuple[tuple[str, str], ...] = ()
    azure_identity: tuple[str, ...] = ()
    # Azure Batch compute: the settings that are set (MNIST_AZBATCH_* / AZURE_BATCH_*), checked in from_env.
    azure_batch: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in KNOWN)
        if unknown:
            known = ", ".join(k for k in KNOWN if k.startswith(PREFIX))
            raise SettingsError(
                f"unknown setting(s) {', '.join(unknown)}; the known {PREFIX}* settings are: {known}"
            )
        values: dict[str, Any] = {}
        if storage := env.get("MNIST_STORAGE"):
            values["storage"] = _choice("MNIST_STORAGE", storage, ("local", "azure_blob"))
        for var, key in (
            ("MNIST_COMPUTE", "compute"),
            ("MNIST_TRAINING_COMPUTE", "training_compute"),
            ("MNIST_SCORING_COMPUTE", "scoring_compute"),
            ("MNIST_INGEST_COMPUTE", "ingest_compute"),
        ):
            if choice := env.get(var):
                values[key] = _choice(var, choice, COMPUTE_CHOICES)
        if data_dir := env.get("MNIST_DATA_DIR"):
            values["data_dir"] = Path(data_dir).expanduser()
        if work_dir := env.get("MNIST_WORK_DIR"):
            values["work_dir"] = Path(work_dir).expanduser()
        if source := env.get("MNIST_SOURCE"):
            values["source"] = source
        if checksums := env.get("MNIST_SOURCE_CHECKSUMS"):
            values["source_checksums"] = checksums
        if threshold := env.get("MNIST_MIN_ACCURACY"):
            try:
                values["min_accuracy"] = float(threshold)
            except ValueError:
                raise SettingsError(
                    f"MNIST_MIN_ACCURACY: expected a number between 0 and 1, found {threshold!r}"
                ) from None
            if not 0 <= values["min_accuracy"] <= 1:
                raise SettingsError(
                    f"MNIST_MIN_ACCURACY: expected a number between 0 and 1, found {threshold!r}"
                )
        if container := env.get("AZURE_STORAGE_CONTAINER"):
            values["azure_container"] = container
        if account_url := env.get("AZURE_STORAGE_ACCOUNT_URL"):
            values["azure_account_url"] = account_url
        values["azure_secrets"] = tuple(s for s in SECRETS if env.get(s))
        if mode := env.get("MNIST_SENSOR_MODE"):
            values["sensor_mode"] = _choice("MNIST_SENSOR_MODE", mode, ("listing", "events"))
        for var, key in (
            ("MNIST_SENSOR_INTERVAL", "sensor_interval"),
            ("MNIST_SENSOR_MAX_PER_TICK", "sensor_max_per_tick"),
        ):
            if raw := env.get(var):
                values[key] = _positive(var, raw, int)
        if full_pass := env.get("MNIST_SENSOR_FULL_PASS_SECONDS"):
            values["sensor_full_pass_seconds"] = _positive("MNIST_SENSOR_FULL_PASS_SECONDS", full_pass, float)
        if quiet := env.get("MNIST_BATCH_QUIET_SECONDS"):
            values["batch_quiet_seconds"] = _positive("MNIST_BATCH_QUIET_SECONDS", quiet, float)
        if marker := env.get("MNIST_BATCH_MARKER"):
            if "/" in marker or marker in (".", ".."):
                raise SettingsError(
                    f"MNIST_BATCH_MARKER: expected a file name like _SUCCESS, found {marker!r}"
                )
            values["batch_marker"] = marker
        for var, key in (
            ("MNIST_INFERENCE_QUEUE", "inference_queue"),
            ("MNIST_TRAINING_QUEUE", "training_queue"),
        ):
            if raw := env.get(var):
                values[key] = raw
        if queue_url := env.get("AZURE_STORAGE_QUEUE_URL"):
            values["azure_queue_url"] = queue_url
        values["azureml"] = tuple((field, env[var]) for field, var in AZUREML_VARS.items() if env.get(var))
        values["azure_identity"] = tuple(v for v in AZURE_IDENTITY if env.get(v))
        values["azure_batch"] = tuple(
            (k, env[k])
            for k in KNOWN
            if k.startswith(("MNIST_AZBATCH_", "AZURE_BATCH_")) and env.get(k) and k not in BATCH_SECRETS
        ) + tuple((k, "<set>") for k in BATCH_SECRETS if env.get(k))
        settings = cls(**values)
        if "azure_batch" in (
            settings.compute,
            settings.training_compute,
            settings.scoring_compute,
            settings.ingest_compute,
        ):
            settings.azure_batch_backend()  # fail at load time on a bad or missing Batch setting
        if settings.storage == "azure_blob" and not (
            settings.azure_account_url or "AZURE_STORAGE_CONNECTION_STRING" in settings.azure_secrets
        ):
            raise SettingsError(
                "MNIST_STORAGE=azure_blob needs AZURE_STORAGE_ACCOUNT_URL (with a key, a SAS token or an Azure "
                "identity) or AZURE_STORAGE_CONNECTION_STRING"
            )
        settings._check_azureml()
        if settings.sensor_mode == "events" and settings.storage != "azure_blob":
            raise SettingsError(
                "MNIST_SENSOR_MODE=events needs MNIST_STORAGE=azure_blob: blob events come from Azure Storage via "
                "Event Grid; the local directory is watched by listing"
            )
        return settings

    # ---- the environment choice, made once -------------------------------------------------------
    def object_store(self) -> ObjectStore:
        if self.storage == "local":
            return LocalObjectStore(root=str(self.data_dir))
        return AzureBlobObjectStore(
            container=self.azure_container, account_url=self.azure_account_url, **self._azure_credentials()
        )

    def compute_backend(self, role: ComputeRole) -> ComputeBackend:
        """The backend that runs one role's workload tasks (`training`, `scoring` or `ingest`)."""
        choice = {
            "training": self.training_compute or self.compute,
            "scoring": self.scoring_compute or self.compute,
            "ingest": self.ingest_compute,
        }[role]
        match choice:
            case "azureml":
                return self._azureml_backend(role)
            case "local":
                return LocalProcessBackend(work_dir=str(self.work_dir))
            case "azure_batch":
                return self.azure_batch_backend()
        raise SettingsError(f"unknown compute {choice!r}; expected one of {', '.join(COMPUTE_CHOICES)}")

    # ---- AzureML compute -------------------------------------------------------------------------
    def _uses_azureml(self) -> list[ComputeRole]:
        roles: list[ComputeRole] = ["training", "scoring"]
        return [
            r
            for r in roles
            if ({"training": self.training_compute, "scoring": self.scoring_compute}[r] or self.compute)
            == "azureml"
        ]

    def _check_azureml(self) -> None:
        roles = self._uses_azureml()
        if not roles:
            return
        values = dict(self.azureml)
        needed = ["subscription_id", "resource_group", "workspace_name"]
        if "training" in roles and not (values.get("region") or values.get("service_url")):
            needed.append("region")
        missing = [AZUREML_VARS[k] for k in needed if not values.get(k)]
        if missing:
            raise SettingsError(f"AzureML compute ({', '.join(roles)}) needs {', '.join(missing)}")
        pipes = values.get("pipes", "true").lower()
        if pipes not in ("true", "false"):
            raise SettingsError(f"MNIST_AZUREML_PIPES: expected true or false, found {values['pipes']!r}")
        for key in ("poll_initial", "poll_max"):
            if key in values:
                _positive(AZUREML_VARS[key], values[key], float)

    def _azureml_backend(self, role: ComputeRole) -> ComputeBackend:
        from resources.compute.azureml import AzureMLBatchEndpointBackend, AzureMLPipelineBackend

        if role == "ingest":
            raise SettingsError(
                "MNIST_INGEST_COMPUTE=azureml: AzureML runs training (v1 pipeline) and scoring (v2 batch "
                "endpoint); ingest runs on local or azure_batch"
            )

        v = dict(self.azureml)
        identity = {
            field: dg.EnvVar(var)
            for field, var in zip(("tenant_id", "client_id", "client_secret"), AZURE_IDENTITY, strict=True)
            if var in self.azure_identity
        }
        common: dict[str, Any] = {
            "subscription_id": v["subscription_id"],
            "resource_group": v["resource_group"],
            "workspace_name": v["workspace_name"],
            "datastore": v.get("datastore", "workspaceblobstore"),
            **identity,
        }
        if "poll_initial" in v:
            common["poll_initial_seconds"] = float(v["poll_initial"])
        if "poll_max" in v:
            common["poll_max_seconds"] = float(v["poll_max"])
        if role == "training":
            return AzureMLPipelineBackend(
                **common,
                region=v.get("region"),
                service_url=v.get("service_url"),
                pipeline_endpoint=None
                if "pipeline_endpoint_id" in v
                else v.get("pipeline_endpoint", "mnist-training"),
                pipeline_endpoint_id=v.get("pipeline_endpoint_id"),
                pipeline_version=v.get("pipeline_version"),
                experiment_name=v.get("training_experiment", "mnist-training"),
                pipes=v.get("pipes", "true").lower() == "true",
            )
        return AzureMLBatchEndpointBackend(
            **common,
            arm_url=v.get("arm_url", "https://management.azure.com"),
            endpoint_name=v.get("batch_endpoint", "mnist-batch"),
            deployment_name=v.get("batch_deployment"),
            experiment_name=v.get("scoring_experiment", "mnist-scoring"),
        )

    def azure_batch_backend(self) -> AzureBatchBackend:
        """Azure Batch compute, configured from the MNIST_AZBATCH_* / AZURE_BATCH_* settings."""
        batch = dict(self.azure_batch)
        if self.storage != "azure_blob":
            raise SettingsError(
                "azure_batch compute needs MNIST_STORAGE=azure_blob: Batch nodes read inputs from and write "
                "outputs to Azure Blob"
            )
        if not batch.get("AZURE_BATCH_ACCOUNT_URL"):
            raise SettingsError(
                "azure_batch compute needs AZURE_BATCH_ACCOUNT_URL (https://<account>.<region>.batch.azure.com)"
            )
        fields: dict[str, Any] = {"account_url": batch["AZURE_BATCH_ACCOUNT_URL"]}
        if "AZURE_BATCH_ACCOUNT_KEY" in batch:
            fields["account_key"] = dg.EnvVar("AZURE_BATCH_ACCOUNT_KEY")
        for var, key in (
            ("AZURE_BATCH_ACCOUNT_NAME", "account_name"),
            ("MNIST_AZBATCH_POOL_ID", "pool_id"),
            ("MNIST_AZBATCH_VM_SIZE", "vm_size"),
            ("MNIST_AZBATCH_NODE_AGENT_SKU", "node_agent_sku_id"),
            ("MNIST_AZBATCH_AUTOSCALE_FORMULA", "autoscale_formula"),
        ):
            if var in batch:
                fields[key] = batch[var]
        if image := batch.get("MNIST_AZBATCH_IMAGE"):
            parts = image.split(":")
            if len(parts) != 3 or not all(parts):
                raise SettingsError(
                    f"MNIST_AZBATCH_IMAGE: expected 'publisher:offer:sku' (e.g. canonical:ubuntu-24_04-lts:server), found {image!r}"
                )
            fields["image_publisher"], fields["image_offer"], fields["image_sku"] = parts
        if mode := batch.get("MNIST_AZBATCH_POOL_MODE"):
            fields["pool_mode"] = _choice("MNIST_AZBATCH_POOL_MODE", mode, POOL_MODES)
        if count := batch.get("MNIST_AZBATCH_NODE_COUNT"):
            fields["node_count"] = _positive("MNIST_AZBATCH_NODE_COUNT", count, int)
        if hours := batch.get("MNIST_AZBATCH_JOB_RETENTION_HOURS"):
            fields["job_retention_hours"] = _positive("MNIST_AZBATCH_JOB_RETENTION_HOURS", hours, float)
        return AzureBatchBackend(**fields)

    def event_queue(self, queue: str) -> BlobEventQueue:
        return BlobEventQueue(queue=queue, account_url=self.azure_queue_url, **self._azure_credentials())

    def _azure_credentials(self) -> dict[str, Any]:
        """The secrets that are set, as references to their variables (resolved only at run time)."""
        fields = {
            "connection_string": "AZURE_STORAGE_CONNECTION_STRING",
            "account_key": "AZURE_STORAGE_KEY",
            "sas_token": "AZURE_STORAGE_SAS_TOKEN",
        }
        return {field: dg.EnvVar(var) for field, var in fields.items() if var in self.azure_secrets}

    def sensor_settings(self) -> SensorSettings:
        events = self.sensor_mode == "events"
        per_tick = self.sensor_max_per_tick
        return SensorSettings(
            interval_seconds=self.sensor_interval,
            full_pass_seconds=self.sensor_full_pass_seconds,
            rules=BatchRules(marker=self.batch_marker, quiet_seconds=self.batch_quiet_seconds),
            max_folders_per_tick=per_tick or 50,
            max_messages_per_tick=per_tick or 256,
            events=events,
            events_container=self.azure_container if events else None,
        )

    def resources(self) -> dict[str, Any]:
        events: dict[str, Any] = {}
        if self.sensor_mode == "events":
            events = {
                "inference_events": self.event_queue(self.inference_queue),
                "training_events": self.event_queue(self.training_queue),
            }
        return {
            **events,
            "storage": self.object_store(),
            "training_compute": self.compute_backend("training"),
            "scoring_compute": self.compute_backend("scoring"),
            "ingest_compute": self.compute_backend("ingest"),
            "mnist_source": MnistSource(location=self.source, checksums=self.source_checksums),
            "quality": QualityGate(min_accuracy=self.min_accuracy),
        }


def _positive(name: str, raw: str, kind: type[int] | type[float]) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        value = -1
    if value <= 0:
        raise SettingsError(f"{name}: expected a positive {kind.__name__}, found {raw!r}")
    return value


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> Any:
    if value not in allowed:
        raise SettingsError(f"{name}: expected one of {', '.join(allowed)}, found {value!r}")
    return value
