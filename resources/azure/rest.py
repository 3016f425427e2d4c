"""Calling Azure REST APIs: credentials, retries that honour Retry-After, and errors that say what to fix.

Shared by the AzureML backends (and meant to be reusable by other Azure compute helpers):

- `make_credential`: a service principal when a client secret is configured, else
  `DefaultAzureCredential` (managed identity in Azure, `az login` on a laptop); tests can name a
  credential factory instead (`python:module:attr`), so resources stay plain configuration.
- `AzureRest.call`: one request through an azure-core pipeline. Transient failures (408, 429 with
  Retry-After, 5xx, connection resets, timeouts) are retried with exponential backoff by azure-core's
  `RetryPolicy`; calls that are not safe to repeat (a submission) are sent once and the caller decides
  (see `submit_once`). What still fails is raised as `TransientAzureError` or `PermanentAzureError`
  with the service's own message and what to check; never with a token, a secret or a SAS signature.
- Plain http is refused except to a loopback address, and only when `allow_http_loopback` is set
  (contract fakes in the tests); a bearer token is never sent over plain http to another host.
"""

from __future__ import annotations

import importlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline import PipelineRequest

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Scopes (token audiences) of the services the backends call.
ARM_SCOPE = "https://management.azure.com/.default"
AZUREML_SCOPE = "https://ml.azure.com/.default"

T = TypeVar("T")


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


