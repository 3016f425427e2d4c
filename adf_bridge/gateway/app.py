"""Authenticating gateway in front of dagster-webserver, for Azure Data Factory (ADF) Web activities.

Open-source dagster-webserver has no authentication: whoever reaches it can launch, cancel or delete
runs and wipe assets. This Starlette app is the only thing ADF reaches. It serves `POST /graphql` and
`GET /healthz` and nothing else, and for each request:

1. authenticates the caller: an Entra ID bearer token (as a managed identity sends it: RS256 signed with
   a key from the tenant's JWKS, issuer of the tenant in its v1 or v2 form, one of the configured
   audiences, exp/nbf/iat within a minute's leeway, and an `oid` / `azp`-`appid` listed in the identity
   policy), or in local static-token mode a shared secret compared in constant time -> 401 otherwise;
2. authorizes the GraphQL request with `gateway_policy.authorize` (launch an allowlisted job, add a
   partition of such a job, read a run's status and its failure events; nothing else) -> 400/403
   otherwise, and nothing is sent upstream;
3. forwards the canonical form of the allowed request to the internal webserver, at most
   `max_launches` launches at once. Idempotency is not the gateway's: the caller's tags pass through,
   and the instance's run coordinator (instance_plugins/run_coordinator.py) starts at most one run per
   `adf/pipeline_run_id`, with or without the gateway in front;
4. logs one structured line per decision (identity, operation, job, decision, reason, upstream status,
   latency) and never the token or the Authorization header.

Run it with `python -m adf_bridge.gateway.app` (or `./run gateway`); configuration comes from the
`MNIST_GATEWAY_*` variables, read in `GatewaySettings.from_env`.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import jwt
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adf_bridge.gateway.policy import Decision, Identity, authorize

log = logging.getLogger("adf_bridge.gateway.app")

PREFIX = "MNIST_GATEWAY_"
# The gateway's variables (the code location ignores this prefix).
KNOWN = tuple(
    PREFIX + name
    for name in (
        "UPSTREAM", "HOST", "PORT", "AUTH", "TENANT_ID", "AUDIENCE", "JWKS_URL", "IDENTITIES",
        "STATIC_TOKEN", "STATIC_JOBS", "LOCATION", "UPSTREAM_TIMEOUT", "MAX_LAUNCHES",
    )
)  # fmt: skip
MAX_BODY_BYTES = 256 * 1024
LEEWAY_SECONDS = 60  # clock skew between Entra, ADF and this host
REQUEST_KEYS = frozenset({"query", "variables", "operationName"})


class GatewaySettingsError(ValueError):
    pass


class _Secret:
    """A secret value that never shows in a repr, a log line or an error message."""

    def __init__(self, value: str) -> None:
        self._value = value

    def matches(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self._value.encode())

    def __repr__(self) -> str:
        return "_Secret('***')"


@dataclass(frozen=True)
class IdentityRule:
    """One caller the gateway knows: an Entra object id and/or app (client) id, and the jobs it may launch.
    With both ids given, both must match."""

    name: str
    jobs: frozenset[str]
    object_id: str | None = None
    app_id: str | None = None

    def matches(self, object_id: str | None, app_id: str | None) -> bool:
        if self.object_id is not None and self.object_id.lower() != (object_id or "").lower():
            return False
        return self.app_id is None or self.app_id.lower() == (app_id or "").lower()


@dataclass(frozen=True)
class GatewaySettings:
    """The gateway's configuration (from `MNIST_GATEWAY_*`, see `from_env` and the README)."""

    upstream: str = "http://127.0.0.1:3000/graphql"
    host: str = "127.0.0.1"
    port: int = 8080
    auth: Literal["entra", "static"] = "entra"
    tenant_id: str | None = None
    audiences: tuple[str, ...] = ()
    jwks_url: str | None = None
    identities: tuple[IdentityRule, ...] = ()
    static_token: _Secret | None = field(default=None, repr=False)
    static_jobs: frozenset[str] = frozenset()
    location: str = "mnist"
    # Seconds for one upstream answer (waiting for a launch slot does not count); ADF waits 1 min by
    # default, up to 10.
    upstream_timeout: float = 120.0
    # Launches forwarded at once. The webserver creates runs one after another anyway; queueing the rest
    # here keeps its threads free for status reads during a burst.
    max_launches: int = 2
    # Job name -> name of its DynamicPartitionsDefinition: whose partitions an identity may add (only those
    # of jobs it may launch). None: read from the code location when the app is created.
    job_partitions: Mapping[str, str] | None = None

    @property
    def issuers(self) -> tuple[str, ...]:
        """Entra issues v1 (sts.windows.net) or v2 (login.microsoftonline.com) tokens depending on the API's
        `accessTokenAcceptedVersion`; managed-identity tokens are usually v1. Both name the tenant."""
        tenant = self.tenant_id
        return (f"https://login.microsoftonline.com/{tenant}/v2.0", f"https://sts.windows.net/{tenant}/")

    @property
    def keys_url(self) -> str:
        return self.jwks_url or f"https://login.microsoftonline.com/{self.tenant_id}/discovery/v2.0/keys"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewaySettings:
        env = os.environ if env is None else env
        unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in KNOWN)
        if unknown:
            known = ", ".join(k for k in KNOWN if k.startswith(PREFIX))
            raise GatewaySettingsError(
                f"unknown setting(s) {', '.join(unknown)}; the known ones are: {known}"
            )
        values: dict[str, Any] = {}
        if upstream := env.get("MNIST_GATEWAY_UPSTREAM"):
            if not upstream.startswith(("http://", "https://")):
                raise GatewaySettingsError(
                    f"MNIST_GATEWAY_UPSTREAM: expected the webserver's GraphQL URL, found {upstream!r}"
                )
            values["upstream"] = upstream
        if host := env.get("MNIST_GATEWAY_HOST"):
            values["host"] = host
        if port := env.get("MNIST_GATEWAY_PORT"):
            if not port.isdigit() or not 0 <= int(port) < 65536:
                raise GatewaySettingsError(f"MNIST_GATEWAY_PORT: expected a TCP port, found {port!r}")
            values["port"] = int(port)
        if timeout := env.get("MNIST_GATEWAY_UPSTREAM_TIMEOUT"):
            try:
                values["upstream_timeout"] = float(timeout)
            except ValueError:
                raise GatewaySettingsError(
                    f"MNIST_GATEWAY_UPSTREAM_TIMEOUT: expected seconds, found {timeout!r}"
                ) from None
        if launches := env.get("MNIST_GATEWAY_MAX_LAUNCHES"):
            if not launches.isdigit() or int(launches) < 1:
                raise GatewaySettingsError(
                    f"MNIST_GATEWAY_MAX_LAUNCHES: expected a positive whole number, found {launches!r}"
                )
            values["max_launches"] = int(launches)
        if location := env.get("MNIST_GATEWAY_LOCATION"):
            values["location"] = location
        auth = env.get("MNIST_GATEWAY_AUTH", "entra")
        if auth not in ("entra", "static"):
            raise GatewaySettingsError(f"MNIST_GATEWAY_AUTH: expected 'entra' or 'static', found {auth!r}")
        values["auth"] = auth
        if auth == "static":
            token = env.get("MNIST_GATEWAY_STATIC_TOKEN", "")
            if len(token) < 32:
                raise GatewaySettingsError(
                    "MNIST_GATEWAY_AUTH=static needs MNIST_GATEWAY_STATIC_TOKEN, a secret of at least 32 characters"
                )
            values["static_token"] = _Secret(token)
            values["static_jobs"] = frozenset(
                j.strip() for j in env.get("MNIST_GATEWAY_STATIC_JOBS", "").split(",") if j.strip()
            )
            if not _is_loopback(values.get("host", cls.host)):
                raise GatewaySettingsError(
                    "MNIST_GATEWAY_AUTH=static is for local use: MNIST_GATEWAY_HOST must be a loopback address"
                )
        else:
            tenant = env.get("MNIST_GATEWAY_TENANT_ID", "")
            if not tenant:
                raise GatewaySettingsError(
                    "MNIST_GATEWAY_AUTH=entra needs MNIST_GATEWAY_TENANT_ID (the tenant's GUID)"
                )
            values["tenant_id"] = tenant
            audiences = tuple(
                a.strip() for a in env.get("MNIST_GATEWAY_AUDIENCE", "").split(",") if a.strip()
            )
            if not audiences:
                raise GatewaySettingsError(
                    "MNIST_GATEWAY_AUDIENCE: expected the audience(s) ADF requests tokens for, e.g. "
                    "api://dagster-gateway or the app's client id"
                )
            values["audiences"] = audiences
            if jwks := env.get("MNIST_GATEWAY_JWKS_URL"):
                values["jwks_url"] = jwks
            values["identities"] = parse_identities(env.get("MNIST_GATEWAY_IDENTITIES", ""))
        return cls(**values)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_identities(raw: str) -> tuple[IdentityRule, ...]:
    """`MNIST_GATEWAY_IDENTITIES`: JSON, or the path of a YAML/JSON file, holding a list of
    `{name, object_id and/or app_id, jobs: [...]}` (or `{identities: [...]}`)."""
    where = "MNIST_GATEWAY_IDENTITIES"
    text = raw.strip()
    if not text:
        raise GatewaySettingsError(f"{where}: expected the identities allowed to call (JSON or a file path)")
    if not text.startswith(("[", "{")):
        path = Path(text).expanduser()
        if not path.is_file():
            raise GatewaySettingsError(f"{where}: {text!r} is neither JSON nor an existing file")
        where, text = f"{where} ({path})", path.read_text()
    try:
        data = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as error:
        raise GatewaySettingsError(f"{where}: not valid JSON/YAML: {error}") from None
    if isinstance(data, dict) and set(data) == {"identities"}:
        data = data["identities"]
    if not isinstance(data, list) or not data:
        raise GatewaySettingsError(f"{where}: expected a non-empty list of identities")
    rules = []
    for n, entry in enumerate(data):
        at = f"{where}[{n}]"
        if not isinstance(entry, dict) or not set(entry) <= {"name", "object_id", "app_id", "jobs"}:
            raise GatewaySettingsError(f"{at}: expected an object with name, object_id and/or app_id, jobs")
        object_id, app_id = entry.get("object_id"), entry.get("app_id")
        if not object_id and not app_id:
            raise GatewaySettingsError(f"{at}: give object_id (oid) and/or app_id (appid/azp)")
        jobs = entry.get("jobs")
        if not isinstance(jobs, list) or not all(isinstance(j, str) and j for j in jobs):
            raise GatewaySettingsError(f"{at}: 'jobs' must be a list of job names")
        name = str(entry.get("name") or object_id or app_id)
        object_id = str(object_id) if object_id else None
        app_id = str(app_id) if app_id else None
        rules.append(IdentityRule(name=name, jobs=frozenset(jobs), object_id=object_id, app_id=app_id))
    return tuple(rules)


