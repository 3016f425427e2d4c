"""The authenticating gateway in front of a REAL dagster-webserver: Entra-shaped tokens signed with a local
key (JWKS served on 127.0.0.1), attacks answered 401/403 with no side effect, an allowlisted launch whose
tags pass through (a retry with the same `adf/pipeline_run_id` gets the same run back: the instance's run
coordinator, shipped in instance/local/dagster.yaml too), and logs that never contain a token."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from adf_bridge.gateway.app import create_app
from adf_bridge.gateway.auth import KeySet
from adf_bridge.gateway.settings import GatewaySettings, GatewaySettingsError, parse_identities
from adf_bridge.jobs_manifest import JobsManifest
from assets.batch_ids import batch_id_problem
from tests.support.gateway import (
    ADF_APPID,
    ADF_OID,
    AUDIENCE,
    LAUNCH,
    OTHER_OID,
    STATUS,
    TENANT,
    Dagster,
    LocalEntra,
    clean_env,
    serve,
)


def launch_body(job: str = "train_model", adf_run: str | None = None) -> dict[str, Any]:
    """A launch as the ADF template sends it; `adf_run` is ADF's run id (the idempotency key), new if None."""
    metadata = {"tags": [{"key": "adf/pipeline_run_id", "value": adf_run or str(uuid.uuid4())}]}
    params = {
        "selector": {"repositoryLocationName": "mnist", "repositoryName": "__repository__", "jobName": job},
        "runConfigData": {},
        "executionMetadata": metadata,
    }
    return {"query": LAUNCH, "variables": {"executionParams": params}, "operationName": "LaunchRun"}


# ---- settings (no processes) -----------------------------------------------------------------------


def test_settings_from_env(tmp_path: Path) -> None:
    policy = tmp_path / "identities.yaml"
    policy.write_text(f"identities:\n  - name: adf\n    app_id: {ADF_APPID}\n    jobs: [score_batch]\n")
    settings = GatewaySettings.from_env(
        {
            "MNIST_GATEWAY_TENANT_ID": TENANT,
            "MNIST_GATEWAY_AUDIENCE": f"{AUDIENCE}, {ADF_APPID}",
            "MNIST_GATEWAY_IDENTITIES": str(policy),
            "MNIST_GATEWAY_PORT": "9000",
            "MNIST_GATEWAY_MAX_LAUNCHES": "3",
        }
    )
    assert (
        settings.audiences == (AUDIENCE, ADF_APPID) and settings.port == 9000 and settings.max_launches == 3
    )
    assert settings.identities[0].app_id == ADF_APPID and settings.identities[0].jobs == {"score_batch"}
    assert settings.issuers == (
        f"https://login.microsoftonline.com/{TENANT}/v2.0",
        f"https://sts.windows.net/{TENANT}/",
    )
    assert settings.keys_url == f"https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys"
    secret = "s" * 40
    static = GatewaySettings.from_env(
        {
            "MNIST_GATEWAY_AUTH": "static",
            "MNIST_GATEWAY_STATIC_TOKEN": secret,
            "MNIST_GATEWAY_STATIC_JOBS": "a, b",
        }
    )
    assert static.static_jobs == {"a", "b"} and secret not in repr(static)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"MNIST_GATEWAY_TENANT": "x"}, "unknown setting(s) MNIST_GATEWAY_TENANT"),
        ({}, "MNIST_GATEWAY_TENANT_ID"),
        ({"MNIST_GATEWAY_TENANT_ID": TENANT}, "MNIST_GATEWAY_AUDIENCE"),
        ({"MNIST_GATEWAY_TENANT_ID": TENANT, "MNIST_GATEWAY_AUDIENCE": "a"}, "MNIST_GATEWAY_IDENTITIES"),
        (
            {
                "MNIST_GATEWAY_TENANT_ID": TENANT,
                "MNIST_GATEWAY_AUDIENCE": "a",
                "MNIST_GATEWAY_IDENTITIES": '[{"jobs": []}]',
            },
            "object_id",
        ),
        (
            {
                "MNIST_GATEWAY_TENANT_ID": TENANT,
                "MNIST_GATEWAY_AUDIENCE": "a",
                "MNIST_GATEWAY_IDENTITIES": "/nope.yaml",
            },
            "neither JSON nor an existing file",
        ),
        ({"MNIST_GATEWAY_AUTH": "static", "MNIST_GATEWAY_STATIC_TOKEN": "short"}, "at least 32"),
        (
            {
                "MNIST_GATEWAY_AUTH": "static",
                "MNIST_GATEWAY_STATIC_TOKEN": "s" * 40,
                "MNIST_GATEWAY_HOST": "0.0.0.0",
            },
            "loopback",
        ),
        ({"MNIST_GATEWAY_AUTH": "basic"}, "'entra' or 'static'"),
        ({"MNIST_GATEWAY_MAX_LAUNCHES": "0"}, "positive whole number"),
        ({"MNIST_GATEWAY_UPSTREAM": "localhost:3000"}, "GraphQL URL"),
    ],
)
def test_settings_errors_say_what_is_wrong(env: dict[str, str], words: str) -> None:
    with pytest.raises(GatewaySettingsError) as error:
        GatewaySettings.from_env(env)
    assert words in str(error.value)
    assert "s" * 40 not in str(error.value)


