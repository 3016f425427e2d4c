"""A stateful contract fake of the Azure Batch data-plane service, for driving the real azure-batch SDK.

What it holds to, so that code passing against it has really exercised the documented contract:
- every request must carry a valid shared-key signature (recomputed here; a bad one gets the service's
  403 AuthenticationFailed) or an Entra ID token for Batch's audience (`https://batch.core.windows.net/`;
  another audience gets a 401), and `api-version`;
- every route is looked up in the official spec (`tests/support/fakes/specs/batch-BatchService-*.json.gz`) and
  every request body is validated against that operation's schema, with unknown properties rejected;
- pools move through allocation states (resizing -> steady) and a deleted pool stays `deleting` for a
  while, blocking re-creation with PoolBeingDeleted; auto pools live and die with their job;
- tasks move active -> preparing -> running -> completed: resource files are really downloaded from Blob
  (Azurite) with the URLs given, the command line is really run locally in a per-task working directory,
  output files are really uploaded per their upload condition; the start task really runs too;
- terminating a job kills its running task's process group;
- a job whose `onAllTasksComplete` is `terminatejob` completes as soon as all its tasks are complete, and
  a job with no task counts as all complete (so it ends at once, taking an auto pool with it); the mode
  cannot go back from `terminatejob` to `noaction` (400), and a completed job takes no update (409).
Time-scaled: pool transitions and billing use a simulated clock (`time_scale` simulated seconds per real
second). Faults can be injected per operation (429 with Retry-After, 500, 503, connection reset before or
after the request is processed, a response slower than the client's timeout). Every request is logged.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import fnmatch
import hashlib
import hmac
import json
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import jsonschema

from tests.support.fakes.http import BATCH, check_bearer, sent_audience, www_authenticate
from tests.support.fakes.specs import load_spec

SPEC = "batch-BatchService-2025-06-01.21.0.json"  # the official spec (tests/support/fakes/specs/)
API_VERSIONS = ("2025-06-01", "2025-06-01.21.0")
SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


def _strict(schema: Any) -> Any:
    """Swagger leaves objects open; the fake closes them so a misspelt property is an error."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@dataclass
class Route:
    method: str
    template: str
    regex: re.Pattern[str]
    operation: str
    body_schema: str | None


def load_routes(spec_name: str = SPEC) -> tuple[list[Route], dict[str, Any]]:
    spec = load_spec(spec_name)
    routes: list[Route] = []
    for template, ops in spec["paths"].items():
        pattern = re.escape(template)
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", pattern)
        regex = re.compile(f"^{pattern}$")
        for method, op in ops.items():
            if method == "parameters":
                continue
            body = [p for p in op.get("parameters", []) if p.get("in") == "body"]
            ref = body[0]["schema"].get("$ref", "").split("/")[-1] if body else None
            routes.append(Route(method.upper(), template, regex, op["operationId"], ref or None))
    definitions = _strict(spec["definitions"])
    return routes, definitions


class BatchHttpError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass
class Fault:
    operation: str
    kind: str  # "429" | "500" | "503" | "reset" | "reset_after" | "slow"
    remaining: int = 1
    skip: int = 0  # let this many matching calls through first
    delay: float = 0.0  # for "slow": seconds to hold the response


@dataclass
class LoggedRequest:
    """One request as the fake received it (what SDK parity compares)."""

    method: str
    path: str
    operation: str
    status: int
    at: float
    host: str = ""
    query: dict[str, list[str]] = field(default_factory=dict)
    body: Any = None
    auth: str = ""  # "SharedKey", "Bearer <token audience>", or "" (none)


@dataclass
class FakePool:
    id: str
    body: dict[str, Any]
    created: float
    auto: bool = False
    state: str = "active"
    allocation: str = "resizing"
    allocation_changed: float = 0.0
    target: int = 0
    current: int = 0
    deleting_since: float | None = None
    start_task_ok: bool | None = None  # None: not run for the current nodes yet
    start_task_running: bool = False
    start_task_exit: int | None = None
    node_seconds: float = 0.0  # simulated node-seconds billed
    billed_until: float = 0.0
    deleted_at: float | None = None


@dataclass
class FakeTask:
    id: str
    job_id: str
    body: dict[str, Any]
    created: float
    state: str = "active"
    exit_code: int | None = None
    result: str | None = None
    failure: dict[str, Any] | None = None
    start_time: float | None = None
    end_time: float | None = None
    process: subprocess.Popen[bytes] | None = None
    directory: Path | None = None
    killed: bool = False


@dataclass
class FakeJob:
    id: str
    body: dict[str, Any]
    created: float
    pool_id: str
    state: str = "active"
    terminate_reason: str | None = None
    end_time: float | None = None
    tasks: dict[str, FakeTask] = field(default_factory=dict)
    deleting_since: float | None = None
    # Job timestamps are reported on the real wall clock (what a client compares them with); `age_jobs`
    # moves them into the past to simulate the passing of a retention period.
    created_wall: datetime = field(default_factory=lambda: datetime.now(UTC))
    end_wall: datetime | None = None


