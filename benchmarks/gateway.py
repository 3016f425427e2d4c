"""Gateway benchmark: concurrent authenticated launches, and POST -> run STARTED under the real daemon.

    ./run bench-gateway                 # both parts (about 3 minutes on 2 cores)
    ./run bench-gateway --part burst    # or --part latency; --launches N, --instance path/to/dagster.yaml

Everything is real except Entra: a dagster-webserver and a dagster-daemon over a temporary instance with
the shipped settings (instance/local/dagster.yaml unless --instance), and the gateway itself started as
`python -m adf_bridge.gateway` (uvicorn) validating RS256 tokens against a JWKS served on 127.0.0.1.

Burst: 100 launches of `train_model` at once straight to the webserver (the baseline, with ADF run ids
of their own; deleted after); then 100 at once through the gateway, each with its own ADF run id (tag
`adf/pipeline_run_id`, the idempotency key of the instance's run coordinator); then the same 100 again
(ADF retrying). Every first request must be a LaunchRunSuccess, every retry the same run back, and the
instance must hold exactly 100 runs with those keys. The instance must use
instance_plugins.run_coordinator's IdempotentQueuedRunCoordinator (the shipped local one does). No daemon runs during the burst, so the runs
stay queued (the gateway and the webserver are what is measured); they are deleted afterwards.
Latency: train once on synthetic digits, then 20 times: add a tiny inference batch, POST `score_batch`
for it through the gateway, and take the run's STARTED time from Dagster; each run finishes before the
next POST. The event log splits the latency: run creation, queue + launch, run-worker start-up.
Not a test: it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]

import httpx  # noqa: E402

from tests.support.azurite import free_port  # noqa: E402
from tests.support.gateway import LAUNCH, STATUS, Dagster, LocalEntra, clean_env  # noqa: E402
from tests.support.synthetic import make_digits, write_source  # noqa: E402
from workload.mnist_idx import encode_idx  # noqa: E402

SMALL_TRAINING = {"ops": {"mnist_model": {"config": {"pca_components": 20, "kernel_components": 200}}}}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def body(
    job: str, key: str, tags: dict[str, str] | None = None, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    all_tags = [
        {"key": "adf/pipeline_run_id", "value": key},
        *({"key": k, "value": v} for k, v in (tags or {}).items()),
    ]
    return {
        "query": LAUNCH,
        "operationName": "LaunchRun",
        "variables": {
            "executionParams": {
                "selector": {
                    "repositoryLocationName": "mnist",
                    "repositoryName": "__repository__",
                    "jobName": job,
                },
                "runConfigData": config or {},
                "executionMetadata": {"tags": all_tags},
            }
        },
    }


class Gateway:
    """`python -m adf_bridge.gateway` as a subprocess, configured for the local tenant."""

    def __init__(self, entra: LocalEntra, upstream: str, home: Path, extra: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = clean_env(
            **entra.settings_env(),
            MNIST_GATEWAY_UPSTREAM=upstream,
            MNIST_GATEWAY_PORT=str(self.port),
            **extra,
        )
        self.log = home / "gateway.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "adf_bridge.gateway"], cwd=PROJECT_ROOT, env=env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the gateway did not start:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


async def wave(
    url: str, token: str | None, bodies: list[dict[str, Any]], probe_run: str
) -> tuple[list[float], list[dict[str, Any]], float, list[float]]:
    """Send `bodies` at once; meanwhile read `probe_run`'s status every 0.5 s (an ADF Until loop polling)."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}

        async def one(b: dict[str, Any]) -> tuple[float, dict[str, Any]]:
            started = time.perf_counter()
            response = await client.post("/graphql", json=b, headers=headers)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {response.text}")
            return elapsed, response.json()["data"]["launchRun"]

        polls: list[float] = []

        async def poll() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=300) as poller:
                while True:
                    began = time.perf_counter()
                    answer = await poller.post(
                        "/graphql", json={"query": STATUS, "variables": {"runId": probe_run}}, headers=headers
                    )
                    assert answer.json()["data"]["runOrError"]["__typename"] == "Run", answer.text
                    polls.append(time.perf_counter() - began)
                    await asyncio.sleep(0.5)

        poller = asyncio.create_task(poll())
        started = time.perf_counter()
        results = await asyncio.gather(*(one(b) for b in bodies))
        total = time.perf_counter() - started
        poller.cancel()
    return [r[0] for r in results], [r[1] for r in results], total, polls


