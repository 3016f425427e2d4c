"""Token audiences: each fake takes only a token issued for its service, and the product's clients and the
real SDKs ask Entra ID for the audience each service requires.

`FakeCredential` issues a signed JWT whose `aud` is the resource of the scope asked for; the fakes'
routes declare the audience they require (`tests/support/fakes/http.py`). Where the scopes come from:
azure-batch's default `credential_scopes` (also the Batch spec's OAuth2 scope), azure-ai-ml's MLClient
(ARM) and `batch_endpoints.invoke` (AzureML), azureml-core's `TokenAuthentication` (the cloud's ARM
resource, `https://management.core.windows.net/`).
"""

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from resources.azure.errors import PermanentAzureError
from resources.azure.rest import ARM_SCOPE, AZUREML_SCOPE, AzureRest
from resources.compute.azureml.pipeline_endpoint_training import V1_SCOPE
from resources.compute.batch_tasks import AzureBatchBackend
from resources.storage import AzureBlobObjectStore
from tests.contract.test_azure_batch import SLEEPY, make_asset
from tests.support.fakes.azure_batch import BatchFake
from tests.support.fakes.azureml_v1 import FakeAzureMLPipelines
from tests.support.fakes.azureml_v2 import FakeAzureMLBatch
from tests.support.fakes.http import (
    ARM,
    AZUREML,
    BATCH,
    FakeCredential,
    resource_of,
    token_audience,
    token_for,
)
from tests.support.remote import error_text, new_blob_store

ARM_RESOURCE = "https://management.core.windows.net/"  # azureml-core's ARM audience (AzureCloud)
BATCH_SDK_SCOPE = "https://batch.core.windows.net//.default"  # azure-batch's default credential scope


@pytest.fixture(scope="module")
def v2() -> Iterator[FakeAzureMLBatch]:
    fake = FakeAzureMLBatch(None, mode="simulate").start()
    fake.deploy("models/mnist/m1/model")
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def v1() -> Iterator[FakeAzureMLPipelines]:
    fake = FakeAzureMLPipelines(None, mode="simulate").start()
    try:
        yield fake
    finally:
        fake.stop()


