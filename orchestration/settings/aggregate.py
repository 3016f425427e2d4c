"""All of the code location's settings, parsed once: one model per concern, checked together.

`Settings.from_env()` reads every concern from the environment (completed from the user's settings
file, `.env` in the project root: `orchestration.settings.env_file`), refuses an unknown `MNIST_*` variable
(a typo must not silently fall back to a default) and checks what the concerns ask of each other, so
a bad configuration fails when the code location loads, with a message naming the variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from orchestration.settings.alerts import AlertSettings
from orchestration.settings.automation import SensorSettings
from orchestration.settings.azure_batch import AzureBatchSettings
from orchestration.settings.azureml import AzureMLSettings
from orchestration.settings.base import EnvironmentSettings, Variable, variables
from orchestration.settings.compute import ComputeRole, ComputeSettings
from orchestration.settings.env_file import ENV_FILE_VARIABLE, env_file_path, load_env_file
from orchestration.settings.errors import SettingsError
from orchestration.settings.mnist import QualitySettings, SourceSettings
from orchestration.settings.predictions import PredictionCheckSettings, RescoreSettings
from orchestration.settings.reliability import PoolSettings, RetrySettings, TimeoutSettings
from orchestration.settings.schedules import RetrainScheduleSettings
from orchestration.settings.storage import StorageSettings

if TYPE_CHECKING:
    from resources.compute import ComputeBackend
    from resources.storage import ObjectStore

PREFIX = "MNIST_"
# Variables under these prefixes belong to another program's settings, which reads and checks them:
# the ADF gateway's (adf_bridge.gateway.settings).
OTHER_PROGRAMS = ("MNIST_GATEWAY_",)


class Settings(BaseModel):
    """The code location's configuration, one model per concern."""

    model_config = ConfigDict(frozen=True)

    storage: StorageSettings = Field(default_factory=StorageSettings)
    compute: ComputeSettings = Field(default_factory=ComputeSettings)
    source: SourceSettings = Field(default_factory=SourceSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    sensors: SensorSettings = Field(default_factory=SensorSettings)
    azureml: AzureMLSettings = Field(default_factory=AzureMLSettings)
    azure_batch: AzureBatchSettings = Field(default_factory=AzureBatchSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    retrain_schedule: RetrainScheduleSettings = Field(default_factory=RetrainScheduleSettings)
    prediction_checks: PredictionCheckSettings = Field(default_factory=PredictionCheckSettings)
    rescoring: RescoreSettings = Field(default_factory=RescoreSettings)
    retries: RetrySettings = Field(default_factory=RetrySettings)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    pools: PoolSettings = Field(default_factory=PoolSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Every concern from `env`, checked. Raises SettingsError.

        By default the process environment, into which the settings file's variables that it does not
        set are put first (secrets are resolved from the process environment when a run starts).
        """
        from_file: dict[str, str] = {}
        if env is None:
            from_file = load_env_file(os.environ)
            env = os.environ
        where = f" (set in {env_file_path(env)})"
        _refuse_unknown(env, {name: where for name in from_file})
        try:
            settings = cls(
                storage=StorageSettings.read(env),
                compute=ComputeSettings.read(env),
                source=SourceSettings.read(env),
                quality=QualitySettings.read(env),
                sensors=SensorSettings.read(env),
                azureml=AzureMLSettings.read(env),
                azure_batch=AzureBatchSettings.read(env),
                alerts=AlertSettings.read(env),
                retrain_schedule=RetrainScheduleSettings.read(env),
                prediction_checks=PredictionCheckSettings.read(env),
                rescoring=RescoreSettings.read(env),
                retries=RetrySettings.read(env),
                timeouts=TimeoutSettings.read(env),
                pools=PoolSettings.read(env),
            )
            settings._check()
        except SettingsError as exc:
            # A problem with a variable from the settings file says so: that is where the user must look.
            problems = str(exc).split("; ")
            marked = [p + where if p.split(":", 1)[0] in from_file else p for p in problems]
            if marked != problems:
                raise SettingsError("; ".join(marked)) from None
            raise
        return settings

    def _check(self) -> None:
        """What one concern asks of another."""
        self.alerts.check()
        if self.compute.names("azure_batch"):
            if self.storage.kind != "azure_blob":
                raise SettingsError(
                    "azure_batch compute needs MNIST_STORAGE=azure_blob: Batch nodes read inputs from and "
                    "write outputs to Azure Blob"
                )
            self.azure_batch.required_account_url()
        if self.storage.kind == "azure_blob" and not (
            self.storage.account_url or self.storage.connection_string
        ):
            raise SettingsError(
                "MNIST_STORAGE=azure_blob needs AZURE_STORAGE_ACCOUNT_URL (with a key, a SAS token or an Azure "
                "identity) or AZURE_STORAGE_CONNECTION_STRING"
            )
        roles = self.azureml_roles()
        if roles and (missing := self.azureml.missing(roles)):
            raise SettingsError(f"AzureML compute ({', '.join(roles)}) needs {', '.join(missing)}")
        if self.sensors.events and self.storage.kind != "azure_blob":
            raise SettingsError(
                "MNIST_SENSOR_MODE=events needs MNIST_STORAGE=azure_blob: blob events come from Azure Storage via "
                "Event Grid; the local directory is watched by listing"
            )

    def azureml_roles(self) -> list[ComputeRole]:
        """The roles that run on AzureML (training and scoring are the ones it can run)."""
        roles: list[ComputeRole] = ["training", "scoring"]
        return [role for role in roles if self.compute.for_role(role) == "azureml"]

    # ---- the resources these settings choose (orchestration.settings.wiring) -----------------------
    def object_store(self) -> ObjectStore:
        from orchestration.settings import wiring

        return wiring.object_store(self)

    def compute_backend(self, role: ComputeRole) -> ComputeBackend:
        """The backend that runs one role's workload tasks (`training`, `scoring` or `ingest`)."""
        from orchestration.settings import wiring

        return wiring.compute_backend(self, role)

    def resources(self) -> dict[str, Any]:
        """Every resource of the code location, by resource key."""
        from orchestration.settings import wiring

        return wiring.resources(self)


def concerns() -> dict[str, type[EnvironmentSettings]]:
    """The settings model of each concern, by its field name in `Settings`."""
    found: dict[str, type[EnvironmentSettings]] = {}
    for name, field in Settings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, EnvironmentSettings)
        found[name] = model
    return found


def known_variables() -> list[Variable]:
    """Every variable the code location reads, concern by concern."""
    return [var for model in concerns().values() for var in variables(model)]


def _refuse_unknown(env: Mapping[str, str], where: Mapping[str, str]) -> None:
    """Refuse unknown `MNIST_*` variables; `where` says where a variable was set, by name, when it was
    not the environment."""
    known = [var.name for var in known_variables()]
    unknown = sorted(
        k
        for k in env
        if k.startswith(PREFIX)
        and not k.startswith(OTHER_PROGRAMS)
        and k not in known
        and k != ENV_FILE_VARIABLE
    )
    if unknown:
        listed = ", ".join(k for k in known if k.startswith(PREFIX))
        raise SettingsError(
            f"unknown setting(s) {', '.join(k + where.get(k, '') for k in unknown)}; the known {PREFIX}* "
            f"settings are: {listed}"
        )
