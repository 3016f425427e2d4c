"""Sensors through `build_sensor_context`: listing mode on a local directory and on Azurite, events mode on
Azurite's queue service with Event Grid-schema messages."""

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
from dagster._core.storage.tags import RUN_KEY_TAG
from dagster._core.utils import make_new_run_id

from assets.predictions import INFERENCE_BATCHES
from orchestration.sensors import build_sensors
from orchestration.sensors.completeness import BatchRules, assess
from orchestration.sensors.folder_scan import RECENT_LIMIT, WatchCursor
from orchestration.settings import SensorSettings
from resources.blob_events import BlobEventQueue, parse_events
from resources.storage import AzureBlobObjectStore, LocalObjectStore, ObjectInfo, ObjectStore
from tests.support.blob_events import upload_and_notify

DATA = b"\x00\x00\x08\x03" + b"x" * 60


def sensors(
    long_poll_seconds: float = 0.0, container: str | None = None, **settings: Any
) -> dict[str, dg.SensorDefinition]:
    built = build_sensors(
        SensorSettings(**settings), container=container, long_poll_seconds=long_poll_seconds
    )
    return {s.name: s for s in built}


class Ticker:
    """Evaluates a sensor tick after tick, carrying the cursor as the daemon would."""

    def __init__(self, sensor: dg.SensorDefinition, resources: dict[str, Any]) -> None:
        self.sensor = sensor
        self.resources = resources
        self.cursor: str | None = None
        self.instance = dg.DagsterInstance.ephemeral()

    def tick(self, commit: bool = True) -> dg.SensorResult:
        context = dg.build_sensor_context(
            cursor=self.cursor, instance=self.instance, resources=self.resources
        )
        result = self.sensor(context)
        assert isinstance(result, dg.SensorResult)
        if commit:
            self.cursor = result.cursor
            for request in result.dynamic_partitions_requests or []:
                assert isinstance(request, dg.AddDynamicPartitionsRequest)
                self.instance.add_dynamic_partitions(
                    request.partitions_def_name, list(request.partition_keys)
                )
            for run_request in result.run_requests or []:  # the runs the daemon would create
                self.instance.add_run(
                    dg.DagsterRun(
                        job_name="score_batch",
                        run_id=make_new_run_id(),
                        tags={**run_request.tags, RUN_KEY_TAG: run_request.run_key or ""},
                    )
                )
        return result


def keys(result: dg.SensorResult) -> list[str]:
    return [r.run_key or "" for r in result.run_requests or []]


def skip(result: dg.SensorResult) -> str:
    return (result.skip_reason.skip_message or "") if result.skip_reason else ""


def test_marker_completes_batch_exactly_once(store: ObjectStore) -> None:
    t = Ticker(sensors()["inference_batch_sensor"], {"storage": store})
    store.put_bytes("inference/b1/part-0.idx3-ubyte", DATA)
    first = t.tick()
    assert keys(first) == [] and "b1: waiting for _SUCCESS" in skip(first)

    store.put_bytes("inference/b1/_SUCCESS", b"")
    second = t.tick()
    assert len(keys(second)) == 1 and keys(second)[0].startswith("inference/b1@")
    request = (second.run_requests or [])[0]
    assert request.partition_key == "b1"
    assert second.dynamic_partitions_requests == [dg.AddDynamicPartitionsRequest(INFERENCE_BATCHES, ["b1"])]

    assert keys(t.tick()) == [], "the same objects never trigger twice"
    store.put_bytes("inference/b1/part-0.idx3-ubyte", DATA)  # re-upload: new etag
    third = t.tick()
    assert len(keys(third)) == 1 and keys(third)[0] != keys(second)[0]
    assert third.dynamic_partitions_requests == [], "the partition exists already"
    assert keys(t.tick()) == []


def test_a_folder_with_only_its_marker_is_a_skip_that_says_why(store: ObjectStore) -> None:
    t = Ticker(sensors()["inference_batch_sensor"], {"storage": store})
    store.put_bytes("inference/b1/_SUCCESS", b"")
    first = t.tick()
    assert keys(first) == [], "a batch without images would only make a failed run"
    assert "b1: complete (_SUCCESS present), but it holds no data files: no run" in skip(first)

    store.put_bytes("inference/b1/a.idx3-ubyte", DATA)  # the files land after the marker
    assert [r.partition_key for r in t.tick().run_requests or []] == ["b1"]


def test_a_training_set_with_only_its_marker_is_a_skip(store: ObjectStore) -> None:
    t = Ticker(sensors()["training_data_sensor"], {"storage": store})
    store.put_bytes("training/s1/_SUCCESS", b"")
    result = t.tick()
    assert keys(result) == [] and "s1: complete (_SUCCESS present), but it holds no data files" in skip(
        result
    )