# ---- authentication --------------------------------------------------------------------------------


class AuthError(Exception):
    """Authentication or identity failure. `status` 401 (who are you?), 403 (known token, unknown caller)
    or 503 (the signing keys cannot be fetched). The message never contains the token."""

    def __init__(self, status: int, reason: str, **who: str | None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.who = who


class KeySet:
    """The tenant's signing keys (JWKS), cached; refetched at most every `min_refresh_seconds` when a
    token names an unknown `kid` (Entra rolls keys), so random kids cannot make us hammer the endpoint.
    Blocking: call it off the event loop."""

    def __init__(self, url: str, *, lifespan: float = 3600.0, min_refresh_seconds: float = 60.0) -> None:
        self._client = jwt.PyJWKClient(
            url, cache_keys=False, cache_jwk_set=True, lifespan=int(lifespan), timeout=5
        )
        self._lock = threading.Lock()
        self._min_refresh = min_refresh_seconds
        self._last_fetch = -math.inf

    def get(self, kid: str) -> jwt.PyJWK | None:
        with self._lock:
            try:
                keys = self._client.get_signing_keys()
                if self._last_fetch == -math.inf:
                    self._last_fetch = time.monotonic()
                found = next((k for k in keys if k.key_id == kid), None)
                if found is None and time.monotonic() - self._last_fetch >= self._min_refresh:
                    self._last_fetch = time.monotonic()
                    keys = self._client.get_signing_keys(refresh=True)
                    found = next((k for k in keys if k.key_id == kid), None)
            except jwt.PyJWKClientConnectionError as error:
                raise AuthError(
                    503, f"cannot fetch the tenant's signing keys: {type(error).__name__}"
                ) from None
            except jwt.PyJWKClientError as error:
                raise AuthError(503, f"the tenant's signing keys are unusable: {error}") from None
            return found


# PyJWT's exception -> what the caller is told (never str(error): keep the wording ours and token-free).
_JWT_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid (nbf/iat in the future)"),
    (jwt.InvalidAudienceError, "token audience is not accepted here"),
    (jwt.InvalidIssuerError, "token issuer is not the configured tenant"),
    (jwt.InvalidSignatureError, "token signature does not verify"),
    (jwt.InvalidAlgorithmError, "token algorithm is not accepted (RS256 only)"),
    (jwt.InvalidIssuedAtError, "token iat is not a valid time"),
)


