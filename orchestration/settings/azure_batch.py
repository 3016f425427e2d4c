"""Azure Batch compute: workload tasks as Batch jobs on a pool of the project's own."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, PositiveFloat, PositiveInt

from orchestration.settings.base import EnvironmentSettings, EnvReference, variable
from orchestration.settings.errors import SettingsError
from resources.compute.batch_tasks import POOL_MODES


def _image(value: str) -> str:
    parts = value.split(":")
    if len(parts) != 3 or not all(parts):
        raise ValueError("expected publisher:offer:sku")
    return value


def _pool_mode(value: str) -> str:
    if value not in POOL_MODES:
        raise ValueError(f"expected one of {', '.join(POOL_MODES)}")
    return value


class AzureBatchSettings(EnvironmentSettings):
    """Azure Batch compute: workload tasks as Batch jobs on a pool, for the roles whose compute is
    `azure_batch`; needs `MNIST_STORAGE=azure_blob` (nodes read and write Blob).

    Without AZURE_BATCH_ACCOUNT_KEY, Batch is called with an Entra ID token (DefaultAzureCredential).
    """

    account_url: str | None = variable(
        "AZURE_BATCH_ACCOUNT_URL", None, "Batch account URL, https://<account>.<region>.batch.azure.com"
    )
    account_name: str | None = variable(
        "AZURE_BATCH_ACCOUNT_NAME", None, "account name, for the shared key (unset: from the URL)"
    )
    account_key: EnvReference = variable(
        "AZURE_BATCH_ACCOUNT_KEY",
        None,
        "Batch shared key (unset: Entra ID via DefaultAzureCredential)",
        secret=True,
    )
    pool_id: str = variable(
        "MNIST_AZBATCH_POOL_ID", "mnist-workload", "pool id prefix (a hash of the pool's spec is appended)"
    )
    vm_size: str = variable("MNIST_AZBATCH_VM_SIZE", "standard_d2s_v3", "node VM size")
    image: Annotated[str, AfterValidator(_image)] = variable(
        "MNIST_AZBATCH_IMAGE",
        "canonical:ubuntu-24_04-lts:server",
        "node image",
        expected="'publisher:offer:sku' (e.g. canonical:ubuntu-24_04-lts:server)",
    )
    node_agent_sku_id: str = variable(
        "MNIST_AZBATCH_NODE_AGENT_SKU", "batch.node.ubuntu 24.04", "node agent SKU id"
    )
    node_count: PositiveInt = variable("MNIST_AZBATCH_NODE_COUNT", 1, "dedicated nodes of a fixed-size pool")
    autoscale_formula: str | None = variable(
        "MNIST_AZBATCH_AUTOSCALE_FORMULA", None, "autoscale formula (instead of a fixed node count)"
    )
    pool_mode: Annotated[str, AfterValidator(_pool_mode)] = variable(
        "MNIST_AZBATCH_POOL_MODE",
        "scale_to_zero",
        "persistent (always on), scale_to_zero (resized to 0 nodes when no job of ours is active) or "
        "ephemeral (a Batch auto pool per job)",
        expected=f"one of {', '.join(POOL_MODES)}",
    )
    job_retention_hours: PositiveFloat = variable(
        "MNIST_AZBATCH_JOB_RETENTION_HOURS", 24.0, "completed jobs older than this are deleted"
    )

    @property
    def image_parts(self) -> tuple[str, str, str]:
        """(publisher, offer, sku) of the node image."""
        publisher, offer, sku = self.image.split(":")
        return publisher, offer, sku

    def required_account_url(self) -> str:
        """The Batch account URL, which azure_batch compute cannot do without."""
        if not self.account_url:
            raise SettingsError(
                "azure_batch compute needs AZURE_BATCH_ACCOUNT_URL (https://<account>.<region>.batch.azure.com)"
            )
        return self.account_url
