"""The Azure layer on its own: error classification, retries and waits, credentials (no service needed)."""

import json
from typing import Any

import pytest

from resources.azure.credentials import (
    account_name,
    batch_credential,
    loopback_http_policy,
    storage_credential,
    token_credential,
)
from resources.azure.errors import (
    PermanentAzureError,
    TransientAzureError,
    exception_error,
    response_error,
    service_error,
)
from resources.azure.retry import EVERY_METHOD, Backoff, retry_policy, submit_once, wait_until


class _Request:
    method = "PUT"
    url = "https://acct.westeurope.batch.azure.com/jobs/j1?sig=SECRET"


class _Response:
    """Just enough of an azure-core HTTP response for its exceptions to parse."""

    reason = "Conflict"
    headers: dict[str, str] = {}
    request = _Request()
    content_type = "application/json"

    def __init__(self, status: int, body: Any) -> None:
        self.status_code = status
        self._body = json.dumps(body)

    def text(self, encoding: str | None = None) -> str:
        return self._body

    def body(self) -> bytes:
        return self._body.encode()


def test_error_responses_are_transient_or_permanent_and_say_what_to_check() -> None:
    busy = response_error(
        "AzureML", 503, b'{"error": {"code": "ServerBusy", "message": "try later"}}', what="x"
    )
    assert isinstance(busy, TransientAzureError) and (busy.status, busy.code) == (503, "ServerBusy")
    assert "after retries" in str(busy)
    missing = response_error(
        "AzureML pipelines",
        404,
        b'{"Error": {"Code": "NotFound", "Message": "no endpoint"}}',
        what="pipeline endpoint 'nope'",
        fix="MNIST_AZUREML_PIPELINE_ENDPOINT",
        where="GET https://x.api.azureml.ms/p",
    )
    assert isinstance(missing, PermanentAzureError)
    assert str(missing) == (
        "AzureML pipelines: pipeline endpoint 'nope': 404 not found: NotFound: no endpoint. "
        "Check MNIST_AZUREML_PIPELINE_ENDPOINT (GET https://x.api.azureml.ms/p)"
    )
    denied = response_error("S", 401, b"", what="x", fix="SETTING", hints={401: "sign in again"})
    assert "401 sign in again" in str(denied) and "SETTING" not in str(denied)


def test_service_messages_and_urls_never_carry_a_signature() -> None:
    body = json.dumps({"code": "AuthenticationFailed", "message": {"value": "see https://a/b?sig=SECRET"}})
    assert service_error(body.encode()) == ("AuthenticationFailed", "see https://a/b?<redacted>")
    err = exception_error("Azure Batch", _exists(403, "AuthenticationFailed"), what="get_pool")
    assert err is not None and "SECRET" not in str(err)


def _exists(status: int, code: str) -> Exception:
    from azure.core.exceptions import HttpResponseError

    return HttpResponseError(response=_Response(status, {"error": {"code": code, "message": "it is so"}}))  # type: ignore[arg-type]


def test_azure_core_exceptions_are_classified_like_responses() -> None:
    from azure.core.exceptions import ServiceRequestError

    exists = exception_error("Azure Batch", _exists(409, "JobExists"), what="create_job")
    assert isinstance(exists, PermanentAzureError) and (exists.status, exists.code) == (409, "JobExists")
    assert "(PUT https://acct.westeurope.batch.azure.com/jobs/j1)" in str(exists)
    throttled = exception_error("Azure Batch", _exists(429, "TooManyRequests"), what="get_job")
    assert isinstance(throttled, TransientAzureError)
    reset = exception_error("Azure Batch", ServiceRequestError("connection reset"), what="get_job")
    assert isinstance(reset, TransientAzureError) and reset.status is None
    assert exception_error("Azure Batch", ValueError("not Azure"), what="x") is None


def test_backoff_doubles_up_to_its_cap_and_stops_after_its_attempts() -> None:
    slept: list[float] = []
    assert list(Backoff(1.0, 5.0, attempts=5, sleep=slept.append).waits()) == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert slept == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_submit_once_looks_for_a_lost_submission_before_sending_again() -> None:
    sent: list[int] = []

    def send() -> str:
        sent.append(1)
        raise TransientAzureError("response lost")

    found = iter([None, "job-1"])
    assert submit_once(send, lambda: next(found), Backoff(0.0, attempts=5, sleep=lambda _: None)) == "job-1"
    assert len(sent) == 2, "sent again only when the first one was not found"
    with pytest.raises(TransientAzureError):
        submit_once(send, lambda: None, Backoff(0.0, attempts=2, sleep=lambda _: None))