def burst(dagster: Dagster, gateway: Gateway, entra: LocalEntra, n: int) -> list[str]:
    token = entra.token()
    keys = [str(uuid.uuid4()) for _ in range(n)]
    bodies = [body("train_model", k) for k in keys]
    # Baseline: the same launches straight to the webserver (no gateway; ADF run ids of their own, so the
    # run coordinator does the same work as for the gateway's), then removed.
    direct_bodies = [body("train_model", str(uuid.uuid4())) for _ in keys]
    probe_body = body("train_model", str(uuid.uuid4()))  # the run an ADF Until loop polls during the burst
    probe = dagster.graphql(LAUNCH, probe_body["variables"])["data"]["launchRun"]["run"]["runId"]
    direct_lat, direct, direct_total, direct_polls = asyncio.run(
        wave(dagster.url.removesuffix("/graphql"), None, direct_bodies, probe)
    )
    for r in direct:
        dagster.graphql(
            "mutation($r: String!) { deleteRun(runId: $r) { __typename } }", {"r": r["run"]["runId"]}
        )
    first_lat, first, first_total, first_polls = asyncio.run(wave(gateway.url, token, bodies, probe))
    assert all(r["__typename"] == "LaunchRunSuccess" for r in first), [r for r in first if "run" not in r][:3]
    second_lat, second, second_total, second_polls = asyncio.run(wave(gateway.url, token, bodies, probe))
    same = sum(a["run"]["runId"] == b.get("run", {}).get("runId") for a, b in zip(first, second, strict=True))
    runs = [
        r
        for r in dagster.runs()
        if any(t["key"] == "adf/pipeline_run_id" and t["value"] in set(keys) for t in r["tags"])
    ]
    distinct_keys = {t["value"] for r in runs for t in r["tags"] if t["key"] == "adf/pipeline_run_id"}
    print(
        f"\nBurst (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs): {n} concurrent launches through "
        f"the gateway (Entra RS256 tokens), then the same {n} again"
    )
    print("| wave | accepted | runs created | p50 | p95 | max | wall | status read meanwhile p50 / p95 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")

    def reads(polls: list[float]) -> str:
        if not polls:
            return "-"
        return f"{pct(polls, 0.5) * 1000:.0f} / {pct(polls, 0.95) * 1000:.0f} ms ({len(polls)})"

    print(
        f"| direct to the webserver (baseline) | {len(direct)}/{n} LaunchRunSuccess | {n} | "
        f"{pct(direct_lat, 0.5) * 1000:.0f} ms | {pct(direct_lat, 0.95) * 1000:.0f} ms | {max(direct_lat) * 1000:.0f} ms "
        f"| {direct_total:.1f} s | {reads(direct_polls)} |"
    )
    print(
        f"| first (new keys) | {len(first)}/{n} LaunchRunSuccess | {len(runs)} | {pct(first_lat, 0.5) * 1000:.0f} ms "
        f"| {pct(first_lat, 0.95) * 1000:.0f} ms | {max(first_lat) * 1000:.0f} ms | {first_total:.1f} s "
        f"| {reads(first_polls)} |"
    )
    print(
        f"| retry (same keys) | {same}/{n} same run back | +{len(runs) - len(distinct_keys)} | "
        f"{pct(second_lat, 0.5) * 1000:.0f} ms | {pct(second_lat, 0.95) * 1000:.0f} ms | {max(second_lat) * 1000:.0f} ms "
        f"| {second_total:.1f} s | {reads(second_polls)} |"
    )
    print(
        f"runs in the instance with these keys: {len(runs)} (distinct keys {len(distinct_keys)}; expected {n})"
    )
    return [r["runId"] for r in runs] + [probe]


def event_times(home: Path, run_id: str) -> dict[str, float]:
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    times: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        if entry.dagster_event is not None:
            times.setdefault(entry.dagster_event.event_type_value, entry.timestamp)
    instance.dispose()
    return times