def make_credential(
    credential: str = "default",
    tenant_id: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> TokenCredential:
    """The credential for Azure calls.

    `credential` is "default" (a service principal when `client_secret` is given, otherwise
    `DefaultAzureCredential`) or "python:<module>:<attribute>", a zero-argument factory returning a
    credential (tests use it to hand out fake tokens).
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


def redact_url(url: str) -> str:
    """The URL without its query string (SAS signatures, tokens) for messages and logs."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class AzureRest:
    """One authenticated azure-core pipeline for a service (`service` names it in error messages)."""

    def __init__(
        self,
        credential: TokenCredential | None,
        scope: str | None,
        *,
        service: str,
        allow_http_loopback: bool = False,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retry_total: int = 6,
        backoff_factor: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        from azure.core import PipelineClient
        from azure.core.pipeline.policies import (
            BearerTokenCredentialPolicy,
            HeadersPolicy,
            RetryPolicy,
            SansIOHTTPPolicy,
            UserAgentPolicy,
        )

        class _LoopbackHttp(SansIOHTTPPolicy):  # type: ignore[type-arg]
            """Lets the bearer policy send a token over http, to a loopback address only."""

            def on_request(self, request: PipelineRequest) -> None:  # type: ignore[override]
                if is_loopback(request.http_request.url):
                    request.context["enforce_https"] = False

        policies: list[Any] = [
            HeadersPolicy(),
            UserAgentPolicy("mnist-orchestration"),
            RetryPolicy(
                retry_total=retry_total,
                retry_backoff_factor=backoff_factor,
                retry_backoff_max=backoff_max,
                timeout=max(300.0, read_timeout * (retry_total + 1)),
            ),
        ]
        if allow_http_loopback:
            policies.append(_LoopbackHttp())
        if credential is not None and scope:
            policies.append(BearerTokenCredentialPolicy(credential, scope))
        self.service = service
        self.allow_http_loopback = allow_http_loopback
        self._timeouts = {"connection_timeout": connect_timeout, "read_timeout": read_timeout}
        self._client = PipelineClient(base_url="https://localhost", policies=policies)

    def call(
        self,
        method: str,
        url: str,
        *,
        what: str,
        fix: str = "",
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
        ok: tuple[int, ...] = (200, 201, 202, 204),
    ) -> Response:
        """Send one request; `what` says what it is about and `fix` which setting to check when it fails.

        `retry=False` sends it exactly once (a submission: the caller checks whether it landed).
        Read-only POSTs (queries) and cancellations are safe to repeat and pass `retry=True`.
        """
        from azure.core.exceptions import (
            ClientAuthenticationError,
            ServiceRequestError,
            ServiceResponseError,
        )
        from azure.core.rest import HttpRequest

        parts = urlsplit(url)
        if parts.scheme != "https" and not (self.allow_http_loopback and is_loopback(url)):
            raise PermanentAzureError(
                f"{self.service}: refusing to call {redact_url(url)}: only https is allowed "
                "(plain http only to a loopback address, for local test doubles)"
            )
        request = HttpRequest(
            method, url, json=json_body, params=dict(params or {}), headers=dict(headers or {})
        )
        options: dict[str, Any] = dict(self._timeouts)
        if not retry:
            options["retry_total"] = 0
        elif method.upper() == "POST":
            options["retry_on_methods"] = frozenset({"POST", "GET", "DELETE", "PUT", "HEAD"})
        try:
            response = self._client.send_request(request, **options)
            body = response.read()
        except ClientAuthenticationError as err:
            raise PermanentAzureError(
                f"{self.service}: could not get an access token for {what}: {_first_line(err)}. Sign in with "
                "'az login', use a managed identity, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
                "AZURE_CLIENT_SECRET for a service principal."
            ) from None
        except (ServiceRequestError, ServiceResponseError) as err:
            raise TransientAzureError(
                f"{self.service}: no answer for {what} ({method} {redact_url(url)}): {_first_line(err)}"
                + ("" if not retry else " (after retries)")
            ) from None
        status = response.status_code
        if status in ok:
            return Response(status, dict(response.headers), body)
        raise classify(self.service, status, body, method, url, what, fix, retried=retry)


def classify(
    service: str, status: int, body: bytes, method: str, url: str, what: str, fix: str, retried: bool
) -> AzureCallError:
    """Turn an error response into an exception whose message says what was wrong and what to check."""
    code, detail = _service_error(body)
    where = f"{method} {redact_url(url)}"
    said = f": {detail}" if detail else ""
    if status in TRANSIENT_STATUS:
        return TransientAzureError(
            f"{service}: {what} failed with {status}{said} ({where})"
            + (" after retries; the service is throttling or degraded, try again later" if retried else ""),
            status,
            code,
        )
    hint = {
        401: "the credential was rejected: check AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET, "
        "or 'az login' to the right tenant",
        403: "the identity is not allowed to do this: grant it a role on the workspace (e.g. AzureML Data "
        "Scientist) or on the resource named",
        404: "not found",
        409: "conflict with the current state of the resource",
    }.get(status, "the request was rejected")
    return PermanentAzureError(
        f"{service}: {what}: {status} {hint}{said}"
        + (f". Check {fix}" if fix and status not in (401, 403) else "")
        + f" ({where})",
        status,
        code,
    )


def submit_once(
    send: Callable[[], T],
    find: Callable[[], T | None],
    *,
    attempts: int = 6,
    backoff: float = 1.0,
    backoff_max: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Send a non-idempotent request (a job submission) so that it takes effect at most once.

    A transient failure may hide a submission that did land (the response was lost). So before
    sending again, `find` looks for it (by the idempotency key the submission carries); only if it
    is not there is the request sent again.
    """
    delay = backoff
    for attempt in range(1, attempts + 1):
        try:
            return send()
        except TransientAzureError:
            if attempt == attempts:
                raise
            sleep(delay)
            delay = min(backoff_max, delay * 2)
            found = find()
            if found is not None:
                return found
    raise AssertionError("unreachable")


def _service_error(body: bytes) -> tuple[str | None, str | None]:
    """(code, message) from an Azure error body: ARM/AzureML `{"error": {...}}` or v1 `{"Error": {...}}`."""
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


def scrub(text: str) -> str:
    """Remove query strings (SAS signatures, codes) from any URL-like text before it is shown."""
    return _QUERY.sub("?<redacted>", text)


_QUERY = re.compile(r"\?[^\s'\")]+")


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return scrub(lines[0]) if lines else type(err).__name__
