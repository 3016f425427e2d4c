"""The Azure Batch account's client (azure-batch 15, an azure-core client) and how its calls fail.

Retries are azure-core's (`resources.azure.retry.retry_policy`) configured on the client: transient
failures (throttling, 5xx, dropped or slow connections) are retried with backoff that honours
Retry-After, POSTs included, because every create here is idempotent: a create whose response was lost is
sent again and its "already exists" answer counts as success (`exists_ok`). What still fails is raised
as a `TransientAzureError` or `PermanentAzureError` whose message says what to fix.

`azure.batch` is imported lazily (inside functions) so loading the code location never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from resources.azure.credentials import batch_credential, loopback_http_policy
from resources.azure.errors import AzureCallError, exception_error
from resources.azure.retry import retry_policy

from .config import AzureBatchConfig

T = TypeVar("T")
SERVICE = "Azure Batch"

# The Batch service raises the same errors as every Azure service; this name is what callers catch.
AzureBatchError = AzureCallError

# What an operator should do when Batch refuses a request for good, by HTTP status.
FIX_HINTS = {
    400: "the request was invalid; check the Azure Batch settings (VM size, image, node agent SKU, "
    "autoscale formula) named in the message",
    401: "authentication failed; check AZURE_BATCH_ACCOUNT_NAME and AZURE_BATCH_ACCOUNT_KEY, or the Entra ID "
    "identity (DefaultAzureCredential) and its role on the Batch account",
    403: "access denied; check AZURE_BATCH_ACCOUNT_NAME and AZURE_BATCH_ACCOUNT_KEY (the signature did not "
    "match), or give the identity a Batch role on the account",
    404: "not found; check AZURE_BATCH_ACCOUNT_URL",
    409: "conflicting state; see the message",
}


class BatchService:
    """A `BatchClient` for the configured account, and `call`, which every Batch request goes through."""

    def __init__(self, config: AzureBatchConfig) -> None:
        from azure.batch import BatchClient  # noqa: TID251 (lazy: only when Batch is used)

        credential = batch_credential(
            config.account_url,
            account_name_setting=config.account_name,
            account_key=config.account_key,
            credential=config.credential,
        )
        self.client: Any = BatchClient(
            config.account_url,
            credential,  # type: ignore[arg-type]  # a named key is accepted too (shared-key signing)
            per_call_policies=[loopback_http_policy()] if config.allow_http_loopback else [],
            retry_policy=retry_policy(
                retries=config.call_attempts - 1,
                per_kind=config.call_attempts - 1,  # any kind of failure, up to the same attempts
                backoff_seconds=config.backoff_seconds,
                backoff_max_seconds=config.backoff_max_seconds,
                read_timeout=config.request_timeout_seconds,
                every_method=True,
            ),
            connection_timeout=config.request_timeout_seconds,
            read_timeout=config.request_timeout_seconds,
        )

    def call(
        self,
        operation: str,
        fn: Callable[..., T],
        *args: Any,
        exists_ok: tuple[str, ...] = (),
        missing_ok: bool = False,
        **kwargs: Any,
    ) -> T | None:
        """`fn(*args, **kwargs)`, with its failure told in terms of `operation` and what to fix.

        `exists_ok`: error codes meaning "this was already done" (a retried create whose first response
        was lost); they return None instead of raising. `missing_ok`: a 404 returns None.
        """
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            error = exception_error(SERVICE, exc, what=operation, hints=FIX_HINTS)
            if error is None:
                raise
            if error.code in exists_ok or (missing_ok and error.status == 404):
                return None
            raise error from None

    def get(self, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """A read whose object may not exist (None)."""
        return self.call(operation, fn, *args, missing_ok=True, **kwargs)