def latency(dagster: Dagster, gateway: Gateway, entra: LocalEntra, data: Path, n: int) -> None:
    token = entra.token()
    client = httpx.Client(base_url=gateway.url, timeout=60, headers={"Authorization": f"Bearer {token}"})

    def status(run_id: str) -> dict[str, Any]:
        answer = client.post("/graphql", json={"query": STATUS, "variables": {"runId": run_id}})
        return answer.json()["data"]["runOrError"]

    def wait_finished(run_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = status(run_id)
            if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                return run
            time.sleep(0.25)
        raise RuntimeError(f"run {run_id} did not finish")

    print("\ntraining once on synthetic digits (through the gateway, run by the daemon)...", flush=True)
    answer = client.post("/graphql", json=body("train_model", str(uuid.uuid4()), config=SMALL_TRAINING))
    trained = wait_finished(answer.json()["data"]["launchRun"]["run"]["runId"])
    assert trained["status"] == "SUCCESS", trained

    images = encode_idx(make_digits(20, 1)[0])
    rows = []
    for i in range(n):
        batch = f"bench-{i:02d}-{uuid.uuid4().hex[:6]}"
        folder = data / "inference" / batch
        folder.mkdir(parents=True)
        (folder / "digits.idx3-ubyte").write_bytes(images)
        (folder / "_SUCCESS").write_bytes(b"")
        dagster.graphql(
            'mutation($p: String!) { addDynamicPartition(repositorySelector: {repositoryLocationName: "mnist", '
            'repositoryName: "__repository__"}, partitionsDefName: "inference_batches", partitionKey: $p) '
            "{ __typename } }",
            {"p": batch},
        )
        posted = time.time()
        answer = client.post(
            "/graphql", json=body("score_batch", str(uuid.uuid4()), {"dagster/partition": batch})
        )
        accepted = time.time() - posted
        launched = answer.json()["data"]["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        final = wait_finished(run_id)
        events = event_times(dagster.home, run_id)
        rows.append(
            {
                "accepted": accepted,
                "started": final["startTime"] - posted,
                "enqueued": events["PIPELINE_ENQUEUED"] - posted,
                "queue": events["PIPELINE_STARTING"] - events["PIPELINE_ENQUEUED"],
                "worker": events["PIPELINE_START"] - events["PIPELINE_STARTING"],
                "status": final["status"],
            }
        )
        print(f"  {batch}: STARTED after {rows[-1]['started']:.2f} s ({final['status']})", flush=True)
    print(
        f"\nPOST -> run STARTED (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs), score_batch on a 20-image batch, {n} launches one after another"
    )
    print("| measure | p50 | p95 |")
    print("| --- | --- | --- |")
    for label, key in (
        ("POST -> LaunchRunSuccess (gateway + webserver)", "accepted"),
        ("POST -> run STARTED", "started"),
        ("  of which: POST -> ENQUEUED (gateway + webserver create the run)", "enqueued"),
        ("  of which: ENQUEUED -> STARTING (daemon dequeues, launcher spawns)", "queue"),
        ("  of which: STARTING -> STARTED (run worker boots, loads the code)", "worker"),
    ):
        values = [r[key] for r in rows]
        print(f"| {label} | {pct(values, 0.5):.2f} s | {pct(values, 0.95):.2f} s |")
    print(
        f"runs succeeded: {sum(r['status'] == 'SUCCESS' for r in rows)}/{n}; mean STARTED {statistics.mean(r['started'] for r in rows):.2f} s"
    )
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["burst", "latency", "all"], default="all")
    parser.add_argument("--launches", type=int, default=100)
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--instance", type=Path, default=PROJECT_ROOT / "instance" / "local" / "dagster.yaml")
    parser.add_argument(
        "--max-launches", type=int, help="MNIST_GATEWAY_MAX_LAUNCHES (default: the gateway's)"
    )
    parser.add_argument(
        "--keep", type=Path, help="copy the temporary directory (logs, instance) here at the end"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        root = Path(tmp)
        write_source(root / "source")
        env = clean_env(
            MNIST_SOURCE=str(root / "source"), MNIST_DATA_DIR=str(root / "storage"),
            MNIST_WORK_DIR=str(root / "compute"), MNIST_MIN_ACCURACY="0.8",
        )  # fmt: skip
        entra = LocalEntra()
        dagster = Dagster(root / "dagster_home", env, instance_yaml=args.instance)
        gateway: Gateway | None = None
        try:
            started = time.perf_counter()
            dagster.start_webserver()
            extra = {"MNIST_GATEWAY_MAX_LAUNCHES": str(args.max_launches)} if args.max_launches else {}
            gateway = Gateway(entra, dagster.url, root, extra)
            print(
                f"webserver + gateway up in {time.perf_counter() - started:.1f} s; instance {args.instance}"
            )
            if args.part in ("burst", "all"):
                for run_id in burst(dagster, gateway, entra, args.launches):
                    dagster.graphql(
                        "mutation($r: String!) { deleteRun(runId: $r) { __typename } }", {"r": run_id}
                    )
            if args.part in ("latency", "all"):
                dagster.start_daemon()
                latency(dagster, gateway, entra, root / "storage", args.latency_runs)
            decisions = [
                json.loads(line.split(" adf_bridge.gateway.app ", 1)[1])
                for line in gateway.log.read_text().splitlines()
                if '"gateway.decision"' in line
            ]
            print(
                f"\ngateway log: {len(decisions)} decision lines, {sum(d['decision'] == 'allow' for d in decisions)} allowed"
            )
        finally:
            try:
                if gateway:
                    gateway.stop()
            finally:
                dagster.stop()
                entra.close()
                if args.keep:
                    import shutil

                    shutil.copytree(
                        root, args.keep, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.sock")
                    )


if __name__ == "__main__":
    main()
