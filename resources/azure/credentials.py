"""Credentials for every Azure service the resources call, and the clients built from them.

Most specific first, for each service:
- Blob and Queue storage: a connection string; an account key (shared key); a SAS token; otherwise a
  token credential.
- Azure Batch: an account key (shared key); otherwise a token credential.
- AzureML and ARM: a token credential.

The token credential is a service principal when a client secret is configured, otherwise
`DefaultAzureCredential` (managed identity in Azure, `az login` on a laptop, or a service principal
from the AZURE_* environment variables). Tests can name a factory instead (`python:<module>:<attr>`),
so resources stay plain configuration. Secrets reach the resources as `dg.EnvVar`s, resolved at run time.

The Azure SDKs are imported inside the functions: loading the code location imports none of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import PermanentAzureError

if TYPE_CHECKING:
    from azure.core.credentials import AzureNamedKeyCredential, TokenCredential
    from azure.core.pipeline.policies import SansIOHTTPPolicy
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def token_credential(
    credential: str = "default",
    *,
    tenant_id: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> TokenCredential:
    """The Entra ID credential for Azure calls.

    `credential` is "default" (a service principal when `client_secret` is given, otherwise
    `DefaultAzureCredential`, for the managed identity `client_id` when given) or
    "python:<module>:<attribute>", a zero-argument factory returning a credential (tests use it to
    hand out fake tokens).
    """
    if credential.startswith("python:"):
        _, module, attr = credential.split(":", 2)
        return getattr(importlib.import_module(module), attr)()
    if credential != "default":
        raise PermanentAzureError(
            f"credential setting: expected 'default' or 'python:<module>:<attribute>', found {credential!r}"
        )
    if client_secret:
        if not (tenant_id and client_id):
            raise PermanentAzureError(
                "a service principal needs AZURE_TENANT_ID and AZURE_CLIENT_ID as well as AZURE_CLIENT_SECRET"
            )
        from azure.identity import ClientSecretCredential

        return ClientSecretCredential(tenant_id, client_id, client_secret)
    from azure.identity import DefaultAzureCredential

    return (
        DefaultAzureCredential(managed_identity_client_id=client_id)
        if client_id
        else DefaultAzureCredential()
    )


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


def loopback_http_policy() -> SansIOHTTPPolicy:  # type: ignore[type-arg]
    """An azure-core policy letting a bearer token go over plain http to a loopback address only (the
    contract fakes); azure-core's bearer policy refuses http everywhere else."""
    from azure.core.pipeline import PipelineRequest
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class LoopbackHttp(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def on_request(self, request: PipelineRequest) -> None:  # type: ignore[override]
            if is_loopback(request.http_request.url):
                request.context["enforce_https"] = False

    return LoopbackHttp()


def account_name(account_url: str) -> str:
    """The storage or Batch account an account URL names: the first label of its host
    (https://<account>.blob.core.windows.net), or for an emulator on a loopback or IP address its first
    path segment (http://127.0.0.1:10000/<account>); "" when it names none."""
    parts = urlsplit(account_url)
    if _is_address(account_url):
        return parts.path.strip("/").split("/")[0]
    return (parts.hostname or "").split(".")[0]


def storage_credential(account_url: str, *, account_key: str | None, sas_token: str | None) -> Any:
    """What a Blob or Queue client takes for `account_url`: a shared key, a SAS token or a token credential."""
    if account_key:
        return {"account_name": account_name(account_url), "account_key": account_key}
    if sas_token:
        return sas_token.lstrip("?")
    return token_credential()


def blob_service_client(
    *,
    account_url: str | None,
    connection_string: str | None,
    account_key: str | None,
    sas_token: str | None,
) -> BlobServiceClient:
    """The Blob service client for a storage account, from whichever credential is configured."""
    from azure.storage.blob import BlobServiceClient

    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string)
    if not account_url:
        raise ValueError(
            "Azure Blob storage needs an account URL (AZURE_STORAGE_ACCOUNT_URL) or a connection string "
            "(AZURE_STORAGE_CONNECTION_STRING)"
        )
    return BlobServiceClient(
        account_url, credential=storage_credential(account_url, account_key=account_key, sas_token=sas_token)
    )


def queue_client(
    queue: str,
    *,
    account_url: str | None,
    connection_string: str | None,
    account_key: str | None,
    sas_token: str | None,
) -> QueueClient:
    """The client of one Storage Queue, from whichever credential is configured."""
    from azure.storage.queue import QueueClient

    if connection_string:
        return QueueClient.from_connection_string(connection_string, queue)
    if not account_url:
        raise ValueError("the event queue needs AZURE_STORAGE_QUEUE_URL or AZURE_STORAGE_CONNECTION_STRING")
    credential = storage_credential(account_url, account_key=account_key, sas_token=sas_token)
    return QueueClient(account_url, queue, credential=credential)


def batch_credential(
    account_url: str,
    *,
    account_name_setting: str | None,
    account_key: str | None,
    credential: str = "default",
) -> AzureNamedKeyCredential | TokenCredential:
    """The Azure Batch credential: the account's shared key when configured, else a token credential
    (`credential` as in `token_credential`); azure-batch asks it for Batch's audience,
    `https://batch.core.windows.net//.default`."""
    if not account_key:
        return token_credential(credential)
    from azure.core.credentials import AzureNamedKeyCredential

    # Batch has no emulator: an address (the contract fake) never names the account.
    name = account_name_setting or ("" if _is_address(account_url) else account_name(account_url))
    if not name:
        raise PermanentAzureError(
            "AZURE_BATCH_ACCOUNT_NAME is needed with a shared key when the account URL does not name it"
        )
    return AzureNamedKeyCredential(name, account_key)


def _is_address(url: str) -> bool:
    """The URL's host is a loopback name or an IP address (an emulator or a test double), not a DNS name."""
    host = urlsplit(url).hostname or ""
    return host in LOOPBACK_HOSTS or host.replace(".", "").isdigit()
