"""Settings: the one place that reads the environment. One typed model per concern, parsed once into
`Settings`; `orchestration.settings.wiring` turns them into resources; `python -m
orchestration.settings.reference` writes docs/configuration.md from the models.
"""

from orchestration.settings.aggregate import Settings, concerns, known_variables
from orchestration.settings.automation import SensorSettings
from orchestration.settings.azure_batch import AzureBatchSettings
from orchestration.settings.azureml import AzureMLSettings
from orchestration.settings.compute import COMPUTE_CHOICES, ComputeChoice, ComputeRole, ComputeSettings
from orchestration.settings.errors import SettingsError
from orchestration.settings.mnist import QualitySettings, SourceSettings
from orchestration.settings.storage import StorageSettings

__all__ = [
    "COMPUTE_CHOICES",
    "AzureBatchSettings",
    "AzureMLSettings",
    "ComputeChoice",
    "ComputeRole",
    "ComputeSettings",
    "QualitySettings",
    "SensorSettings",
    "Settings",
    "SettingsError",
    "SourceSettings",
    "StorageSettings",
    "concerns",
    "known_variables",
]