def test_every_setting_is_a_documented_variable_and_the_token_never_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    variables = GatewaySettings.variables()
    assert GatewaySettings.model_config.get("env_prefix") == "MNIST_GATEWAY_"
    for name, field in GatewaySettings.model_fields.items():
        assert field.description, name
        assert variables[name] == "MNIST_GATEWAY_" + name.upper()
    secret = "s" * 40
    static = {"MNIST_GATEWAY_AUTH": "static", "MNIST_GATEWAY_STATIC_TOKEN": secret}
    settings = GatewaySettings.from_env(static)
    assert secret not in f"{settings!r} {settings!s} {settings.model_dump()} {settings.model_dump_json()}"
    # A mapping given is read alone: the process environment does not leak in.
    monkeypatch.setenv("MNIST_GATEWAY_PORT", "not-a-port")
    assert GatewaySettings.from_env(static).port == 8080
    with pytest.raises(GatewaySettingsError, match="MNIST_GATEWAY_PORT: expected a TCP port"):
        GatewaySettings.from_env()


def _static_settings(**env: str) -> GatewaySettings:
    return GatewaySettings.from_env(
        {
            "MNIST_GATEWAY_AUTH": "static",
            "MNIST_GATEWAY_STATIC_TOKEN": "s" * 40,
            "MNIST_GATEWAY_STATIC_JOBS": "score_batch",
            **env,
        }
    )


def test_a_missing_or_broken_jobs_manifest_stops_the_gateway_saying_how_to_fix_it(tmp_path: Path) -> None:
    missing = _static_settings(MNIST_GATEWAY_JOBS_MANIFEST=str(tmp_path / "jobs.json"))
    with pytest.raises(GatewaySettingsError, match="MNIST_GATEWAY_JOBS_MANIFEST") as error:
        create_app(missing)
    assert "python -m adf_bridge.templates" in str(error.value)
    (tmp_path / "jobs.json").write_text('{"jobs": [{"name": "score_batch"}]}')
    with pytest.raises(GatewaySettingsError, match=r"not valid \(.*jobs\.0\.partitioned: Field required"):
        create_app(missing)


def test_partitions_an_identity_may_add_come_from_the_jobs_manifest_setting(tmp_path: Path) -> None:
    manifest = tmp_path / "jobs.json"
    jobs = [{"name": "score_batch", "description": "", "partitioned": True, "dynamic_partitions": "other"}]
    manifest.write_text(json.dumps({"jobs": jobs}))
    forwarded: list[Any] = []

    def dagster(request: httpx.Request) -> httpx.Response:
        forwarded.append(json.loads(request.content)["variables"]["partitionsDefName"])
        return httpx.Response(200, json={"data": {"addDynamicPartition": {"__typename": "Added"}}})

    app = create_app(
        _static_settings(MNIST_GATEWAY_JOBS_MANIFEST=str(manifest)), transport=httpx.MockTransport(dagster)
    )
    add = """mutation($s: RepositorySelector!, $d: String!, $k: String!) {
      addDynamicPartition(repositorySelector: $s, partitionsDefName: $d, partitionKey: $k) { __typename } }"""
    selector = {"repositoryLocationName": "mnist", "repositoryName": "__repository__"}
    headers = {"Authorization": "Bearer " + "s" * 40}
    with serve(app) as url, httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for definition, status in (("other", 200), ("inference_batches", 403)):
            variables = {"s": selector, "d": definition, "k": "b-1"}
            answer = client.post("/graphql", json={"query": add, "variables": variables})
            assert answer.status_code == status, answer.text
    assert forwarded == ["other"]


