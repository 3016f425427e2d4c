"""What went wrong calling an Azure service, and what to do about it.

One taxonomy for every Azure call the resources make (AzureML REST, Azure Batch through its SDK):

- `TransientAzureError`: throttling, a server error, a dropped connection or a timeout that outlasted
  the retries; trying again later may work.
- `PermanentAzureError`: bad credentials, a missing permission, a missing resource, a bad request or a
  setting that cannot work; retrying would not help.

The same classification applies to an HTTP response (status and body) and to the exceptions azure-core
raises (`HttpResponseError`, `ServiceRequestError`, `ServiceResponseError`, `ClientAuthenticationError`).
Messages carry the service's own words, what was being done and which setting to check, never a token,
a secret or a SAS signature (query strings are cut from every URL shown).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# Statuses worth retrying: timeouts, throttling, and the server-side failures Azure documents as transient.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})

# What an error status means for an operator, unless the service says something more specific.
STATUS_HINTS: Mapping[int, str] = {
    400: "the request was rejected",
    401: "the credential was rejected",
    403: "the identity is not allowed to do this",
    404: "not found",
    409: "conflict with the current state of the resource",
}

# AzureML's error codes for a job or step that failed through no fault of its own (the service, the
# compute, a node lost or preempted); anything else (UserError above all) is the job's own failure.
SYSTEM_ERROR_CODES = frozenset({"SystemError", "ServiceError", "InternalServerError", "ServiceUnavailable"})

SIGN_IN_HINT = (
    "Sign in with 'az login', use a managed identity, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
    "AZURE_CLIENT_SECRET for a service principal."
)


class AzureCallError(Exception):
    """A call to an Azure service failed. `status` is the HTTP status (None: no response at all)."""

    transient: bool = False

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class TransientAzureError(AzureCallError):
    """Still failing after the retries: throttling, a server error, a reset or a timeout."""

    transient = True


class PermanentAzureError(AzureCallError):
    """Retrying would not help: bad credentials, missing permission, a missing resource, a bad request."""


def response_error(
    service: str,
    status: int,
    body: bytes,
    *,
    what: str,
    fix: str = "",
    where: str = "",
    retried: bool = True,
    hints: Mapping[int, str] | None = None,
) -> AzureCallError:
    """The error for an HTTP error response whose body is `body` (Azure's JSON error shapes, or text)."""
    code, detail = service_error(body)
    return _classified(service, status, code, detail, what, fix, where, retried, hints)


def exception_error(
    service: str,
    err: BaseException,
    *,
    what: str,
    fix: str = "",
    where: str = "",
    retried: bool = True,
    hints: Mapping[int, str] | None = None,
) -> AzureCallError | None:
    """The error for an exception raised by an azure-core pipeline; None if it is not an Azure error.

    `where` (method and URL) is shown when the exception does not carry its request."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if isinstance(err, ClientAuthenticationError) and err.response is None:
        # Raised by the credential before any request went out: no token could be had.
        return PermanentAzureError(
            f"{service}: could not get an access token for {what}: {first_line(err)}. {SIGN_IN_HINT}"
        )
    if isinstance(err, HttpResponseError):
        status = err.status_code
        if status is None:
            return PermanentAzureError(f"{service}: {what}: {first_line(err)}")
        request = getattr(err.response, "request", None)
        if request is not None:
            where = f"{request.method} {redact_url(request.url)}"
        odata: Any = err.error
        code = getattr(odata, "code", None) if odata is not None else None
        message = getattr(odata, "message", None) if odata is not None else None
        if code is None and message is None and err.response is not None:
            with contextlib.suppress(Exception):  # a streamed or consumed body: stay generic
                code, message = service_error(err.response.text().encode())
        detail = scrub(str(message or err.reason or first_line(err)))[:1000] or None
        return _classified(service, status, code, detail, what, fix, where, retried, hints)
    if isinstance(err, ServiceRequestError | ServiceResponseError):
        # Connection refused or reset, or no response within the read timeout: the request may or may
        # not have reached the service, which is why submissions must be idempotent or checked.
        at = f" ({where})" if where else ""
        return TransientAzureError(
            f"{service}: no answer for {what}{at}: {type(err).__name__}: {first_line(err)}"
            + (
                " (after retries); the service or the network is unavailable, try again later"
                if retried
                else ""
            )
        )
    return None


def _classified(
    service: str,
    status: int,
    code: str | None,
    detail: str | None,
    what: str,
    fix: str,
    where: str,
    retried: bool,
    hints: Mapping[int, str] | None,
) -> AzureCallError:
    said = ": " + ": ".join(filter(None, (code, detail))) if (code or detail) else ""
    at = f" ({where})" if where else ""
    if status in TRANSIENT_STATUS:
        return TransientAzureError(
            f"{service}: {what} failed with {status}{said}{at}"
            + (" after retries; the service is throttling or degraded, try again later" if retried else ""),
            status,
            code,
        )
    hint = {**STATUS_HINTS, **(hints or {})}.get(status, "the request was rejected")
    check = f". Check {fix}" if fix and status not in (401, 403) else ""
    return PermanentAzureError(f"{service}: {what}: {status} {hint}{said}{check}{at}", status, code)


def service_error(body: bytes) -> tuple[str | None, str | None]:
    """(code, message) from an Azure error body: ARM/AzureML `{"error": {...}}`, v1 `{"Error": {...}}`,
    Batch `{"code", "message": {"value"}}`, or plain text."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        text = body[:300].decode(errors="replace").strip()
        return None, scrub(text) or None
    if not isinstance(data, dict):
        return None, None
    err = data.get("error") or data.get("Error") or data
    if not isinstance(err, dict):
        return None, str(err)[:500]
    code = err.get("code") or err.get("Code")
    message = err.get("message") or err.get("Message")
    if isinstance(message, dict):  # Azure Batch style {"lang", "value"}
        message = message.get("value")
    return (str(code) if code else None), (scrub(str(message)[:1000]) if message else None)


def redact_url(url: str) -> str:
    """The URL without its query string (SAS signatures, tokens) for messages and logs."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def scrub(text: str) -> str:
    """Remove query strings (SAS signatures, codes) from any URL-like text before it is shown."""
    return _QUERY.sub("?<redacted>", text)


_QUERY = re.compile(r"\?[^\s'\")]+")


def first_line(err: BaseException) -> str:
    """The first line of an exception's text, scrubbed (SDK errors repeat the whole response below it)."""
    lines = str(getattr(err, "message", None) or err).strip().splitlines()
    return scrub(lines[0]) if lines else type(err).__name__


def system_failure(codes: list[str | None]) -> bool:
    """Whether a failed AzureML job's error codes (the job's, its failed steps') all blame the
    infrastructure (`SYSTEM_ERROR_CODES`), so that running the job again may work; no code: False."""
    known = [code for code in codes if code]
    return bool(known) and all(code in SYSTEM_ERROR_CODES for code in known)