def scored(store: ObjectStore, batch: str) -> None:
    """Record that the batch's current files were scored, as mnist_predictions does after scoring."""
    from assets.layout import SCORED_WITH, predictions_prefix, scored_with

    files = store.list(f"inference/{batch}/")
    store.put_json(
        f"{predictions_prefix(batch)}/{SCORED_WITH}", scored_with("v-predictions", "v-model", files)
    )


def test_batches_whose_files_were_scored_already_are_not_requested(store: ObjectStore) -> None:
    """Switching the sensor on over a container full of scored batches starts no run for them."""
    for batch in ("old-1", "old-2", "new"):
        store.put_bytes(f"inference/{batch}/a.idx3-ubyte", DATA)
        store.put_bytes(f"inference/{batch}/_SUCCESS", b"")
    scored(store, "old-1")
    scored(store, "old-2")
    t = Ticker(sensors()["inference_batch_sensor"], {"storage": store})

    first = t.tick()
    assert [r.partition_key for r in first.run_requests or []] == ["new"]
    assert keys(t.tick()) == []

    store.put_bytes("inference/old-1/a.idx3-ubyte", DATA)  # re-uploaded: these files were not scored
    changed = t.tick()
    assert [r.partition_key for r in changed.run_requests or []] == ["old-1"]


def test_a_tick_with_only_scored_batches_says_so(store: ObjectStore) -> None:
    store.put_bytes("inference/old/a.idx3-ubyte", DATA)
    store.put_bytes("inference/old/_SUCCESS", b"")
    scored(store, "old")
    result = Ticker(sensors()["inference_batch_sensor"], {"storage": store}).tick()
    assert keys(result) == []
    assert "old: its current files were scored already (predictions/old/_scored_with.json)" in skip(result)


def test_empty_and_temporary_objects_do_not_count(store: ObjectStore) -> None:
    t = Ticker(sensors()["inference_batch_sensor"], {"storage": store})
    store.put_bytes("inference/b1/a.idx3-ubyte", DATA)
    store.put_bytes("inference/b1/_SUCCESS", b"")
    (version,) = keys(t.tick())
    store.put_bytes("inference/b1/empty.idx3-ubyte", b"")  # zero-byte create before the write
    store.put_bytes("inference/b1/b.idx3-ubyte.tmp", DATA)
    store.put_bytes("inference/b1/.hidden", DATA)
    for _ in range(2):  # the rotation re-checks the batch: still nothing new
        assert keys(t.tick()) == []
    store.put_bytes("inference/b1/empty.idx3-ubyte", DATA)  # ... and now the real write
    (changed,) = keys(t.tick())
    assert changed != version


def test_per_tick_cap_continues_next_tick(store: ObjectStore) -> None:
    t = Ticker(sensors(max_per_tick=2)["inference_batch_sensor"], {"storage": store})
    for i in range(5):
        store.put_bytes(f"inference/b{i}/x.idx3-ubyte", DATA)
        store.put_bytes(f"inference/b{i}/_SUCCESS", b"")
    counts = [len(keys(t.tick())) for _ in range(4)]
    assert counts == [2, 2, 1, 0]


def test_cursor_survives_a_restart(store: ObjectStore) -> None:
    definition = sensors()["inference_batch_sensor"]
    t = Ticker(definition, {"storage": store})
    store.put_bytes("inference/b1/x.idx3-ubyte", DATA)
    store.put_bytes("inference/b1/_SUCCESS", b"")
    assert len(keys(t.tick())) == 1
    restarted = Ticker(definition, {"storage": store})  # a new daemon process, same stored cursor
    restarted.cursor = t.cursor
    restarted.instance = t.instance
    assert keys(restarted.tick()) == []


def test_bad_folder_names_affect_only_themselves(store: ObjectStore) -> None:
    t = Ticker(sensors()["inference_batch_sensor"], {"storage": store})
    long_name = "x" * 250
    for batch in (long_name, "batch ü 1", "ok"):
        store.put_bytes(f"inference/{batch}/x.idx3-ubyte", DATA)
        store.put_bytes(f"inference/{batch}/_SUCCESS", b"")
    result = t.tick()
    assert sorted(r.partition_key or "" for r in result.run_requests or []) == ["batch ü 1", "ok"]
    assert keys(t.tick()) == []  # the rejected folder is reported once, not on every tick


def test_storage_error_fails_the_tick(azurite: dict[str, str]) -> None:
    wrong = AzureBlobObjectStore(
        container="nope", account_url=azurite["blob_url"], account_key="d3Jvbmcta2V5", create_container=False
    )
    t = Ticker(sensors()["inference_batch_sensor"], {"storage": wrong})
    with pytest.raises(Exception, match=r"(?i)auth|signature|403"):
        t.tick()