def test_partitions_an_identity_may_add_come_from_the_code_location() -> None:
    # Through the jobs manifest, which the template generator writes from the code location (its
    # staleness is tests/unit/test_adf_templates.py's).
    assert JobsManifest.read().dynamic_partitions() == {
        "score_batch": "inference_batches",
        "mnist_pipeline": "inference_batches",
    }


def test_code_location_settings_accept_gateway_variables() -> None:
    from orchestration.settings import Settings

    Settings.from_env({"MNIST_GATEWAY_TENANT_ID": TENANT, "MNIST_GATEWAY_STATIC_TOKEN": "x"})


def test_identity_rules_match_oid_and_or_appid() -> None:
    both, only_app = parse_identities(
        json.dumps(
            [
                {"name": "both", "object_id": ADF_OID, "app_id": ADF_APPID, "jobs": ["a"]},
                {"name": "app", "app_id": ADF_APPID.upper(), "jobs": ["b"]},
            ]
        )
    )
    assert both.matches(ADF_OID, ADF_APPID) and not both.matches(ADF_OID, None)
    assert only_app.matches(OTHER_OID, ADF_APPID) and not only_app.matches(ADF_OID, None)


def test_signing_keys_are_cached_and_refetched_for_a_new_kid_at_most_once_a_minute() -> None:
    entra = LocalEntra()
    try:
        keys = KeySet(entra.jwks_url)
        assert keys.get(entra.kid) is not None and entra.requests == 1
        assert keys.get(entra.kid) is not None and entra.requests == 1  # cached
        for _ in range(5):
            assert keys.get("random-kid") is None
        assert entra.requests == 1  # unknown kids do not hammer the endpoint
        rotating = KeySet(entra.jwks_url, min_refresh_seconds=0)
        assert rotating.get(entra.kid) is not None
        new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        entra.extra_keys.append(
            {
                **json.loads(RSAAlgorithm.to_jwk(new_key.public_key())),
                "kid": "rolled",
                "use": "sig",
            }
        )
        assert rotating.get("rolled") is not None  # Entra rolled its keys: picked up on the next unknown kid
    finally:
        entra.close()


# ---- the gateway in front of a real webserver ------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("gateway")
    entra = LocalEntra()
    dagster = Dagster(
        tmp / "dagster_home",
        clean_env(MNIST_DATA_DIR=str(tmp / "storage"), MNIST_WORK_DIR=str(tmp / "compute")),
    )
    try:
        dagster.start_webserver()
        settings = GatewaySettings.from_env({**entra.settings_env(), "MNIST_GATEWAY_UPSTREAM": dagster.url})
        with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
            yield {"entra": entra, "dagster": dagster, "client": client}
    finally:
        dagster.stop()
        entra.close()


def post(client: httpx.Client, body: Any, token: str | None, **headers: str) -> Any:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.post("/graphql", json=body, headers=headers)


