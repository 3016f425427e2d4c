"""Sensor benchmark: tick cost at 100,000 objects, and marker -> run STARTED latency under the daemon.

    ./run bench-sensors               # both parts; builds the large Azurite container once (minutes)
    ./run bench-sensors --part tick   # or --part latency

Tick cost: 10,000 already-scored batches (100,000 objects) and 10 new batches (100 objects) in one
container; one tick of the listing sensor, of the events sensor (100 BlobCreated events in the queue),
and of a naive full listing, side by side: wall time and HTTP requests sent to storage.
Latency: a real daemon with the shipped local instance settings; 20 batches uploaded one by one; time
from the marker's upload to the run's STARTED, p50/p95, for events and listing mode.
Not a test: it reports.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STATE = PROJECT_ROOT / "benchmarks" / "results"
OLD_BATCHES, FILES_PER_BATCH, NEW_BATCHES = 10_000, 10, 10
CONTAINER = "bench100k"


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, request: Any) -> None:
        self.n += 1


def blob_store(conn: str, counter: Counter) -> Any:
    """An AzureBlobObjectStore whose client counts every HTTP request it sends."""
    from azure.storage.blob import BlobServiceClient

    from resources.storage import AzureBlobObjectStore

    store = AzureBlobObjectStore(container=CONTAINER, connection_string=conn)
    service = BlobServiceClient.from_connection_string(conn, raw_request_hook=counter)
    store._client = service.get_container_client(CONTAINER)
    return store


def batch_objects(batch_id: str) -> list[tuple[str, bytes]]:
    """One batch: FILES_PER_BATCH - 1 small data files, then its empty _SUCCESS marker."""
    files = [(f"inference/{batch_id}/part-{p}.idx3-ubyte", b"x" * 16) for p in range(FILES_PER_BATCH - 1)]
    return [*files, (f"inference/{batch_id}/_SUCCESS", b"")]


def build_container(conn: str) -> dict[str, str]:
    """100,000 objects in 10,000 scored batches; returns their versions (as the sensor computes them)."""
    from azure.storage.blob import ContainerClient

    from orchestration.sensors.completeness import BatchRules, assess
    from resources.storage import ObjectInfo

    versions_file = STATE / "bench100k-versions.json"
    container = ContainerClient.from_connection_string(conn, CONTAINER)
    if container.exists() and versions_file.exists():
        return json.loads(versions_file.read_text())
    if not container.exists():
        container.create_container()
    print(f"building {OLD_BATCHES * FILES_PER_BATCH:,} objects once (reused next time)...", flush=True)

    def batch(i: int) -> tuple[str, str]:
        bid = f"old-{i:05d}"
        infos = []
        for name, data in batch_objects(bid):
            r = container.get_blob_client(name).upload_blob(data, overwrite=True)
            infos.append(ObjectInfo(name, len(data), r["etag"], r["last_modified"]))
        return bid, assess(bid, infos, BatchRules(), datetime.now(UTC)).version

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        versions = dict(pool.map(batch, range(OLD_BATCHES)))
    print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
    STATE.mkdir(parents=True, exist_ok=True)
    versions_file.write_text(json.dumps(versions))
    return versions


def tick_part(conn: str) -> dict[str, Any]:
    from azure.storage.blob import ContainerClient
    from azure.storage.queue import QueueClient

    from orchestration.sensors import requested_run_keys
    from orchestration.sensors.completeness import BatchRules, assess
    from orchestration.sensors.factory import INFERENCE, ROTATE_PER_TICK
    from orchestration.sensors.folder_scan import Ledger, WatchCursor, scan_events, scan_listing
    from orchestration.settings import SensorSettings
    from resources.blob_events import BlobEventQueue
    from tests.support.blob_events import blob_created_event

    versions = build_container(conn)
    container = ContainerClient.from_connection_string(conn, CONTAINER)
    queue = QueueClient.from_connection_string(conn, f"bench{uuid.uuid4().hex[:8]}")
    queue.create_queue()
    # New batches of earlier runs would count as new again (the cursor knows only the 10,000 old ones).
    for old_new in ("inference/new-", "inference/20"):  # new batches of earlier runs (old ones: old-*)
        for name in list(container.list_blob_names(name_starts_with=old_new)):
            container.delete_blob(name)
    instance = ledger_instance(versions)
    run = uuid.uuid4().hex[:6]
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    for i in range(NEW_BATCHES):  # 100 new objects, each announced by an event
        for name, data in batch_objects(f"{today}-new-{run}-{i}"):
            r = container.get_blob_client(name).upload_blob(data, overwrite=True)
            event = blob_created_event(container, name, r["etag"], len(data))
            queue.send_message(base64.b64encode(json.dumps(event).encode()).decode())
    rules = BatchRules()
    defaults = SensorSettings()  # the sensor's own per-tick limits
    prefix = INFERENCE.prefix
    results: dict[str, Any] = {}

    def measure(label: str, fn: Any) -> None:
        counter = Counter()
        store = blob_store(conn, counter)
        started = time.perf_counter()
        found = fn(store, counter)
        results[label] = {
            "seconds": round(time.perf_counter() - started, 3),
            "requests": counter.n,
            "new_runs": found,
        }

    def ledger() -> Ledger:  # what was requested before: read from the 10,000 runs' run keys
        return Ledger(lambda: requested_run_keys(instance, prefix))

    def listing(store: Any, counter: Counter) -> int:
        # A tick between full passes: the last one was costly (as it is at this size) and recent.
        cursor = WatchCursor(full_pass_at=time.time(), full_pass_seconds=3.0)
        plan = scan_listing(store, prefix, rules, cursor, max_folders=defaults.max_folders_per_tick,
                            rotate=ROTATE_PER_TICK, ledger=ledger())  # fmt: skip
        assert not plan.full_pass
        results["cursor_bytes"] = len(cursor.dump())
        return len(plan.ready)

    def full_pass(store: Any, counter: Counter) -> int:
        cursor = WatchCursor()
        plan = scan_listing(store, prefix, rules, cursor, max_folders=defaults.max_folders_per_tick,
                            rotate=ROTATE_PER_TICK, ledger=ledger())  # fmt: skip
        assert plan.full_pass
        return len(plan.ready)

    def events(store: Any, counter: Counter) -> int:
        q = BlobEventQueue(queue=queue.queue_name, connection_string=conn)
        q._client = QueueClient.from_connection_string(conn, queue.queue_name, raw_request_hook=counter)
        plan = scan_events(store, q, CONTAINER, prefix, rules, WatchCursor(),
                           max_messages=defaults.max_messages_per_tick, long_poll_seconds=0, ledger=ledger())  # fmt: skip
        return len(plan.ready)

    def naive(store: Any, counter: Counter) -> int:
        by_batch: dict[str, list[Any]] = {}
        for obj in store.list("inference/"):
            by_batch.setdefault(obj.name.split("/")[1], []).append(obj)
        now = datetime.now(UTC)
        return sum(
            1
            for b, objs in by_batch.items()
            if assess(b, objs, rules, now).complete and versions.get(b) is None
        )

    measure("listing", listing)
    measure("listing, full pass", full_pass)
    measure("events", events)
    measure("naive full listing", naive)
    results["objects"] = OLD_BATCHES * FILES_PER_BATCH + NEW_BATCHES * FILES_PER_BATCH
    # What a cursor keeping every folder's version (cursor format 1) weighs at this size, in every tick.
    results["old_cursor_bytes"] = len(json.dumps({"v": 1, "done": versions}, separators=(",", ":")))
    return results


def ledger_instance(versions: dict[str, str]) -> Any:
    """A SQLite Dagster instance holding one run per old batch, as the daemon would have created them."""
    import dagster as dg
    from dagster._core.storage.tags import RUN_KEY_TAG
    from dagster._core.utils import make_new_run_id

    home = STATE / "ledger_home"
    fresh = not home.exists()
    home.mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.local_temp(str(home))
    if fresh or len(instance.get_run_ids(limit=OLD_BATCHES)) < OLD_BATCHES:
        print(f"recording {OLD_BATCHES:,} runs once (reused next time)...", flush=True)
        for batch, version in versions.items():
            instance.add_run(
                dg.DagsterRun(job_name="score_batch", run_id=make_new_run_id(),
                              tags={RUN_KEY_TAG: f"inference/{batch}@{version}", "mnist/batch": batch})
            )  # fmt: skip
    return instance


def latency_part(conn: str, mode: str, samples: int) -> dict[str, Any]:
    from azure.storage.blob import ContainerClient
    from azure.storage.queue import QueueClient

    from tests.support.blob_events import upload_and_notify
    from tests.support.daemon import Daemon, wait_for
    from tests.support.synthetic import make_digits, write_source
    from workload.mnist_idx import encode_idx

    work = Path(tempfile.mkdtemp(prefix=f"sensor-latency-{mode}-"))
    container_name = f"lat{uuid.uuid4().hex[:8]}"
    queue_name = f"lat{uuid.uuid4().hex[:8]}"
    write_source(work / "source")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "MNIST_", "DAGSTER_"))}
    env.update(MNIST_STORAGE="azure_blob", AZURE_STORAGE_CONTAINER=container_name,
               AZURE_STORAGE_CONNECTION_STRING=conn, MNIST_SOURCE=str(work / "source"),
               MNIST_WORK_DIR=str(work / "compute"), MNIST_MIN_ACCURACY="0.8", MNIST_SENSOR_INTERVAL="1")  # fmt: skip
    if mode == "events":
        env.update(MNIST_SENSOR_MODE="events", MNIST_INFERENCE_QUEUE=queue_name)
        QueueClient.from_connection_string(conn, queue_name).create_queue()
    daemon = Daemon(work / "home", env)
    (work / "train.yaml").write_text(
        "ops:\n  mnist_model:\n    config:\n      pca_components: 20\n      kernel_components: 200\n"
    )
    daemon.cli(
        "job",
        "execute",
        "-j",
        "train_model",
        "-c",
        str(work / "train.yaml"),
        target=("-m", "orchestration.definitions"),
    )
    daemon.cli("sensor", "start", "inference_batch_sensor")
    daemon.start()
    container = ContainerClient.from_connection_string(conn, container_name)
    queue = QueueClient.from_connection_string(conn, queue_name)
    instance = daemon.instance()
    payload = encode_idx(make_digits(20, 0)[0])
    time.sleep(8)  # let the daemon load the code location
    lags = []
    try:
        # Producers that name batches after the UTC date are seen on every tick however large the
        # container grows; "listing-undated" shows the other names (seen by the full pass).
        dated = "" if mode == "listing-undated" else datetime.now(UTC).strftime("%Y-%m-%d-")
        for i in range(samples):
            bid = f"{dated}lat-{i:02d}"
            container.get_blob_client(f"inference/{bid}/digits.idx3-ubyte.gz").upload_blob(
                payload, overwrite=True
            )
            t0 = time.time()
            if mode == "events":
                upload_and_notify(container, queue, f"inference/{bid}/_SUCCESS", b"")
            else:
                container.get_blob_client(f"inference/{bid}/_SUCCESS").upload_blob(b"", overwrite=True)

            def started(bid: str = bid) -> bool:
                runs = [r for r in instance.get_run_records() if r.dagster_run.tags.get("mnist/batch") == bid]
                return bool(runs) and runs[0].start_time is not None

            wait_for(started, timeout=120, what=f"run for {bid} to start", log=daemon.log)
            record = next(
                r for r in instance.get_run_records() if r.dagster_run.tags.get("mnist/batch") == bid
            )
            assert record.start_time is not None
            lags.append(record.start_time - t0)
            wait_for(
                lambda: all(r.dagster_run.is_finished for r in instance.get_run_records()),
                timeout=120,
                what="run end",
            )
            time.sleep(1.0 + (i % 5) * 0.9)  # spread marker arrivals over the daemon's tick phase
    finally:
        daemon.stop()
    lags.sort()
    return {
        "samples": len(lags),
        "p50_seconds": round(statistics.median(lags), 2),
        "p95_seconds": round(lags[max(0, round(0.95 * len(lags)) - 1)], 2),
        "max_seconds": round(lags[-1], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["tick", "latency", "all"], default="all")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument(
        "--modes", default="events,listing", help="latency part: events, listing and/or listing-undated"
    )
    args = parser.parse_args()
    from tests.support.azurite import run_azurite

    location = STATE / "azurite"
    location.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    with run_azurite(location, keep=True) as az:
        if args.part in ("tick", "all"):
            report["tick"] = tick_part(az["connection_string"])
            t = report["tick"]
            print(
                f"\nSensor tick with {t['objects']:,} objects in the container, {NEW_BATCHES * FILES_PER_BATCH} of them new:"
            )
            for label in ("listing", "listing, full pass", "events", "naive full listing"):
                r = t[label]
                print(
                    f"  {label:<20} {r['seconds']:7.3f} s  {r['requests']:6d} requests  {r['new_runs']} new batches"
                )
            print(
                f"  cursor: {t['cursor_bytes']:,} bytes (was {t['old_cursor_bytes']:,} with every folder in it)"
            )
            for label in ("listing", "events"):
                print(f"  naive / {label}: {t['naive full listing']['seconds'] / t[label]['seconds']:.0f}x time, "
                      f"{t['naive full listing']['requests'] / max(1, t[label]['requests']):.0f}x requests")  # fmt: skip
        if args.part in ("latency", "all"):
            for mode in args.modes.split(","):
                r = latency_part(az["connection_string"], mode, args.samples)
                report[f"latency_{mode}"] = r
                print(f"\nMarker upload -> run STARTED, {mode} mode, {r['samples']} batches: "
                      f"p50 {r['p50_seconds']} s, p95 {r['p95_seconds']} s, max {r['max_seconds']} s")  # fmt: skip
    out = STATE / "sensors.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**previous, **report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
