"""Settings: the one place that reads the environment. One typed model per concern, parsed once into
`Settings`; `orchestration.settings.wiring` turns them into resources; `python -m
orchestration.settings.reference` writes docs/configuration.md from the models.
"""

from orchestration.settings.aggregate import Settings, concerns, known_variables
from orchestration.settings.alerts import ALERT_CHANNELS, AlertChannel, AlertSettings
from orchestration.settings.automation import SensorSettings
from orchestration.settings.azure_batch import AzureBatchSettings
from orchestration.settings.azureml import AzureMLSettings
from orchestration.settings.compute import COMPUTE_CHOICES, ComputeChoice, ComputeRole, ComputeSettings
from orchestration.settings.errors import SettingsError
from orchestration.settings.mnist import QualitySettings, SourceSettings
from orchestration.settings.predictions import PredictionCheckSettings, RescoreSettings
from orchestration.settings.schedules import RetrainScheduleSettings
from orchestration.settings.storage import StorageSettings

__all__ = [
    "ALERT_CHANNELS",
    "COMPUTE_CHOICES",
    "AlertChannel",
    "AlertSettings",
    "AzureBatchSettings",
    "AzureMLSettings",
    "ComputeChoice",
    "ComputeRole",
    "ComputeSettings",
    "PredictionCheckSettings",
    "QualitySettings",
    "RescoreSettings",
    "RetrainScheduleSettings",
    "SensorSettings",
    "Settings",
    "SettingsError",
    "SourceSettings",
    "StorageSettings",
    "concerns",
    "known_variables",
]
