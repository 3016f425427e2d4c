"""Sensors under the real Dagster daemon, against Azurite: uploads made with azure-storage-blob start
predictions runs by themselves; a burst survives a SIGKILLed daemon with exactly one run per batch."""

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from tests.support.blob_events import upload_and_notify
from tests.support.daemon import Daemon, failure_report, wait_for
from tests.support.instance import postgres_database, postgres_unavailable_reason
from tests.support.synthetic import make_digits, write_source
from workload.mnist_idx import encode_idx

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture
def postgres_url() -> Iterator[str | None]:
    """A fresh PostgreSQL database for the instance when one answers on 127.0.0.1:5432, else SQLite."""
    reason = postgres_unavailable_reason()
    if reason:
        print(f"instance storage: SQLite ({reason})")
        yield None
        return
    with postgres_database() as url:
        yield url


@pytest.fixture
def site(tmp_path: Path, azurite: dict[str, str], postgres_url: str | None) -> Iterator[dict[str, Any]]:
    """A container with a promoted model in it, and the environment the code location runs with."""
    from azure.storage.blob import ContainerClient

    container = f"d{uuid.uuid4().hex[:12]}"
    write_source(tmp_path / "source")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "MNIST_", "DAGSTER_"))}
    env.update(
        MNIST_STORAGE="azure_blob",
        AZURE_STORAGE_CONTAINER=container,
        AZURE_STORAGE_CONNECTION_STRING=azurite["connection_string"],
        MNIST_SOURCE=str(tmp_path / "source"),
        MNIST_WORK_DIR=str(tmp_path / "compute"),
        MNIST_MIN_ACCURACY="0.8",
        MNIST_SENSOR_INTERVAL="1",
    )
    daemon = Daemon(tmp_path / "dagster_home", env, postgres_url)
    daemon.cli(
        "job", "execute", "-j", "train_model", "-c", str(write_small_config(tmp_path)),
        target=("-m", "orchestration.definitions"),
    )  # fmt: skip
    client = ContainerClient.from_connection_string(azurite["connection_string"], container)
    assert client.get_blob_client("models/mnist/current.json").exists()
    yield {"daemon": daemon, "container": client, "env": env, "azurite": azurite}
    daemon.stop()


def write_small_config(tmp_path: Path) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(
        "ops:\n  mnist_model:\n    config:\n      pca_components: 20\n      kernel_components: 200\n"
    )
    return path


def batch_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs() if "mnist/batch" in r.tags]


def images(n: int = 10, seed: int = 0) -> bytes:
    return encode_idx(make_digits(n, seed)[0])


def test_uploaded_batch_is_scored_by_itself_via_events(site: dict[str, Any]) -> None:
    from azure.storage.queue import QueueClient

    daemon: Daemon = site["daemon"]
    queue = QueueClient.from_connection_string(
        site["azurite"]["connection_string"], f"q{uuid.uuid4().hex[:12]}"
    )
    queue.create_queue()
    daemon.env.update(MNIST_SENSOR_MODE="events", MNIST_INFERENCE_QUEUE=queue.queue_name)
    daemon.cli("sensor", "start", "inference_batch_sensor")
    daemon.start()

    upload_and_notify(site["container"], queue, "inference/b-events/digits.idx3-ubyte.gz", images(25))
    upload_and_notify(
        site["container"], queue, "inference/b-events/_SUCCESS", b"", times=2
    )  # duplicate delivery

    instance = daemon.instance()
    wait_for(
        lambda: any(r.status == dg.DagsterRunStatus.SUCCESS for r in batch_runs(instance)),
        timeout=180, what="the predictions run to succeed", log=daemon.log,
    )  # fmt: skip
    runs = batch_runs(instance)
    assert len(runs) == 1 and runs[0].tags["mnist/batch"] == "b-events"
    body = site["container"].download_blob("predictions/b-events/predictions.csv").readall().decode()
    assert len(body.splitlines()) == 26