@pytest.mark.slow
def test_allowed_identity_launches_once_per_adf_run_and_reads_status(
    site: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    entra: LocalEntra = site["entra"]
    client: httpx.Client = site["client"]
    dagster: Dagster = site["dagster"]
    token = entra.token()
    key = str(uuid.uuid4())  # ADF's pipeline run id
    caplog.set_level(logging.INFO, logger="adf_bridge.gateway.app")

    first = post(client, launch_body(adf_run=key), token)
    assert first.status_code == 200, first.text
    result = first.json()["data"]["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    run_id = result["run"]["runId"]
    assert result["run"]["status"] in ("QUEUED", "NOT_STARTED")  # no daemon here: it stays queued

    # ADF retries the Web activity (same ADF run id): the tag passes the gateway and the instance's run
    # coordinator answers with the same run, no second run; also several at once.
    again = post(client, launch_body(adf_run=key), token)
    assert again.json()["data"]["launchRun"] == result
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: post(client, launch_body(adf_run=key), token), range(4)))
    assert {a.json()["data"]["launchRun"]["run"]["runId"] for a in answers} == {run_id}
    runs = [r for r in dagster.runs() if {"key": "adf/pipeline_run_id", "value": key} in r["tags"]]
    assert [r["runId"] for r in runs] == [run_id] and runs[0]["jobName"] == "train_model"

    # Another ADF run id is another run.
    other = post(client, launch_body(), token).json()["data"]["launchRun"]
    assert other["__typename"] == "LaunchRunSuccess" and other["run"]["runId"] != run_id

    status = post(client, {"query": STATUS, "variables": {"runId": run_id}}, token)
    assert status.status_code == 200
    assert status.json()["data"]["runOrError"] == {
        "__typename": "Run", "runId": run_id, "status": "QUEUED", "startTime": None, "endTime": None,
    }  # fmt: skip

    # A failed launch still answers 200 in GraphQL: the body says why (the ADF template must check it).
    bad = launch_body(job="score_batch")
    bad["variables"]["executionParams"]["runConfigData"] = {"ops": {"nope": {}}}
    answer = post(client, bad, token).json()["data"]["launchRun"]
    assert answer["__typename"] == "RunConfigValidationInvalid" and answer["errors"][0]["message"]

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "adf_bridge.gateway.app"]
    assert any(
        line["decision"] == "allow" and line["job"] == "train_model" and line.get("run_id") == run_id
        and line["oid"] == ADF_OID and line["identity"] == "adf-factory" and line["upstream_status"] == 200
        and line["adf_run_id"] == key
        for line in lines
    ), lines  # fmt: skip
    assert token not in caplog.text and "Bearer" not in caplog.text


def attacks(entra: LocalEntra) -> dict[str, tuple[dict[str, str], int, str]]:
    """name -> (request headers, expected status, words in the error)."""
    now = int(time.time())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = entra.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = _forge("none", entra.claims(), entra.kid)
    confused = _forge("HS256", entra.claims(), entra.kid, public_pem)

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    return {
        "alg_none": (bearer(unsigned), 401, "RS256 only"),
        "hs256_key_confusion": (bearer(confused), 401, "RS256 only"),
        "wrong_key": (bearer(entra.token(key=other_key)), 401, "signature"),
        "unknown_kid": (bearer(entra.token(headers={"kid": "not-a-tenant-key"})), 401, "kid"),
        "expired": (bearer(entra.token(exp=now - 600, nbf=now - 4000, iat=now - 4000)), 401, "expired"),
        "not_yet_valid": (bearer(entra.token(nbf=now + 600, iat=now)), 401, "not yet valid"),
        "wrong_audience": (bearer(entra.token(aud="api://something-else")), 401, "audience"),
        "wrong_issuer": (bearer(entra.token(iss="https://sts.windows.net/other-tenant/")), 401, "issuer"),
        "wrong_tenant_claim": (bearer(entra.token(tid="other-tenant")), 401, "tenant"),
        "no_exp": (bearer(entra.token(exp=None)), 401, "'exp'"),
        "no_audience": (bearer(entra.token(aud=None)), 401, "'aud'"),
        "missing_header": ({}, 401, "missing Authorization"),
        "basic_scheme": ({"Authorization": "Basic YWRmOnNlY3JldA=="}, 401, "Bearer"),
        "empty_bearer": ({"Authorization": "Bearer"}, 401, "Bearer"),
        "malformed_token": (bearer("not.a.jwt"), 401, "malformed"),
        "garbage_token": (bearer("x" * 5000), 401, "malformed"),
        "unknown_identity": (
            bearer(entra.token(oid=OTHER_OID, sub=OTHER_OID, appid="another-app")),
            403,
            "identity",
        ),
    }