def test_training_set_requests_a_retrain_on_it(store: ObjectStore) -> None:
    t = Ticker(sensors()["training_data_sensor"], {"storage": store})
    for name in ("train-images-idx3-ubyte.gz", "md5sums"):
        store.put_bytes(f"training/2026-11-22/{name}", DATA)
    assert keys(t.tick()) == []
    store.put_bytes("training/2026-11-22/_SUCCESS", b"")
    result = t.tick()
    (request,) = result.run_requests or []
    assert request.run_config == {"ops": {"raw_mnist": {"config": {"training_set": "training/2026-11-22"}}}}
    assert (request.run_key or "").startswith("training/2026-11-22@")


def test_listing_tick_catches_a_marker_landing_during_the_tick(store: ObjectStore) -> None:
    import threading

    t = Ticker(sensors(long_poll_seconds=3.0)["inference_batch_sensor"], {"storage": store})
    store.put_bytes("inference/b1/x.idx3-ubyte", DATA)
    timer = threading.Timer(0.6, lambda: store.put_bytes("inference/b1/_SUCCESS", b""))
    timer.start()
    started = time.monotonic()
    result = t.tick()
    timer.join()
    assert len(keys(result)) == 1, "the same tick saw the marker"
    assert time.monotonic() - started < 3.0, "and returned as soon as it did"
    nothing = time.monotonic()
    assert keys(t.tick()) == []
    assert time.monotonic() - nothing >= 2.5, "a tick with nothing new waits out its long poll"


def test_cursor_stays_bounded_and_the_run_ledger_remembers_the_rest(tmp_path: Any) -> None:
    store = LocalObjectStore(root=str(tmp_path))
    n = RECENT_LIMIT + 200
    for i in range(n):
        store.put_bytes(f"inference/b{i:05d}/a.idx3-ubyte", DATA)
        store.put_bytes(f"inference/b{i:05d}/_SUCCESS", b"")
    t = Ticker(sensors(max_per_tick=n)["inference_batch_sensor"], {"storage": store})
    assert len(keys(t.tick())) == n
    cursor = WatchCursor.parse(t.cursor)
    assert len(cursor.recent) == RECENT_LIMIT and len(t.cursor or "") < 60_000
    assert keys(t.tick()) == [], "folders the cursor forgot are known from the runs' run keys"
    t.cursor = None  # even a reset cursor does not request them again
    assert keys(t.tick()) == []
    store.put_bytes("inference/b00000/x.idx3-ubyte", DATA)  # but a re-upload is still noticed
    t.cursor = None
    assert keys(sensors_tick_until(t, "b00000")) != []


def sensors_tick_until(t: "Ticker", batch: str, ticks: int = 3) -> dg.SensorResult:
    """Tick until `batch` is requested (rotation reaches it within a few ticks from a reset cursor)."""
    for _ in range(ticks):
        result = t.tick()
        if any(r.partition_key == batch for r in result.run_requests or []):
            return result
    raise AssertionError(f"{batch} was never requested again")


def test_costly_full_pass_is_spaced_out_but_dated_folders_are_seen_at_once(store: ObjectStore) -> None:
    t = Ticker(sensors(full_pass_seconds=3600)["inference_batch_sensor"], {"storage": store})
    costly = WatchCursor(full_pass_at=time.time(), full_pass_seconds=4.0)  # as after a slow pass
    t.cursor = costly.dump()
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    for batch in ("undated", f"{today}-run-7"):
        store.put_bytes(f"inference/{batch}/x.idx3-ubyte", DATA)
        store.put_bytes(f"inference/{batch}/_SUCCESS", b"")
    result = t.tick()
    assert [r.partition_key for r in result.run_requests or []] == [f"{today}-run-7"]
    assert keys(t.tick()) == [] and "full pass over every folder skipped" in skip(t.tick())
    overdue = WatchCursor.parse(t.cursor)
    overdue.full_pass_at -= 3600
    t.cursor = overdue.dump()
    assert [r.partition_key for r in t.tick().run_requests or []] == ["undated"]


def test_quiet_period_completion_is_a_pure_rule() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    objs = [ObjectInfo("inference/b/x.idx", 10, '"1"', now - timedelta(seconds=20))]
    assert not assess("b", objs, BatchRules(), now).complete
    assert not assess("b", objs, BatchRules(quiet_seconds=30), now).complete
    assert assess("b", objs, BatchRules(quiet_seconds=15), now).complete
    empty = [ObjectInfo("inference/b/x.idx", 0, '"1"', now - timedelta(hours=1))]
    assert not assess("b", empty, BatchRules(quiet_seconds=15), now).complete, "an empty object is not data"