class EntraAuthenticator:
    """Validates Entra ID access tokens and maps them to an `Identity` through the identity policy."""

    def __init__(self, settings: GatewaySettings, keys: KeySet | None = None) -> None:
        self.settings = settings
        self.keys = keys or KeySet(settings.keys_url)

    async def identify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise AuthError(401, "malformed token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg != "RS256":
            # Covers alg "none" and HS256 key confusion before any key is looked at.
            raise AuthError(401, f"token algorithm {str(alg)[:20]!r} is not accepted (RS256 only)")
        if not isinstance(kid, str) or not kid or len(kid) > 200:
            raise AuthError(401, "token has no key id (kid)")
        key = await asyncio.to_thread(self.keys.get, kid)
        if key is None:
            raise AuthError(401, "token signing key (kid) is not one of the tenant's keys")
        try:
            claims = jwt.decode(
                token, key.key, algorithms=["RS256"], audience=list(self.settings.audiences),
                issuer=list(self.settings.issuers), leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "nbf", "iat", "aud", "iss"]},
            )  # fmt: skip
        except jwt.MissingRequiredClaimError as error:
            raise AuthError(401, f"token lacks the {error.claim!r} claim") from None
        except jwt.InvalidTokenError as error:
            reason = next((r for kind, r in _JWT_ERRORS if isinstance(error, kind)), "invalid token")
            raise AuthError(401, reason) from None
        if claims.get("tid", self.settings.tenant_id) != self.settings.tenant_id:
            raise AuthError(401, "token tenant (tid) is not the configured tenant")
        object_id = _claim(claims, "oid")
        app_id = _claim(claims, "azp") or _claim(claims, "appid")
        for rule in self.settings.identities:
            if rule.matches(object_id, app_id):
                return Identity(name=rule.name, jobs=rule.jobs, object_id=object_id, app_id=app_id)
        raise AuthError(403, "this identity is not allowed to call the gateway", oid=object_id, appid=app_id)