def test_wait_until_returns_the_first_result_or_none_when_out_of_time() -> None:
    answers = iter([None, None, "ready"])
    assert wait_until(lambda: next(answers), Backoff(0.0, attempts=5, sleep=lambda _: None)) == "ready"
    assert wait_until(lambda: None, Backoff(0.0, attempts=3, sleep=lambda _: None)) is None


def test_retry_policy_repeats_posts_only_where_asked() -> None:
    default = retry_policy(retries=4, backoff_seconds=0.5, backoff_max_seconds=8, read_timeout=10)
    every = retry_policy(
        retries=4, backoff_seconds=0.5, backoff_max_seconds=8, read_timeout=10, every_method=True, per_kind=4
    )
    assert "POST" not in default.configure_retries({})["methods"]
    # Without `per_kind`, azure-core's own cap of 3 per kind applies (the AzureML clients).
    defaults = default.configure_retries({})
    assert (defaults["total"], defaults["connect"], defaults["read"], defaults["status"]) == (4, 3, 3, 3)
    settings = every.configure_retries({})
    assert settings["methods"] == EVERY_METHOD
    assert (settings["total"], settings["connect"], settings["read"], settings["status"]) == (4, 4, 4, 4)


def test_account_names_and_storage_credentials() -> None:
    assert account_name("https://mnistdata.blob.core.windows.net") == "mnistdata"
    assert account_name("http://127.0.0.1:10000/devstoreaccount1") == "devstoreaccount1"
    assert storage_credential("https://a.blob.core.windows.net", account_key="k", sas_token="s") == {
        "account_name": "a",
        "account_key": "k",
    }
    assert (
        storage_credential("https://a.blob.core.windows.net", account_key=None, sas_token="?sv=1") == "sv=1"
    )


def test_batch_shared_key_needs_an_account_name_the_url_may_not_give() -> None:
    named = batch_credential(
        "https://acct.westeurope.batch.azure.com", account_name_setting=None, account_key="a2V5"
    )
    assert named.named_key.name == "acct"  # type: ignore[union-attr]
    with pytest.raises(PermanentAzureError, match="AZURE_BATCH_ACCOUNT_NAME"):
        batch_credential("http://127.0.0.1:8000", account_name_setting=None, account_key="a2V5")
    # Without a key: Entra ID, from the credential setting (a factory here).
    entra = batch_credential(
        "https://acct.westeurope.batch.azure.com",
        account_name_setting=None,
        account_key=None,
        credential="python:tests.support.fakes.http:fake_credential",
    )
    assert type(entra).__name__ == "FakeCredential"


def test_a_bearer_token_goes_over_plain_http_to_loopback_only() -> None:
    from azure.core.exceptions import ServiceRequestError
    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy
    from azure.core.rest import HttpRequest

    from tests.support.fakes.http import FakeCredential

    def send(url: str) -> str:
        request = PipelineRequest(HttpRequest("GET", url), PipelineContext(None))
        loopback_http_policy().on_request(request)
        BearerTokenCredentialPolicy(FakeCredential(), "https://batch.core.windows.net//.default").on_request(
            request
        )
        return request.http_request.headers["Authorization"]

    assert send("http://127.0.0.1:8000/pools").startswith("Bearer ")
    with pytest.raises(ServiceRequestError, match="non-TLS"):
        send("http://acct.westeurope.batch.azure.com/pools")


def test_token_credential_factory_hook_and_setting_errors() -> None:
    credential = token_credential("python:tests.support.fakes.http:fake_credential")
    assert credential.get_token("https://ml.azure.com/.default").token
    with pytest.raises(PermanentAzureError, match="expected 'default'"):
        token_credential("keyvault")
    with pytest.raises(PermanentAzureError, match="AZURE_TENANT_ID and AZURE_CLIENT_ID"):
        token_credential(client_secret="s")
