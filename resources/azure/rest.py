"""Calling an Azure REST API through an azure-core pipeline (the AzureML backends use it).

`AzureRest.call` sends one request: transient failures are retried by the pipeline's `RetryPolicy`
(see `resources.azure.retry`); calls that are not safe to repeat (a submission) are sent once and the
caller decides (see `submit_once`). What still fails is raised as `TransientAzureError` or
`PermanentAzureError` (see `resources.azure.errors`).

Plain http is refused except to a loopback address, and only when `allow_http_loopback` is set
(contract fakes in the tests); a bearer token is never sent over plain http to another host.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .credentials import is_loopback, loopback_http_policy
from .errors import PermanentAzureError, exception_error, redact_url, response_error
from .retry import EVERY_METHOD, retry_policy

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

# Scopes (token audiences) of the services the backends call, the resources the SDKs ask for: ARM as
# azure-ai-ml's MLClient does, AzureML (batch endpoint scoring URIs) as its `batch_endpoints.invoke` does
# (it writes `https://ml.azure.com//.default`: the same resource).
ARM_SCOPE = "https://management.azure.com/.default"
AZUREML_SCOPE = "https://ml.azure.com/.default"

# What to do when an Entra ID token is refused (401) or not allowed (403).
TOKEN_HINTS = {
    401: "the credential was rejected: check AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET, "
    "or 'az login' to the right tenant",
    403: "the identity is not allowed to do this: grant it a role on the workspace (e.g. AzureML Data "
    "Scientist) or on the resource named",
}


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
        from azure.core.pipeline.policies import BearerTokenCredentialPolicy, HeadersPolicy, UserAgentPolicy

        policies: list[Any] = [
            HeadersPolicy(),
            UserAgentPolicy("mnist-orchestration"),
            retry_policy(
                retries=retry_total,
                backoff_seconds=backoff_factor,
                backoff_max_seconds=backoff_max,
                read_timeout=read_timeout,
            ),
        ]
        if allow_http_loopback:
            policies.append(loopback_http_policy())
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
            options["retry_on_methods"] = EVERY_METHOD
        try:
            response = self._client.send_request(request, **options)
            body = response.read()
        except Exception as err:
            where = f"{method} {redact_url(url)}"
            error = exception_error(self.service, err, what=what, where=where, retried=retry)
            if error is None:
                raise
            raise error from None
        status = response.status_code
        if status in ok:
            return Response(status, dict(response.headers), body)
        raise response_error(
            self.service,
            status,
            body,
            what=what,
            fix=fix,
            where=f"{method} {redact_url(url)}",
            retried=retry,
            hints=TOKEN_HINTS,
        )