def _claim(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value[:100] if isinstance(value, str) else None


class StaticTokenAuthenticator:
    """Local use only: one shared secret, one identity ("static-token") with `MNIST_GATEWAY_STATIC_JOBS`."""

    def __init__(self, settings: GatewaySettings) -> None:
        assert settings.static_token is not None
        self.secret = settings.static_token
        self.identity = Identity(name="static-token", jobs=settings.static_jobs)

    async def identify(self, token: str) -> Identity:
        if not self.secret.matches(token):
            raise AuthError(401, "token does not match the static token")
        return self.identity


Authenticator = EntraAuthenticator | StaticTokenAuthenticator


# ---- the app ---------------------------------------------------------------------------------------


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message}]}, status_code=status, headers=headers)


@dataclass
class _Record:
    """One decision, logged as one JSON line."""

    started: float = field(default_factory=time.perf_counter)
    values: dict[str, Any] = field(default_factory=dict)

    def emit(self, decision: str, status: int, reason: str) -> None:
        line = {"event": "gateway.decision", "decision": decision, "status": status, "reason": reason[:300]}
        line.update(self.values)
        line["latency_ms"] = round((time.perf_counter() - self.started) * 1000, 1)
        log.info(json.dumps(line, default=str))


class Gateway:
    """The request handling, holding the authenticator, the upstream client and the launch slots."""

    def __init__(
        self,
        settings: GatewaySettings,
        authenticator: Authenticator,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.authenticator = authenticator
        self.transport = transport
        self.client: httpx.AsyncClient | None = None
        self.partitions: Mapping[str, str] = (
            dynamic_partitions_of_jobs() if settings.job_partitions is None else settings.job_partitions
        )
        self.launch_slots = asyncio.Semaphore(settings.max_launches)

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        async with httpx.AsyncClient(
            timeout=self.settings.upstream_timeout, limits=limits, transport=self.transport
        ) as client:
            self.client = client
            yield
        self.client = None

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def graphql(self, request: Request) -> Response:
        record = _Record()
        record.values["client"] = request.client.host if request.client else None
        if request.method != "POST":
            record.emit("deny", 405, f"method {request.method} not allowed")
            return _error(405, "only POST with a JSON body is served here", {"Allow": "POST"})
        # 1. Who is calling?
        header = request.headers.get("authorization")
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if header is None or scheme.lower() != "bearer" or not token:
            reason = (
                "missing Authorization header" if header is None else "Authorization is not 'Bearer <token>'"
            )
            record.emit("deny", 401, reason)
            return _error(401, reason, {"WWW-Authenticate": 'Bearer error="invalid_request"'})
        try:
            identity = await self.authenticator.identify(token)
        except AuthError as error:
            record.values.update({k: v for k, v in error.who.items() if v})
            record.emit("deny", error.status, error.reason)
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if error.status == 401 else None
            return _error(error.status, error.reason, headers)
        record.values.update(identity=identity.name, oid=identity.object_id, appid=identity.app_id)
        # 2. What is asked?
        body = await self._body(request, record)
        if isinstance(body, Response):
            return body
        decision = authorize(
            identity, body.get("query"), body.get("variables"), body.get("operationName"),
            location=self.settings.location, partitions=self.partitions,
        )  # fmt: skip
        record.values.update(operation=decision.operation, job=decision.job)
        if decision.run_id:
            record.values["run_id"] = decision.run_id
        if adf_run := _adf_run_id(decision):
            record.values["adf_run_id"] = adf_run  # which ADF pipeline run asked (the idempotency key)
        if not decision.allowed:
            record.emit("deny", decision.status, decision.reason)
            return _error(decision.status, decision.reason)
        # 3. Forward.
        try:
            if decision.operation == "launchRun":
                async with self.launch_slots:
                    status, payload = await self._post(decision.forward)
            else:
                status, payload = await self._post(decision.forward)
        except httpx.HTTPError as error:
            record.emit("error", 502, f"upstream unreachable: {type(error).__name__}")
            return _error(502, "the Dagster webserver did not answer")
        record.values.update(upstream_status=status, **_outcome(payload, decision))
        record.emit("allow", status, decision.reason)
        return JSONResponse(payload, status_code=status)

    async def _body(self, request: Request, record: _Record) -> dict[str, Any] | Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            record.emit("deny", 415, f"content type {content_type[:50]!r}")
            return _error(415, "send the GraphQL request as application/json")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            record.emit("deny", 413, "body too large")
            return _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        raw = bytearray()
        async for chunk in request.stream():
            raw.extend(chunk)
            if len(raw) > MAX_BODY_BYTES:
                record.emit("deny", 413, "body too large")
                return _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            record.emit("deny", 400, "body is not JSON")
            return _error(400, "the body is not valid JSON")
        if isinstance(body, list):
            record.emit("deny", 400, "batched request")
            return _error(400, "batched requests (a JSON array) are not allowed: send one operation")
        if not isinstance(body, dict):
            record.emit("deny", 400, "body is not an object")
            return _error(
                400, "the body must be a JSON object with 'query' (and 'variables', 'operationName')"
            )
        extra = sorted(set(body) - REQUEST_KEYS)
        if extra:
            reason = f"unexpected request keys: {', '.join(k[:40] for k in extra[:5])}"
            record.emit("deny", 400, reason)
            return _error(400, reason + " (allowed: query, variables, operationName)")
        return body

    async def _post(self, payload: Mapping[str, Any]) -> tuple[int, Any]:
        assert self.client is not None, "the gateway's lifespan has not started"
        response = await self.client.post(self.settings.upstream, json=payload)
        try:
            return response.status_code, response.json()
        except ValueError:
            return 502, {
                "errors": [{"message": f"the Dagster webserver answered {response.status_code} without JSON"}]
            }


def dynamic_partitions_of_jobs() -> dict[str, str]:
    """Job name -> its dynamic partitions definition, read from the code location (as the ADF templates
    are), so the gateway cannot drift from the jobs it lets ADF launch. Loading it touches no network."""
    from adf_bridge.templates import jobs_of_code_location

    return {job.name: job.dynamic_partitions for job in jobs_of_code_location() if job.dynamic_partitions}


def _adf_run_id(decision: Decision) -> str | None:
    """The `adf/pipeline_run_id` tag of an allowed launch, if it has one."""
    if decision.operation != "launchRun" or not decision.allowed:
        return None
    metadata = decision.forward["variables"]["executionParams"].get("executionMetadata") or {}
    values = [t["value"] for t in metadata.get("tags") or [] if t["key"] == "adf/pipeline_run_id"]
    return values[-1] if values else None  # Dagster keeps the last of repeated keys


def _outcome(payload: Any, decision: Decision) -> dict[str, Any]:
    """What came back, for the log: the result's type and run id when the caller asked for them."""
    if not isinstance(payload, dict):
        return {}
    out: dict[str, Any] = {}
    if payload.get("errors"):
        out["graphql_errors"] = len(payload["errors"])
    for value in (payload.get("data") or {}).values():
        if isinstance(value, dict):
            if "__typename" in value:
                out["result"] = value["__typename"]
            run = value.get("run") if decision.operation == "launchRun" else value
            if isinstance(run, dict):
                for key, name in (("runId", "run_id"), ("status", "run_status")):
                    if isinstance(run.get(key), str):
                        out[name] = run[key]
    return out


def create_app(
    settings: GatewaySettings,
    *,
    authenticator: Authenticator | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The ASGI app. Only `/graphql` and `/healthz` exist; every other path is a 404."""
    if authenticator is None:
        authenticator = (
            StaticTokenAuthenticator(settings) if settings.auth == "static" else EntraAuthenticator(settings)
        )
    gateway = Gateway(settings, authenticator, transport)
    routes = [
        Route("/graphql", gateway.graphql, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/healthz", gateway.healthz, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=gateway.lifespan)
    app.router.redirect_slashes = False  # "/graphql/" is not "/graphql": a 404, not a redirect
    return app


def main() -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = GatewaySettings.from_env()
    log.info(
        "gateway on http://%s:%s/graphql -> %s (auth: %s, location: %s)",
        settings.host, settings.port, settings.upstream, settings.auth, settings.location,
    )  # fmt: skip
    # No proxy headers, no server header; uvicorn's access log shows method, path and status only.
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, proxy_headers=False, server_header=False
    )


if __name__ == "__main__":
    main()