class BatchFake:
    """The fake service. Use as a context manager; `url`, `account_name`, `account_key` for the client."""

    def __init__(
        self,
        workdir: Path,
        *,
        account_name: str = "fakebatch",
        time_scale: float = 60.0,
        resize_seconds: float = 60.0,
        pool_delete_seconds: float = 120.0,
        job_delete_seconds: float = 5.0,
        node_env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.account_name = account_name
        self.account_key = base64.b64encode(hashlib.sha256(b"fake batch key").digest()).decode()
        self.time_scale = time_scale
        self.resize_seconds = resize_seconds
        self.pool_delete_seconds = pool_delete_seconds
        self.job_delete_seconds = job_delete_seconds
        self.routes, self.definitions = load_routes()
        self.pools: dict[str, FakePool] = {}
        self.jobs: dict[str, FakeJob] = {}
        self.faults: list[Fault] = []
        self.lost_node_tasks = 0  # see lose_nodes
        self.log: list[LoggedRequest] = []
        self.tasks_created: list[tuple[str, str]] = []  # (job id, task id) per successful create
        self.start_task_runs = 0
        self.lock = threading.RLock()
        self._epoch_real = time.monotonic()
        self._epoch_wall = datetime.now(UTC)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: ThreadingHTTPServer | None = None
        self.url = ""
        self.node_env = node_env or {}
        self._bin = workdir / "node-bin"
        self._make_node_image()

    # ---- lifecycle ------------------------------------------------------------------------------------
    def __enter__(self) -> BatchFake:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _any(self) -> None:
                fake._handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        for target in (self._server.serve_forever, self._scheduler):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self.lock:
            tasks = [t for j in self.jobs.values() for t in j.tasks.values()]
        for task in tasks:
            self._kill(task)

    # ---- the simulated clock ----------------------------------------------------------------------------
    def now(self) -> float:
        """Simulated seconds since the fake started."""
        return (time.monotonic() - self._epoch_real) * self.time_scale

    def wall(self, simulated: float) -> str:
        moment = self._epoch_wall + timedelta(seconds=simulated)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def age_jobs(self, seconds: float) -> None:
        """Make every existing job look `seconds` older (e.g. past a retention period)."""
        with self.lock:
            for job in self.jobs.values():
                job.created_wall -= timedelta(seconds=seconds)
                if job.end_wall is not None:
                    job.end_wall -= timedelta(seconds=seconds)

    # ---- test controls ------------------------------------------------------------------------------------
    def lose_nodes(self, tasks: int = 1) -> None:
        """The next `tasks` tasks end as a task does whose node was lost mid-run: completed, result
        failure, failureInfo category `servererror` (Batch's word for the service's or the node's fault)."""
        with self.lock:
            self.lost_node_tasks += tasks

    def inject(self, operation: str, kind: str, *, times: int = 1, skip: int = 0, delay: float = 0.0) -> None:
        with self.lock:
            self.faults.append(Fault(operation, kind, times, skip, delay))

    def requests(self, operation: str | None = None) -> list[LoggedRequest]:
        with self.lock:
            return [r for r in self.log if operation is None or r.operation == operation]

    def billed_node_minutes(self, pool_id: str | None = None) -> float:
        with self.lock:
            self._bill(self.now())
            pools = [p for p in self.pools.values() if pool_id is None or p.id == pool_id]
            return sum(p.node_seconds for p in pools) / 60

    def all_pools(self) -> list[FakePool]:
        with self.lock:
            return list(self.pools.values())

    # ---- HTTP --------------------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(h.path)
        method = h.command
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        route, params = self._route(method, parsed.path)
        operation = route.operation if route else "Unknown"
        fault = self._take_fault(operation)
        body: Any = None
        with contextlib.suppress(ValueError):
            body = json.loads(raw) if raw else None

        def record(status: int) -> None:
            """Log the request before the client can hear the answer (tests read the log right after)."""
            auth = h.headers.get("Authorization", "")
            scheme = auth.partition(" ")[0]
            logged = LoggedRequest(
                method,
                parsed.path,
                operation,
                status,
                self.now(),
                host=h.headers.get("Host", ""),
                query=parse_qs(parsed.query),
                body=body,
                auth=f"Bearer {sent_audience(auth)}" if scheme == "Bearer" else scheme,
            )
            with self.lock:
                self.log.append(logged)

        try:
            if fault is not None and fault.kind == "reset":
                record(0)
                self._reset(h)
                return
            if fault is not None and fault.kind in ("429", "500", "503"):
                extra = {"Retry-After": "1"} if fault.kind == "429" else {}
                code = {"429": "TooManyRequests", "500": "InternalError", "503": "ServerBusy"}[fault.kind]
                raise BatchHttpError(int(fault.kind), code, "injected fault", extra)
            self._authenticate(h, method, parsed)
            query = parse_qs(parsed.query)
            if not any(v in API_VERSIONS for v in query.get("api-version", [])):
                raise BatchHttpError(
                    400, "MissingRequiredQueryParameter", "api-version is missing or unknown"
                )
            if route is None:
                raise BatchHttpError(
                    400, "UnsupportedOperation", f"the fake has no route {method} {parsed.path}"
                )
            if route.body_schema:
                self._validate(route.body_schema, body)
            with self.lock:
                status, payload, headers = self._dispatch(route, params, query, body, h)
            if fault is not None and fault.kind == "reset_after":
                record(0)
                self._reset(h)  # processed, but the client never hears about it
                return
            record(status)
            if fault is not None and fault.kind == "slow":
                time.sleep(fault.delay)
            self._send(h, status, payload, headers)
        except BatchHttpError as err:
            error = {
                "odata.metadata": f"{self.url}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
                "code": err.code,
                "message": {"lang": "en-US", "value": err.message},
            }
            record(err.status)
            with contextlib.suppress(OSError):
                self._send(h, err.status, error, err.headers)
        except Exception:
            record(500)  # a bug in the fake: the client sees the connection drop
            raise

    def _reset(self, h: BaseHTTPRequestHandler) -> None:
        with contextlib.suppress(OSError):
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            h.connection.close()
        h.close_connection = True

    def _send(self, h: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str]) -> None:
        if isinstance(payload, bytes):
            data = payload
            ctype = "application/octet-stream"
        elif payload is None:
            data = b""
            ctype = None
        else:
            data = json.dumps(payload).encode()
            ctype = "application/json;odata=minimalmetadata"
        h.send_response(status)
        if ctype:
            h.send_header("Content-Type", ctype)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("request-id", hashlib.md5(str(time.monotonic()).encode()).hexdigest())
        if h.command == "HEAD" and "Content-Length" in headers:
            h.end_headers()
            return
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _route(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            if route.method == method and (m := route.regex.match(path)):
                return route, {k: unquote(v) for k, v in m.groupdict().items()}
        return None, {}

    def _take_fault(self, operation: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.operation == operation and fault.remaining > 0:
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.remaining -= 1
                    return fault
        return None

    def _authenticate(self, h: BaseHTTPRequestHandler, method: str, parsed: Any) -> None:
        """An Entra ID token for Batch's audience, or a shared-key signature recomputed here (the documented
        string-to-sign) and compared."""
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            refused = check_bearer(auth, BATCH)
            if refused is not None:
                raise BatchHttpError(401, "AuthenticationFailed", refused, www_authenticate(refused))
            return
        if not auth.startswith(f"SharedKey {self.account_name}:"):
            raise BatchHttpError(401, "AuthenticationFailed", "Server failed to authenticate the request.")
        headers = {k.lower(): v for k, v in h.headers.items() if v}
        if method not in ("GET", "HEAD"):
            headers.setdefault("content-length", "0")
        string_to_sign = method + "\n" + "\n".join(headers.get(x, "") for x in SIGNED_HEADERS) + "\n"
        for name, value in sorted((k, v) for k, v in headers.items() if "ocp-" in k):
            string_to_sign += f"{name}:{value}\n"
        string_to_sign += f"/{self.account_name}{parsed.path}"
        query = parse_qs(parsed.query)
        for name in sorted(query):
            if query[name][0]:
                string_to_sign += f"\n{name}:{query[name][0]}"
        digest = hmac.new(
            base64.b64decode(self.account_key), string_to_sign.encode(), hashlib.sha256
        ).digest()
        expected = f"SharedKey {self.account_name}:{base64.b64encode(digest).decode()}"
        if not hmac.compare_digest(expected, auth):
            raise BatchHttpError(
                403,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the value of Authorization header is "
                "formed correctly including the signature.",
            )

    def _validate(self, definition: str, body: Any) -> None:
        schema = {"$ref": f"#/definitions/{definition}", "definitions": self.definitions}
        errors = sorted(
            jsonschema.Draft4Validator(schema).iter_errors(body), key=lambda e: list(e.absolute_path)
        )
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(body)"
            raise BatchHttpError(400, "InvalidRequestBody", f"{definition} at {where}: {errors[0].message}")

    # ---- operations ----------------------------------------------------------------------------------------
    def _dispatch(
        self,
        route: Route,
        p: dict[str, str],
        query: dict[str, list[str]],
        body: Any,
        h: BaseHTTPRequestHandler,
    ) -> tuple[int, Any, dict[str, str]]:
        op = route.operation
        now = self.now()
        if op == "Pools_CreatePool":
            self._create_pool(body, now)
            return 201, None, {"DataServiceId": f"{self.url}/pools/{body['id']}"}
        if op in ("Pools_GetPool", "Pools_PoolExists"):
            pool = self._pool(p["poolId"])
            return 200, (self._pool_json(pool) if op == "Pools_GetPool" else None), {}
        if op == "Pools_ListPools":
            return 200, {"value": [self._pool_json(x) for x in self.pools.values()]}, {}
        if op == "Pools_DeletePool":
            pool = self._pool(p["poolId"])
            self._delete_pool(pool, now)
            return 202, None, {}
        if op == "Pools_ResizePool":
            pool = self._pool(p["poolId"])
            if pool.allocation != "steady":
                raise BatchHttpError(409, "PoolNotSteady", "The specified pool is not in steady state.")
            if pool.body.get("enableAutoScale"):
                raise BatchHttpError(409, "AutoScalingEnabled", "The pool has autoscale enabled.")
            self._set_target(pool, int(body.get("targetDedicatedNodes", 0)), now)
            return 202, None, {}
        if op == "Pools_StopPoolResize":
            pool = self._pool(p["poolId"])
            pool.allocation, pool.target = "steady", pool.current
            return 202, None, {}
        if op == "Nodes_ListNodes":
            pool = self._pool(p["poolId"])
            return 200, {"value": [self._node_json(pool, i) for i in range(pool.current)]}, {}
        if op == "Jobs_CreateJob":
            self._create_job(body, now)
            return 201, None, {"DataServiceId": f"{self.url}/jobs/{body['id']}"}
        if op == "Jobs_GetJob":
            return 200, self._job_json(self._job(p["jobId"])), {}
        if op == "Jobs_ListJobs":
            jobs = [j for j in self.jobs.values() if self._matches(j, query.get("$filter", [""])[0])]
            return 200, {"value": [self._job_json(j) for j in jobs]}, {}
        if op == "Jobs_UpdateJob":
            job = self._job(p["jobId"])
            self._update_job(job, body, now)
            return 200, None, {"DataServiceId": f"{self.url}/jobs/{job.id}", "ETag": f'"{now}"'}
        if op == "Jobs_TerminateJob":
            job = self._job(p["jobId"])
            if job.state in ("completed", "terminating"):
                raise BatchHttpError(
                    409, "JobCompleted", "The specified job is already in a completed state."
                )
            self._terminate_job(job, (body or {}).get("terminateReason") or "UserTerminate", now)
            return 202, None, {}
        if op == "Jobs_DeleteJob":
            job = self._job(p["jobId"])
            for task in job.tasks.values():
                self._kill(task)
            job.state, job.deleting_since = "deleting", now
            return 202, None, {}
        if op == "Tasks_CreateTask":
            job = self._job(p["jobId"])
            if job.state != "active":
                raise BatchHttpError(
                    409, "JobCompleted", "The specified job is already in a completed state."
                )
            if body["id"] in job.tasks:
                raise BatchHttpError(409, "TaskExists", "The specified task already exists.")
            job.tasks[body["id"]] = FakeTask(body["id"], job.id, body, now)
            self.tasks_created.append((job.id, body["id"]))
            return 201, None, {"DataServiceId": f"{self.url}/jobs/{job.id}/tasks/{body['id']}"}
        if op == "Tasks_GetTask":
            return 200, self._task_json(self._task(p["jobId"], p["taskId"])), {}
        if op == "Tasks_ListTaskFiles":
            task = self._task(p["jobId"], p["taskId"])
            return 200, {"value": self._task_files(task)}, {}
        if op in ("Tasks_GetTaskFile", "Tasks_GetTaskFileProperties"):
            task = self._task(p["jobId"], p["taskId"])
            return self._task_file(task, p["filePath"], h, op == "Tasks_GetTaskFileProperties")
        raise BatchHttpError(400, "UnsupportedOperation", f"the fake does not implement {op}")

    def _pool(self, pool_id: str) -> FakePool:
        pool = self.pools.get(pool_id)
        if pool is None or pool.deleted_at is not None:
            raise BatchHttpError(404, "PoolNotFound", "The specified pool does not exist.")
        return pool

    def _job(self, job_id: str) -> FakeJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise BatchHttpError(404, "JobNotFound", "The specified job does not exist.")
        return job

    def _task(self, job_id: str, task_id: str) -> FakeTask:
        task = self._job(job_id).tasks.get(task_id)
        if task is None:
            raise BatchHttpError(404, "TaskNotFound", "The specified task does not exist.")
        return task

    def _create_pool(self, body: dict[str, Any], now: float, auto: bool = False) -> FakePool:
        existing = self.pools.get(body["id"])
        if existing is not None and existing.deleted_at is None:
            if existing.state == "deleting":
                raise BatchHttpError(
                    409, "PoolBeingDeleted", "The specified pool has been marked for deletion."
                )
            raise BatchHttpError(409, "PoolExists", "The specified pool already exists.")
        if body.get("enableAutoScale") and "targetDedicatedNodes" in body:
            raise BatchHttpError(400, "InvalidPropertyValue", "targetDedicatedNodes with enableAutoScale")
        pool = FakePool(body["id"], body, now, auto=auto, allocation_changed=now, billed_until=now)
        self.pools[pool.id] = pool
        # The fake's autoscale formula: as many nodes as waiting tasks (what the documented example does).
        self._set_target(
            pool, 0 if body.get("enableAutoScale") else int(body.get("targetDedicatedNodes", 0)), now
        )
        return pool

    def _set_target(self, pool: FakePool, target: int, now: float) -> None:
        self._bill(now)
        pool.target = target
        pool.allocation, pool.allocation_changed = "resizing", now
        if target < pool.current:
            pool.current = target  # node removal is quick; billing stops now
            pool.allocation = "steady"

    def _delete_pool(self, pool: FakePool, now: float) -> None:
        if pool.state == "deleting":
            return
        self._bill(now)
        pool.state, pool.deleting_since = "deleting", now
        for job in self.jobs.values():
            if job.pool_id == pool.id:
                for task in job.tasks.values():
                    self._kill(task)

    def _create_job(self, body: dict[str, Any], now: float) -> None:
        if body["id"] in self.jobs:
            raise BatchHttpError(409, "JobExists", "The specified job already exists.")
        info = body["poolInfo"]
        if "poolId" in info:
            pool_id = info["poolId"]
        else:
            spec = info["autoPoolSpecification"]
            pool_id = (
                f"{spec.get('autoPoolIdPrefix', '')}_{hashlib.md5(body['id'].encode()).hexdigest()[:12]}"
            )
            self._create_pool({"id": pool_id, **spec["pool"]}, now, auto=True)
        job = FakeJob(body["id"], body, now, pool_id)
        self.jobs[job.id] = job
        self._complete_if_all_tasks_done(job, now)

    def _update_job(self, job: FakeJob, body: dict[str, Any], now: float) -> None:
        """Jobs_UpdateJob (PATCH): the properties given replace theirs, the others are left as they are."""
        if job.state in ("completed", "terminating"):
            raise BatchHttpError(409, "JobCompleted", "The specified job is already in a completed state.")
        if job.state != "active":
            raise BatchHttpError(409, "JobNotActive", f"The specified job is {job.state}.")
        if "poolInfo" in body:
            # Only a disabled job may change pools, and the fake never disables jobs.
            raise BatchHttpError(409, "JobNotDisabled", "poolInfo may only be updated on a disabled job.")
        unmodelled = set(body) - {"onAllTasksComplete", "metadata", "priority", "constraints"}
        if unmodelled:
            raise BatchHttpError(
                400, "UnsupportedOperation", f"the fake does not update {sorted(unmodelled)}"
            )
        mode = body.get("onAllTasksComplete")
        if mode == "noaction" and job.body.get("onAllTasksComplete") == "terminatejob":
            raise BatchHttpError(
                400,
                "InvalidPropertyValue",
                "The value provided for one of the properties in the request body is invalid: "
                "onAllTasksComplete cannot be changed from terminatejob to noaction.",
            )
        job.body = {**job.body, **copy.deepcopy(body)}
        self._complete_if_all_tasks_done(job, now)

    def _complete_if_all_tasks_done(self, job: FakeJob, now: float) -> None:
        """`terminatejob`: the job completes once all its tasks are complete; with no task, at once (the
        service counts a job with no tasks as all complete, see the SDK's `all_tasks_complete_mode`)."""
        if (
            job.state == "active"
            and job.body.get("onAllTasksComplete") == "terminatejob"
            and "jobManagerTask" not in job.body
            and all(t.state == "completed" for t in job.tasks.values())
        ):
            job.state, job.end_time, job.terminate_reason = "completed", now, "AllTasksComplete"
            job.end_wall = datetime.now(UTC)
            self._job_completed(job, now)

    def _terminate_job(self, job: FakeJob, reason: str, now: float) -> None:
        job.state, job.terminate_reason = "terminating", reason
        for task in job.tasks.values():
            if task.state in ("running", "preparing"):
                self._kill(task)
        job.state, job.end_time, job.end_wall = "completed", now, datetime.now(UTC)
        self._job_completed(job, now)

    def _job_completed(self, job: FakeJob, now: float) -> None:
        pool = self.pools.get(job.pool_id)
        if pool is not None and pool.auto and pool.state != "deleting":
            self._delete_pool(pool, now)

    def _kill(self, task: FakeTask) -> None:
        proc = task.process
        if proc is not None and proc.poll() is None:
            task.killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)

    def _matches(self, job: FakeJob, expression: str) -> bool:
        """The subset of OData $filter the client uses: `state eq '...'`, `creationTime lt datetime'...'`."""
        for clause in filter(None, (c.strip() for c in expression.split(" and "))):
            if m := re.fullmatch(r"state eq '(\w+)'", clause):
                if job.state != m.group(1):
                    return False
            elif m := re.fullmatch(r"creationTime lt datetime'([^']+)'", clause):
                cutoff = datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
                if job.created_wall >= cutoff:
                    return False
            else:
                raise BatchHttpError(
                    400, "InvalidQueryParameterValue", f"unsupported $filter clause {clause!r}"
                )
        return True

    # ---- JSON views ---------------------------------------------------------------------------------------
    def _pool_json(self, pool: FakePool) -> dict[str, Any]:
        body = {k: v for k, v in pool.body.items() if k not in ("id",)}
        return {
            **copy.deepcopy(body),
            "id": pool.id,
            "url": f"{self.url}/pools/{pool.id}",
            "eTag": f'"{pool.created}"',
            "creationTime": self.wall(pool.created),
            "state": pool.state,
            "allocationState": pool.allocation,
            "allocationStateTransitionTime": self.wall(pool.allocation_changed),
            "currentDedicatedNodes": pool.current,
            "currentLowPriorityNodes": 0,
            "targetDedicatedNodes": pool.target,
            "targetLowPriorityNodes": 0,
            "enableAutoScale": bool(pool.body.get("enableAutoScale")),
        }

    def _node_json(self, pool: FakePool, index: int) -> dict[str, Any]:
        node: dict[str, Any] = {"id": f"tvmps_{pool.id}_{index}", "vmSize": pool.body.get("vmSize")}
        if pool.start_task_ok is None:
            node["state"] = "waitingforstarttask" if "startTask" in pool.body else "starting"
            return node
        busy = any(
            t.state in ("preparing", "running")
            for j in self.jobs.values()
            if j.pool_id == pool.id
            for t in j.tasks.values()
        )
        node["state"] = ("running" if busy else "idle") if pool.start_task_ok else "starttaskfailed"
        info: dict[str, Any] = {
            "state": "completed",
            "startTime": self.wall(pool.allocation_changed),
            "retryCount": 0,
            "exitCode": pool.start_task_exit,
            "result": "success" if pool.start_task_ok else "failure",
        }
        if not pool.start_task_ok:
            info["failureInfo"] = {
                "category": "usererror",
                "code": "FailureExitCode",
                "message": "The task exited with an exit code representing a failure",
            }
        node["startTaskInfo"] = info
        return node

    def _job_json(self, job: FakeJob) -> dict[str, Any]:
        info: dict[str, Any] = {"startTime": _iso(job.created_wall), "poolId": job.pool_id}
        if job.end_wall is not None:
            info["endTime"] = _iso(job.end_wall)
        if job.terminate_reason:
            info["terminateReason"] = job.terminate_reason
        return {
            **copy.deepcopy(job.body),
            "url": f"{self.url}/jobs/{job.id}",
            "creationTime": _iso(job.created_wall),
            "state": job.state,
            "poolInfo": {"poolId": job.pool_id} if "poolId" in job.body["poolInfo"] else job.body["poolInfo"],
            "executionInfo": info,
        }

    def _task_json(self, task: FakeTask) -> dict[str, Any]:
        info: dict[str, Any] = {"retryCount": 0, "requeueCount": 0}
        if task.start_time is not None:
            info["startTime"] = self.wall(task.start_time)
        if task.state == "completed":
            info["endTime"] = self.wall(task.end_time or task.created)
            if task.exit_code is not None:
                info["exitCode"] = task.exit_code
            info["result"] = task.result
            if task.failure:
                info["failureInfo"] = task.failure
        return {
            **copy.deepcopy(task.body),
            "url": f"{self.url}/jobs/{task.job_id}/tasks/{task.id}",
            "creationTime": self.wall(task.created),
            "state": task.state,
            "executionInfo": info,
        }

    def _task_files(self, task: FakeTask) -> list[dict[str, Any]]:
        if task.directory is None:
            raise BatchHttpError(
                409, "TaskFilesUnavailable", "The task has not been scheduled on a node yet."
            )
        out = []
        for name in ("stdout.txt", "stderr.txt"):
            path = task.directory / name
            if path.exists():
                out.append(
                    {
                        "name": name,
                        "url": f"{self.url}/jobs/{task.job_id}/tasks/{task.id}/files/{name}",
                        "isDirectory": False,
                        "properties": {
                            "contentLength": path.stat().st_size,
                            "lastModified": self.wall(self.now()),
                            "creationTime": self.wall(task.created),
                            "contentType": "text/plain",
                        },
                    }
                )
        return out

    def _task_file(
        self, task: FakeTask, file_path: str, h: BaseHTTPRequestHandler, head: bool
    ) -> tuple[int, Any, dict[str, str]]:
        if task.directory is None or file_path not in ("stdout.txt", "stderr.txt"):
            raise BatchHttpError(404, "FileNotFound", "The specified file does not exist.")
        path = task.directory / file_path
        if not path.exists():
            raise BatchHttpError(404, "FileNotFound", "The specified file does not exist.")
        data = path.read_bytes()
        headers = {
            "ocp-batch-file-isdirectory": "false",
            "ocp-creation-time": "Mon, 01 Jan 2024 00:00:00 GMT",
        }
        if head:
            return 200, None, {**headers, "Content-Length": str(len(data))}
        wanted = h.headers.get("ocp-range")
        if wanted:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted)
            if not m:
                raise BatchHttpError(400, "InvalidHeaderValue", f"ocp-range {wanted!r}")
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else len(data) - 1
            data = data[start : end + 1]
        return 200, data, headers

    # ---- the scheduler and the nodes ---------------------------------------------------------------------
    def _bill(self, now: float) -> None:
        for pool in self.pools.values():
            if pool.deleted_at is None:
                pool.node_seconds += pool.current * max(0.0, now - pool.billed_until)
            pool.billed_until = now

    def _scheduler(self) -> None:
        while not self._stop.wait(0.01):
            with self.lock:
                now = self.now()
                self._bill(now)
                for pool in self.pools.values():
                    self._advance_pool(pool, now)
                for job in list(self.jobs.values()):
                    self._advance_job(job, now)

    def _advance_pool(self, pool: FakePool, now: float) -> None:
        if pool.deleted_at is not None:
            return
        if pool.state == "deleting":
            if now - (pool.deleting_since or now) >= self.pool_delete_seconds:
                pool.current, pool.target = 0, 0
                pool.deleted_at = now
            return
        if pool.body.get("enableAutoScale"):
            waiting = sum(
                1
                for j in self.jobs.values()
                if j.pool_id == pool.id
                for t in j.tasks.values()
                if t.state != "completed"
            )
            if waiting != pool.target and pool.allocation == "steady":
                self._set_target(pool, waiting, now)
        if pool.allocation == "resizing" and now - pool.allocation_changed >= self.resize_seconds:
            grew = pool.target > pool.current
            pool.current = pool.target
            pool.allocation, pool.allocation_changed = "steady", now
            if grew:
                pool.start_task_ok = None
        if pool.current > 0 and pool.start_task_ok is None and not pool.start_task_running:
            if "startTask" in pool.body:
                pool.start_task_running = True
                threading.Thread(target=self._run_start_task, args=(pool,), daemon=True).start()
            else:
                pool.start_task_ok = True

    def _advance_job(self, job: FakeJob, now: float) -> None:
        if job.state == "deleting":
            if now - (job.deleting_since or now) >= self.job_delete_seconds:
                del self.jobs[job.id]
                self._job_completed(job, now)
            return
        if job.state != "active":
            return
        pool = self.pools.get(job.pool_id)
        if pool is None or pool.deleted_at is not None or pool.state == "deleting":
            return
        busy = sum(
            1
            for j in self.jobs.values()
            if j.pool_id == pool.id
            for t in j.tasks.values()
            if t.state in ("preparing", "running")
        )
        for task in job.tasks.values():
            if task.state == "active" and pool.start_task_ok and busy < pool.current:
                task.state, task.start_time = "preparing", now
                busy += 1
                threading.Thread(target=self._run_task, args=(job, task), daemon=True).start()
        self._complete_if_all_tasks_done(job, now)

    def _make_node_image(self) -> None:
        """What is installed on the simulated nodes: python3 (this interpreter) and pip, apt-get as a no-op."""
        self._bin.mkdir(parents=True, exist_ok=True)
        scripts = {
            "python3": f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n',
            "pip3": f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m pip "$@"\n',
            "apt-get": '#!/bin/sh\necho "apt-get (simulated node image): $*"\n',
        }
        for name, text in scripts.items():
            path = self._bin / name
            path.write_text(text)
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def _node_env(self, working_dir: Path, extra: list[dict[str, str]], pool_id: str) -> dict[str, str]:
        shared = self.workdir / "nodes" / pool_id / "shared"
        shared.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": f"{self._bin}{os.pathsep}/usr/bin:/bin",
            "HOME": str(self.workdir / "nodes" / pool_id / "home"),
            "AZ_BATCH_TASK_WORKING_DIR": str(working_dir),
            "AZ_BATCH_NODE_SHARED_DIR": str(shared),
            "AZ_BATCH_NODE_STARTUP_DIR": str(self.workdir / "nodes" / pool_id / "startup"),
            "AZ_BATCH_POOL_ID": pool_id,
            # The simulated node image has the workload's requirements already: pip resolves them
            # against this interpreter without downloading or installing anything.
            "PIP_DRY_RUN": "1",
            "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            **self.node_env,
        }
        env.update({e["name"]: e.get("value", "") for e in extra})
        return env

    def _run_start_task(self, pool: FakePool) -> None:
        spec = pool.body["startTask"]
        startup = self.workdir / "nodes" / pool.id / "startup"
        wd = startup / "wd"
        wd.mkdir(parents=True, exist_ok=True)
        ok = False
        code: int | None = None
        try:
            self._download(spec.get("resourceFiles", []), wd)
            with (startup / "stdout.txt").open("wb") as out, (startup / "stderr.txt").open("wb") as err:
                code = subprocess.call(
                    shlex.split(spec["commandLine"]),
                    cwd=wd,
                    env=self._node_env(wd, spec.get("environmentSettings", []), pool.id),
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                )
            ok = code == 0
        finally:
            with self.lock:
                pool.start_task_exit = code
                self.start_task_runs += 1
                pool.start_task_ok = ok
                pool.start_task_running = False

    def _run_task(self, job: FakeJob, task: FakeTask) -> None:
        directory = self.workdir / "nodes" / job.pool_id / "tasks" / job.id / task.id
        wd = directory / "wd"
        wd.mkdir(parents=True, exist_ok=True)
        (directory / "stdout.txt").write_bytes(b"")
        (directory / "stderr.txt").write_bytes(b"")
        with self.lock:
            task.directory = directory
        try:
            self._download(task.body.get("resourceFiles", []), wd)
        except Exception as exc:
            self._finish(
                task,
                None,
                {"category": "usererror", "code": "ResourceFileDownloadError", "message": str(exc)[:500]},
            )
            return
        with self.lock:
            if job.state != "active":
                return
            with (directory / "stdout.txt").open("ab") as out, (directory / "stderr.txt").open("ab") as err:
                task.process = subprocess.Popen(
                    shlex.split(task.body["commandLine"]),
                    cwd=wd,
                    env=self._node_env(wd, task.body.get("environmentSettings", []), job.pool_id),
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            task.state = "running"
        code = task.process.wait()
        failure = None
        with self.lock:
            lost, self.lost_node_tasks = self.lost_node_tasks > 0, max(0, self.lost_node_tasks - 1)
        if lost and not task.killed:
            failure = {
                "category": "servererror",
                "code": "NodeLost",
                "message": "The compute node running the task was lost",
            }
            self._finish(task, None, failure)
            return
        if task.killed:
            failure = {"category": "usererror", "code": "TaskEnded", "message": "Task was terminated"}
        elif code != 0:
            failure = {
                "category": "usererror",
                "code": "FailureExitCode",
                "message": "The task exited with an exit code representing a failure",
            }
        success = failure is None
        try:
            self._upload(task.body.get("outputFiles", []), wd, success)
        except Exception as exc:
            failure = {"category": "usererror", "code": "FileUploadError", "message": str(exc)[:500]}
        self._finish(task, code, failure)

    def _finish(self, task: FakeTask, code: int | None, failure: dict[str, Any] | None) -> None:
        with self.lock:
            task.exit_code = code
            task.failure = failure
            task.result = "failure" if failure else "success"
            task.state, task.end_time = "completed", self.now()

    def _download(self, resource_files: list[dict[str, Any]], wd: Path) -> None:
        from azure.storage.blob import BlobClient, ContainerClient

        for rf in resource_files:
            if "httpUrl" in rf:
                target = wd / rf["filePath"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(BlobClient.from_blob_url(rf["httpUrl"]).download_blob().readall())
                continue
            container = ContainerClient.from_container_url(rf["storageContainerUrl"])
            base = wd / rf.get("filePath", "")
            for blob in container.list_blobs(name_starts_with=rf.get("blobPrefix") or None):
                target = base / blob.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(container.download_blob(blob.name).readall())

    def _upload(self, output_files: list[dict[str, Any]], wd: Path, success: bool) -> None:
        from azure.storage.blob import ContainerClient

        for of in output_files:
            condition = of["uploadOptions"]["uploadCondition"]
            if (condition == "tasksuccess" and not success) or (condition == "taskfailure" and success):
                continue
            dest = of["destination"]["container"]
            container = ContainerClient.from_container_url(dest["containerUrl"])
            pattern = of["filePattern"]
            if not any(c in pattern for c in "*?["):
                source = (wd / pattern).resolve()
                if source.is_file():
                    with source.open("rb") as fh:
                        container.upload_blob(dest.get("path") or source.name, fh, overwrite=True)
                continue
            # Wildcards: the directory part before the first wildcard is the base; the rest of each
            # matched file's path is kept under `path`.
            static = pattern[: min(i for i, c in enumerate(pattern) if c in "*?[")]
            base_dir = (wd / static.rsplit("/", 1)[0]) if "/" in static else wd
            for path in sorted(base_dir.rglob("*")):
                if not path.is_file():
                    continue
                rel_to_wd = path.relative_to(wd).as_posix()
                if not fnmatch.fnmatch(rel_to_wd, pattern.replace("**/", "*")) or path.name.startswith("."):
                    continue
                name = path.relative_to(base_dir).as_posix()
                blob_name = f"{dest['path'].rstrip('/')}/{name}" if dest.get("path") else name
                with path.open("rb") as fh:
                    container.upload_blob(blob_name, fh, overwrite=True)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextlib.contextmanager
def running_fake(workdir: Path, **kwargs: Any) -> Iterator[BatchFake]:
    with BatchFake(workdir, **kwargs) as fake:
        yield fake
