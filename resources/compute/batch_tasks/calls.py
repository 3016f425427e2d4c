"""Calls to the Azure Batch service with one retry discipline, and the pool lifecycle built on them.

Every Batch call goes through `BatchCalls.call`: transient failures (throttling, 5xx, dropped or slow
connections) are retried with capped exponential backoff that honours `Retry-After`; permanent ones
(bad request, authentication, quota) fail at once with a message that says what to fix. The SDK's own
retry policy is switched off so that there is exactly one place deciding, and creates are idempotent:
a create whose response was lost is retried and its "already exists" answer counts as success.

`azure.batch` is imported lazily (inside functions) so loading the code location never imports it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

# HTTP statuses worth retrying: timeouts, throttling, and the server-side failures Batch documents as transient.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})

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


class AzureBatchError(RuntimeError):
    """Batch refused a request for good, or kept failing transiently past the retry budget."""


@dataclass(frozen=True)
class CallError:
    """What went wrong with one attempt, in terms the retry loop decides on."""

    transient: bool
    status: int | None
    code: str | None
    message: str
    retry_after: float | None


def classify(error: BaseException) -> CallError | None:
    """Classify an exception raised by the SDK; None for exceptions that are not Azure errors."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(error, ServiceRequestError | ServiceResponseError):
        # Connection refused or reset, or no response within the read timeout: the request may or may
        # not have reached the service, which is why creates must be idempotent.
        return CallError(True, None, None, f"{type(error).__name__}: {error.message}", None)
    if isinstance(error, HttpResponseError):
        status = error.status_code
        code = getattr(error.error, "code", None) if error.error is not None else None
        message = getattr(error.error, "message", None) if error.error is not None else None
        retry_after = None
        headers = getattr(error.response, "headers", None) or {}
        with contextlib.suppress(TypeError, ValueError):
            retry_after = float(headers.get("Retry-After", ""))
        return CallError(
            status in TRANSIENT_STATUS,
            status,
            code,
            str(message or error.reason or error.message),
            retry_after,
        )
    return None


class BatchCalls:
    """Retrying wrapper around a `BatchClient`; counts requests per operation for benchmarks and tests."""

    def __init__(
        self,
        client: Any,
        *,
        attempts: int = 6,
        backoff_seconds: float = 1.0,
        backoff_max_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.sleep = sleep
        self.counts: dict[str, int] = {}

    def call(
        self,
        operation: str,
        fn: Callable[..., T],
        *args: Any,
        exists_ok: tuple[str, ...] = (),
        missing_ok: bool = False,
        **kwargs: Any,
    ) -> T | None:
        """Call `fn`, retrying transient failures.

        `exists_ok`: error codes meaning "this was already done" (a retried create whose first response
        was lost); they return None instead of raising. `missing_ok`: a 404 returns None.
        """
        delay = self.backoff_seconds
        for attempt in range(1, self.attempts + 1):
            self.counts[operation] = self.counts.get(operation, 0) + 1
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                err = classify(exc)
                if err is None:
                    raise
                if err.code in exists_ok:
                    return None
                if missing_ok and err.status == 404:
                    return None
                if not err.transient:
                    raise AzureBatchError(describe(operation, err)) from None
                if attempt == self.attempts:
                    raise AzureBatchError(
                        f"Azure Batch {operation} kept failing after {attempt} attempts: {err.message} "
                        f"(HTTP {err.status or 'no response'}); the service or the network is unavailable, "
                        "try again later"
                    ) from None
                wait = min(self.backoff_max_seconds, err.retry_after if err.retry_after else delay)
                self.sleep(wait)
                delay = min(self.backoff_max_seconds, delay * 2)
        raise AssertionError("unreachable")

    def error_code(self, exc: BaseException) -> str | None:
        err = classify(exc)
        return err.code if err else None


def describe(operation: str, err: CallError) -> str:
    hint = FIX_HINTS.get(err.status or 0, "see the message")
    code = f" {err.code}" if err.code else ""
    return f"Azure Batch {operation} failed (HTTP {err.status}{code}): {err.message}. To fix: {hint}."