def test_burst_with_daemon_killed_scores_each_batch_exactly_once(site: dict[str, Any]) -> None:
    daemon: Daemon = site["daemon"]
    container = site["container"]
    # Runs spend most of their time waiting (storage, queue, process start, polls): eight at a time keep
    # both CPUs busy and the suite short. Exactly-once does not depend on it.
    daemon.set_max_concurrent_runs(8)
    daemon.cli("sensor", "start", "inference_batch_sensor")
    daemon.start()
    instance = daemon.instance()
    batches = [f"burst-{i:03d}" for i in range(100)]
    payload = images(10)

    def upload(batch: str) -> None:
        for part in range(9):
            container.get_blob_client(f"inference/{batch}/part-{part}.idx3-ubyte.gz").upload_blob(
                payload, overwrite=True
            )
        container.get_blob_client(f"inference/{batch}/_SUCCESS").upload_blob(b"", overwrite=True)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, batches[:50]))
        wait_for(lambda: len(batch_runs(instance)) > 0, timeout=60, what="the first runs", log=daemon.log)
        second_half = pool.map(upload, batches[50:])
        daemon.kill()  # mid-burst, possibly mid-tick
        print(f"at the kill: {dict(Counter(r.status.value for r in batch_runs(instance)))}")
        list(second_half)
    daemon.start()

    def explain() -> str:
        return failure_report(instance, batch_runs(instance))

    wait_for(lambda: len({r.tags["mnist/batch"] for r in batch_runs(instance)}) == 100,
             timeout=240, what="a run for every batch", log=daemon.log, explain=explain)  # fmt: skip
    wait_for(
        lambda: all(r.is_finished for r in batch_runs(instance)),
        timeout=600, what="all runs to finish", log=daemon.log, explain=explain,
    )  # fmt: skip
    runs = batch_runs(instance)
    report = failure_report(instance, runs)
    print(report)  # shown by pytest for a failed test, and with -s
    per_batch = Counter(r.tags["mnist/batch"] for r in runs)
    assert sorted(per_batch) == batches, "no batch missed"
    assert set(per_batch.values()) == {1}, f"duplicates: {[b for b, n in per_batch.items() if n > 1]}"
    failed = [r.tags["mnist/batch"] for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
    assert failed == [], f"runs that did not succeed:\n{report}"
    names = set(container.list_blob_names(name_starts_with="predictions/"))
    assert all(f"predictions/{b}/predictions.csv" in names for b in batches)


def test_a_run_the_daemon_was_starting_when_killed_is_started_by_the_next_daemon(
    site: dict[str, Any],
) -> None:
    """The daemon is SIGKILLed while it launches a run (the run is STARTING: the first launch of a daemon
    starts its warm process, seconds). The next daemon must start that run: nothing else ever would, and
    Dagster's run monitoring fails a run still STARTING after its start timeout (180 s)."""
    daemon: Daemon = site["daemon"]
    container = site["container"]
    daemon.cli("sensor", "start", "inference_batch_sensor")
    container.get_blob_client("inference/orphan/part-0.idx3-ubyte.gz").upload_blob(images(10))
    container.get_blob_client("inference/orphan/_SUCCESS").upload_blob(b"")
    daemon.start()
    instance = daemon.instance()

    def status() -> dg.DagsterRunStatus | None:
        runs = batch_runs(instance)
        return runs[0].status if runs else None

    wait_for(lambda: status() not in (None, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED),
             timeout=120, what="the run to be launched", log=daemon.log)  # fmt: skip
    assert status() == dg.DagsterRunStatus.STARTING, "the launch ended before the kill could land"
    daemon.kill()
    daemon.start()

    def explain() -> str:
        return failure_report(instance, batch_runs(instance))

    # Well within the start timeout: a run left STARTING would still be STARTING here.
    wait_for(lambda: all(r.is_finished for r in batch_runs(instance)),
             timeout=150, what="the run to finish", log=daemon.log, explain=explain)  # fmt: skip
    runs = batch_runs(instance)
    assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS], explain()
    messages = [e.message for e in instance.all_logs(runs[0].run_id)]
    assert any(
        "Putting the run back in the queue: the process that was launching it" in m for m in messages
    ), messages
    assert site["container"].get_blob_client("predictions/orphan/predictions.csv").exists()