def send(
    url: str, token: str | None, method: str = "GET", body: Any = None
) -> tuple[int, dict[str, Any], str]:
    """(status, JSON body, WWW-Authenticate) of one request with `token` as its bearer token."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = response.read()
            return response.status, json.loads(payload) if payload else {}, ""
    except urllib.error.HTTPError as err:
        payload = err.read()
        return err.code, json.loads(payload) if payload else {}, err.headers.get("WWW-Authenticate", "")


def arm_path(fake: FakeAzureMLBatch | FakeAzureMLPipelines) -> str:
    return (
        f"/subscriptions/{fake.subscription}/resourceGroups/{fake.resource_group}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{fake.workspace}"
    )


def test_tokens_name_the_resource_of_their_scope_and_are_signed() -> None:
    credential = FakeCredential()
    assert token_audience(credential.get_token(BATCH_SDK_SCOPE).token) == "https://batch.core.windows.net/"
    assert token_audience(credential.get_token_info(ARM_SCOPE).token) == "https://management.azure.com"
    assert credential.requested == [BATCH_SDK_SCOPE, ARM_SCOPE]
    assert resource_of(V1_SCOPE) == "https://management.core.windows.net"
    with pytest.raises(ValueError, match="exactly one scope"):
        credential.get_token(ARM_SCOPE, AZUREML_SCOPE)
    header, payload, _ = token_for(ARM_RESOURCE).split(".")
    with pytest.raises(ValueError, match="signature"):
        token_audience(f"{header}.{payload}.forged")
    with pytest.raises(ValueError, match="expired"):
        token_audience(token_for(ARM_RESOURCE, lifetime=-1))


def test_arm_routes_refuse_a_token_for_another_audience_as_arm_does(v2: FakeAzureMLBatch) -> None:
    url = f"{v2.url}{arm_path(v2)}/batchEndpoints/{v2.endpoint_name}?api-version=2023-10-01"
    for resource in ARM.accepted:
        assert send(url, token_for(resource))[0] == 200, resource
    status, body, challenge = send(url, token_for("https://ml.azure.com/"))
    assert status == 401
    assert body["error"]["code"] == "InvalidAuthenticationTokenAudience"
    assert "wrong audience or resource 'https://ml.azure.com/'" in body["error"]["message"]
    assert 'error="invalid_token"' in challenge and challenge.startswith("Bearer authorization_uri=")
    for token in (None, "not-a-jwt", token_for(ARM_RESOURCE, lifetime=-1)):
        status, body, _ = send(url, token)
        assert (status, body["error"]["code"]) == (401, "InvalidAuthenticationToken")


def test_the_scoring_uri_takes_an_azureml_token_only(v2: FakeAzureMLBatch) -> None:
    status, body, _ = send(v2.scoring_uri, token_for(ARM_RESOURCE), "POST")
    assert (status, body["error"]["code"]) == (401, "InvalidAuthenticationTokenAudience")
    # With the right audience the request gets past authentication (to the body checks).
    status, _, _ = send(v2.scoring_uri, token_for("https://ml.azure.com/"), "POST")
    assert status != 401


def test_v1_pipelines_take_arm_tokens_and_run_history_also_azureml_ones(v1: FakeAzureMLPipelines) -> None:
    pipelines = f"{v1.url}/pipelines/v1.0{arm_path(v1)}/PipelineEndpoints/Name?Name={v1.endpoint_name}"
    assert send(pipelines, token_for(ARM_RESOURCE))[0] == 200
    assert send(pipelines, token_for("https://ml.azure.com/"))[0] == 401
    history = f"{v1.url}/history/v1.0{arm_path(v1)}/runs/no-such-run"
    for resource in (ARM_RESOURCE, "https://ml.azure.com/"):
        assert send(history, token_for(resource))[0] == 404, resource  # authenticated, then not found
    assert send(history, token_for("https://batch.core.windows.net/"))[0] == 401
    assert send(f"{v1.url}/discovery", None)[0] == 200, "discovery is anonymous"


def test_the_product_clients_ask_for_the_audience_each_route_requires(v2: FakeAzureMLBatch) -> None:
    def rest(scope: str) -> AzureRest:
        return AzureRest(FakeCredential(), scope, service="AzureML", allow_http_loopback=True, retry_total=0)

    arm_url = f"{v2.url}{arm_path(v2)}/batchEndpoints/{v2.endpoint_name}"
    assert (
        rest(ARM_SCOPE).call("GET", arm_url, params={"api-version": "2023-10-01"}, what="endpoint").status
        == 200
    )
    assert v2.server.calls_to("endpoint")[-1].audience == "https://management.azure.com"
    with pytest.raises(PermanentAzureError, match=r"401.*InvalidAuthenticationTokenAudience") as err:
        rest(AZUREML_SCOPE).call("GET", arm_url, params={"api-version": "2023-10-01"}, what="endpoint")
    assert "AZURE_TENANT_ID" in str(err.value), "a refused token says what to check"
    assert "eyJ" not in str(err.value), "no token in the message"
    with pytest.raises(PermanentAzureError, match="401"):
        rest(ARM_SCOPE).call("POST", v2.scoring_uri, json_body={}, what="invoke", retry=False)


# ---- Azure Batch: shared key or a Batch-audience token ------------------------------------------------
@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchFake]:
    with BatchFake(tmp_path_factory.mktemp("batch"), time_scale=600.0) as fake:
        yield fake


def sdk_client(fake: BatchFake, credential: FakeCredential, **kwargs: Any) -> Any:
    from azure.batch import BatchClient  # noqa: TID251 (the real SDK, in a test)

    from resources.azure.credentials import loopback_http_policy

    return BatchClient(fake.url, credential, per_call_policies=[loopback_http_policy()], **kwargs)  # type: ignore[arg-type]


def test_batch_takes_the_sdks_batch_token_and_refuses_another_audience(batch: BatchFake) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    credential = FakeCredential()
    assert list(sdk_client(batch, credential).list_pools()) == []
    assert credential.requested == [BATCH_SDK_SCOPE], "azure-batch's own scope"
    assert batch.requests()[-1].auth == "Bearer https://batch.core.windows.net/"
    wrong = sdk_client(batch, FakeCredential(), credential_scopes=[ARM_SCOPE])
    with pytest.raises(ClientAuthenticationError) as err:
        list(wrong.list_pools())
    assert err.value.status_code == 401
    assert "wrong audience or resource 'https://management.azure.com'" in str(err.value)
    assert 'error="invalid_token"' in err.value.response.headers["WWW-Authenticate"]  # type: ignore[union-attr]
    assert BATCH.accepts("https://batch.core.windows.net") and not AZUREML.accepts(
        "https://batch.core.windows.net"
    )


@pytest.mark.azurite
def test_the_batch_backend_runs_a_task_with_an_entra_token(
    batch: BatchFake, azurite: dict[str, str], tmp_path: Path
) -> None:
    store: AzureBlobObjectStore = new_blob_store(azurite, prefix="aud")
    store.put_bytes("inputs/x/data.txt", b"input")
    backend = AzureBatchBackend(
        account_url=batch.url,
        credential="python:tests.support.fakes.http:fake_credential",
        allow_http_loopback=True,
        pool_id=f"aud{uuid.uuid4().hex[:6]}",
        package_dir=str(SLEEPY),
        start_command="echo installing {requirements}",
        poll_initial_seconds=0.05,
        poll_max_seconds=0.2,
        pipes_interval_seconds=0.2,
        lro_polling_seconds=0,
    )
    before = len(batch.requests())
    result = dg.materialize(
        [make_asset({"ledger": str(tmp_path / "ledger"), "seconds": 0.2})],
        resources={"compute": backend, "storage": store},
        raise_on_error=False,
    )
    assert result.success, error_text(result)
    sent = batch.requests()[before:]
    assert len(sent) > 5 and {r.auth for r in sent} == {"Bearer https://batch.core.windows.net/"}