def _forge(alg: str, claims: dict[str, Any], kid: str, secret: bytes | None = None) -> str:
    """A token PyJWT would refuse to make: unsigned (`alg: none`), or HS256 keyed with the RSA public key
    (the classic key-confusion attack)."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest() if secret else b""
    return f"{signing_input}.{b64(signature)}"


@pytest.mark.slow
def test_attacks_are_refused_with_no_side_effect(
    site: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    entra: LocalEntra = site["entra"]
    client: httpx.Client = site["client"]
    dagster: Dagster = site["dagster"]
    caplog.set_level(logging.INFO, logger="adf_bridge.gateway.app")
    token = entra.token()
    # A run to try to delete / terminate, launched the legitimate way.
    victim = post(client, launch_body(), token).json()["data"]["launchRun"]["run"]["runId"]
    before = {r["runId"]: r["status"] for r in dagster.runs()}
    cases = attacks(entra)
    for name, (headers, status, words) in cases.items():
        answer = client.post("/graphql", json=launch_body(), headers=headers)
        assert answer.status_code == status, (name, answer.text)
        message = answer.json()["errors"][0]["message"]
        assert words in message, (name, message)
        if status == 401:
            assert answer.headers["www-authenticate"].startswith("Bearer error="), name
        for header in headers.values():
            assert header.removeprefix("Bearer ") not in answer.text or len(header) < 12, name

    # An allowed identity asking for more than it may: other mutations, other jobs, data queries.
    forbidden = {
        "delete_run": {"query": 'mutation { deleteRun(runId: "VICTIM") { __typename } }'.replace("VICTIM", victim)},
        "terminate_run": {"query": 'mutation { terminateRun(runId: "VICTIM") { __typename } }'.replace("VICTIM", victim)},
        "wipe_assets": {"query": 'mutation { wipeAssets(assetPartitionRanges: [{assetKey: {path: ["raw_mnist"]}}]) { __typename } }'},
        "reexecute": {"query": 'mutation { launchPipelineReexecution(reexecutionParams: {parentRunId: "VICTIM", strategy: ALL_STEPS}) { __typename } }'.replace("VICTIM", victim)},
        "other_job": launch_body(job="mnist_pipeline"),
        "runs_query": {"query": "{ runsOrError { ... on Runs { results { runId runConfigYaml } } } }"},
        "introspection": {"query": "{ __schema { mutationType { fields { name } } } }"},
        "run_config_leak": {"query": 'query { runOrError(runId: "VICTIM") { ... on Run { runConfigYaml } } }'.replace("VICTIM", victim)},
        "aliased_double_launch": {
            "query": "mutation($p: ExecutionParams!) { a: launchRun(executionParams: $p) { __typename } "
            "b: launchRun(executionParams: $p) { __typename } }",
            "variables": launch_body()["variables"] | {"p": launch_body()["variables"]["executionParams"]},
        },
        "resource_override": {
            **launch_body(),
            "variables": {
                "executionParams": launch_body()["variables"]["executionParams"]
                | {"runConfigData": {"resources": {"quality": {"config": {"min_accuracy": 0.0}}}}}
            },
        },
        "step_subset": {
            **launch_body(),
            "variables": {"executionParams": launch_body()["variables"]["executionParams"] | {"stepKeys": ["raw_mnist"]}},
        },
    }  # fmt: skip
    for name, body in forbidden.items():
        answer = post(client, body, token)
        assert answer.status_code == 403, (name, answer.text)
        assert answer.json()["errors"][0]["message"], name

    # Shapes of request that are not one JSON GraphQL operation.
    assert (
        client.get(
            "/graphql", params={"query": "{ __typename }"}, headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 405
    )
    text = client.post(
        "/graphql",
        content=LAUNCH,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/graphql"},
    )
    assert text.status_code == 415
    assert post(client, [launch_body(), launch_body()], token).status_code == 400
    assert post(client, {**launch_body(), "extensions": {"persistedQuery": {}}}, token).status_code == 400
    big = launch_body()
    big["variables"]["executionParams"]["runConfigData"] = {"x": "y" * 300_000}
    assert post(client, big, token).status_code == 413
    for path in (
        "/",
        "/graphiql",
        "/server_info",
        "/graphql/",
        "/dagit_info",
        "/download_debug/x",
        "/static/x",
    ):
        assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 404, path
    assert client.get("/healthz").json() == {"status": "ok"}

    after = {r["runId"]: r["status"] for r in dagster.runs()}
    assert after == before, "an attack changed the runs"
    # Every decision was logged, none with a token in it.
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "adf_bridge.gateway.app"]
    assert sum(line["decision"] == "deny" for line in lines) >= len(cases) + len(forbidden) + 4
    assert token not in caplog.text
    for headers, _, _ in cases.values():
        for value in headers.values():
            assert value.removeprefix("Bearer ").removeprefix("Basic ") not in caplog.text or len(value) < 12


@pytest.mark.slow
def test_static_token_mode(site: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    dagster: Dagster = site["dagster"]
    secret = uuid.uuid4().hex + uuid.uuid4().hex
    caplog.set_level(logging.INFO, logger="adf_bridge.gateway.app")
    settings = GatewaySettings.from_env(
        {
            "MNIST_GATEWAY_AUTH": "static",
            "MNIST_GATEWAY_STATIC_TOKEN": secret,
            "MNIST_GATEWAY_STATIC_JOBS": "score_batch",
            "MNIST_GATEWAY_UPSTREAM": dagster.url,
        }
    )
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert post(client, launch_body(), secret[:-1] + "x").status_code == 401
        assert post(client, launch_body(job="train_model"), secret).status_code == 403
        answer = post(client, {"query": STATUS, "variables": {"runId": str(uuid.uuid4())}}, secret)
        assert answer.json()["data"]["runOrError"]["__typename"] == "RunNotFoundError"
    assert secret not in caplog.text


ADD_PARTITION = """mutation AddPartition($s: RepositorySelector!, $d: String!, $k: String!) {
  addDynamicPartition(repositorySelector: $s, partitionsDefName: $d, partitionKey: $k) { __typename } }"""
PARTITION_KEYS = (
    '{ assetNodeOrError(assetKey: {path: ["mnist_predictions"]}) { ... on AssetNode { partitionKeys } } }'
)


def partition_body(key: str) -> dict[str, Any]:
    selector = {"repositoryLocationName": "mnist", "repositoryName": "__repository__"}
    return {"query": ADD_PARTITION, "variables": {"s": selector, "d": "inference_batches", "k": key}}


@pytest.mark.slow
def test_bad_partition_keys_and_deep_json_are_refused_with_a_logged_decision(
    site: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    entra: LocalEntra = site["entra"]
    client: httpx.Client = site["client"]
    dagster: Dagster = site["dagster"]
    token = entra.token()
    caplog.set_level(logging.INFO, logger="adf_bridge.gateway.app")

    # A key is an inference batch id: the sensors' and the asset's rules, in the same words.
    for key, words in (
        ("../../models/mnist", "contains '/'"),
        ("..", "contains '..'"),
        ("batch\u0007bell", "control character"),
        ("b" * 201, "201 characters"),
    ):
        answer = post(client, partition_body(key), token)
        assert answer.status_code == 400, (key, answer.text)
        message = answer.json()["errors"][0]["message"]
        assert message == f"addDynamicPartition: 'partitionKey': {batch_id_problem(key)}", message
        assert words in message and "expected a single folder name under inference/" in message
    assert post(client, partition_body("2026-12-07-batch-1"), token).status_code == 200
    keys = dagster.graphql(PARTITION_KEYS)["data"]["assetNodeOrError"]["partitionKeys"]
    assert keys == ["2026-12-07-batch-1"], "a refused key was added"

    # JSON nested 40,000 deep (80 KB, under the size limit): a 400 saying so, not a RecursionError.
    deep = json.dumps(launch_body()).replace(
        '"runConfigData": {}', '"runConfigData": ' + "[" * 40_000 + "]" * 40_000
    )
    answer = client.post(
        "/graphql",
        content=deep,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text[:300]
    assert "more than 32 levels deep" in answer.json()["errors"][0]["message"]
    # Brackets inside strings nest nothing: a deep-looking tag value is fine.
    flat = launch_body()
    flat["variables"]["executionParams"]["executionMetadata"]["tags"].append(
        {"key": "note", "value": "[" * 3000}
    )
    assert post(client, flat, token).status_code == 200

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "adf_bridge.gateway.app"]
    denied = [(line["status"], line["reason"]) for line in lines if line["decision"] == "deny"]
    assert (400, "JSON nested more than 32 levels deep") in denied
    assert sum("partitionKey" in reason for _, reason in denied) == 4, denied
