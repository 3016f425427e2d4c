"""Storage: where the project's data lives, a local directory or an Azure Blob container."""

from __future__ import annotations

from typing import Any, Literal

from orchestration.settings.base import PROJECT_ROOT, Directory, EnvironmentSettings, EnvReference, variable


class StorageSettings(EnvironmentSettings):
    """Storage: a local directory, or an Azure Blob container (`MNIST_STORAGE=azure_blob`)."""

    kind: Literal["local", "azure_blob"] = variable(
        "MNIST_STORAGE", "local", "where data lives: 'local' (a directory) or 'azure_blob'"
    )
    data_dir: Directory = variable(
        "MNIST_DATA_DIR", PROJECT_ROOT / "data" / "storage", "root directory of local storage"
    )
    container: str = variable(
        "AZURE_STORAGE_CONTAINER", "mnist", "blob container, with MNIST_STORAGE=azure_blob"
    )
    account_url: str | None = variable(
        "AZURE_STORAGE_ACCOUNT_URL", None, "blob service URL, e.g. https://<account>.blob.core.windows.net"
    )
    connection_string: EnvReference = variable(
        "AZURE_STORAGE_CONNECTION_STRING",
        None,
        "connection string (instead of the account URL and a credential)",
        secret=True,
    )
    account_key: EnvReference = variable("AZURE_STORAGE_KEY", None, "account key", secret=True)
    sas_token: EnvReference = variable("AZURE_STORAGE_SAS_TOKEN", None, "SAS token", secret=True)

    def credentials(self) -> dict[str, Any]:
        """The storage secrets that are set, as references to their variables (blob and queue clients).
        None set: the clients use DefaultAzureCredential."""
        given = {
            "connection_string": self.connection_string,
            "account_key": self.account_key,
            "sas_token": self.sas_token,
        }
        return {field: ref for field, ref in given.items() if ref is not None}
