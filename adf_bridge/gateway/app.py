"""The gateway's HTTP side: a Starlette app serving `POST /graphql` and `GET /healthz` and nothing else.

Each request is authenticated (`auth`), authorized (`policy`), then forwarded in its canonical form to
the internal webserver, at most `max_launches` launches at once; one JSON line per decision goes to the
`adf_bridge.gateway.app` logger (identity, operation, job, decision, reason, upstream status, latency),
never the token or the Authorization header.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adf_bridge.gateway.auth import Authenticator, AuthError, EntraAuthenticator, StaticTokenAuthenticator
from adf_bridge.gateway.policy import Decision, authorize
from adf_bridge.gateway.settings import GatewaySettings, GatewaySettingsError
from adf_bridge.jobs_manifest import JobsManifest, JobsManifestError

log = logging.getLogger("adf_bridge.gateway.app")

MAX_BODY_BYTES = 256 * 1024
# How deep arrays and objects may nest in a request body. The deepest legitimate request is a launch's op
# config (body > variables > executionParams > runConfigData > ops > op > config > ...); Python's JSON
# decoder recurses once per level and would raise RecursionError near 1,000, well within MAX_BODY_BYTES.
MAX_JSON_DEPTH = 32
# A JSON string, escapes included: its brackets do not nest anything.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
REQUEST_KEYS = frozenset({"query", "variables", "operationName"})


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
        # Whose partitions an identity may add: those of the jobs it may launch (adf/jobs.json).
        self.partitions: Mapping[str, str] = _partitions_of_jobs(settings)
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
        depth = json_nesting_exceeds(bytes(raw), MAX_JSON_DEPTH)
        if depth:
            reason = f"JSON nested more than {MAX_JSON_DEPTH} levels deep"
            record.emit("deny", 400, reason)
            return _error(
                400,
                f"the body's JSON nests arrays and objects more than {MAX_JSON_DEPTH} levels deep "
                f"(found {depth} levels before stopping): send a flatter request",
            )
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


def json_nesting_exceeds(raw: bytes, limit: int) -> int:
    """0 when the arrays and objects of the JSON text `raw` nest at most `limit` deep, else the depth at
    which counting stopped (`limit` + 1). Strings are skipped, so brackets inside them do not count. Linear
    in the size of `raw` and recursion-free, so it can run before a recursive decoder; malformed JSON is
    left for the decoder to refuse."""
    depth = 0
    for bracket in _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
        if bracket in b"[{":
            depth += 1
            if depth > limit:
                return depth
        else:
            depth -= 1
    return 0


def _partitions_of_jobs(settings: GatewaySettings) -> dict[str, str]:
    """Job name -> its dynamic partitions definition, from the jobs manifest the template generator writes
    from the code location (so the gateway cannot drift from the jobs it lets ADF launch)."""
    try:
        return JobsManifest.read(settings.jobs_manifest_path).dynamic_partitions()
    except JobsManifestError as error:
        raise GatewaySettingsError(f"MNIST_GATEWAY_JOBS_MANIFEST: {error}") from None


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