def test_quiet_mode_sensor_on_local_directory(tmp_path: Any) -> None:
    store = LocalObjectStore(root=str(tmp_path))
    t = Ticker(sensors(batch_quiet_seconds=1)["inference_batch_sensor"], {"storage": store})
    store.put_bytes("inference/b1/x.idx3-ubyte", DATA)
    assert "files still arriving" in skip(t.tick())
    time.sleep(1.2)
    assert len(keys(t.tick())) == 1


# ---- events mode -------------------------------------------------------------------------------------------


@pytest.fixture
def event_env(azurite: dict[str, str]) -> dict[str, Any]:
    from azure.storage.blob import ContainerClient
    from azure.storage.queue import QueueClient

    name = f"c{uuid.uuid4().hex[:12]}"
    queue_name = f"q{uuid.uuid4().hex[:12]}"
    store = AzureBlobObjectStore(container=name, connection_string=azurite["connection_string"])
    store.exists("probe")  # creates the container
    queue = QueueClient.from_connection_string(azurite["connection_string"], queue_name)
    queue.create_queue()
    return {
        "store": store,
        "container": ContainerClient.from_connection_string(azurite["connection_string"], name),
        "queue": queue,
        "resource": BlobEventQueue(
            queue=queue_name, connection_string=azurite["connection_string"], visibility_timeout_seconds=1
        ),
    }


def events_ticker(env: dict[str, Any], **kw: Any) -> Ticker:
    definition = sensors(mode="events", container=env["store"].container, long_poll_seconds=0.3, **kw)
    return Ticker(
        definition["inference_batch_sensor"], {"storage": env["store"], "inference_events": env["resource"]}
    )


def test_events_duplicates_and_acknowledgement(event_env: dict[str, Any]) -> None:
    t = events_ticker(event_env)
    upload_and_notify(event_env["container"], event_env["queue"], "inference/b1/x.idx3-ubyte", DATA)
    assert keys(t.tick()) == [], "marker mode: a data file alone completes nothing"
    upload_and_notify(event_env["container"], event_env["queue"], "inference/b1/_SUCCESS", b"", times=3)
    result = t.tick()
    assert len(keys(result)) == 1, "duplicate deliveries give one run request"
    assert (result.run_requests or [])[0].partition_key == "b1"
    t.tick()  # acknowledges what the previous tick received
    assert list(event_env["queue"].peek_messages(max_messages=32)) == []


def test_events_replayed_after_a_crash_give_the_same_run_key(event_env: dict[str, Any]) -> None:
    t = events_ticker(event_env)
    upload_and_notify(event_env["container"], event_env["queue"], "inference/b1/x.idx3-ubyte", DATA)
    upload_and_notify(event_env["container"], event_env["queue"], "inference/b1/_SUCCESS", b"")
    lost = t.tick(commit=False)  # the daemon dies before recording this tick
    time.sleep(1.5)  # the messages become visible again
    replayed = t.tick()
    assert keys(replayed) == keys(lost) and len(keys(lost)) == 1


def test_events_and_listing_agree_on_run_keys(event_env: dict[str, Any]) -> None:
    upload_and_notify(event_env["container"], event_env["queue"], "inference/b1/x.idx3-ubyte", DATA)
    upload_and_notify(event_env["container"], event_env["queue"], "inference/b1/_SUCCESS", b"")
    by_events = keys(events_ticker(event_env).tick())
    by_listing = keys(Ticker(sensors()["inference_batch_sensor"], {"storage": event_env["store"]}).tick())
    assert by_events == by_listing and len(by_events) == 1


def test_malformed_message_is_dropped_not_fatal(event_env: dict[str, Any]) -> None:
    t = events_ticker(event_env)
    event_env["queue"].send_message("this is not an event")
    upload_and_notify(event_env["container"], event_env["queue"], "inference/b2/x.idx3-ubyte", DATA)
    upload_and_notify(event_env["container"], event_env["queue"], "inference/b2/_SUCCESS", b"")
    result = t.tick()
    assert [r.partition_key for r in result.run_requests or []] == ["b2"]


def test_event_parsing_accepts_plain_and_base64_arrays() -> None:
    import base64
    import json

    ev = {"eventType": "Microsoft.Storage.BlobCreated", "subject": "/blobServices/default/containers/c/blobs/a/b c.idx",
          "data": {"eTag": "0x1", "contentLength": 3}}  # fmt: skip
    for content in (json.dumps(ev), json.dumps([ev, ev]), base64.b64encode(json.dumps(ev).encode()).decode()):
        events = parse_events(content)
        assert events[0].container == "c" and events[0].name == "a/b c.idx" and events[0].size == 3
