"""The compute driver's shared pieces: the poll schedule, the stderr tail, outputs published markers last."""

from pathlib import Path

import pytest

from resources.compute.base import PollSchedule, last_lines
from resources.compute.outputs import COMPLETION_MARKERS, copy_prefix, is_complete, publish_dir
from resources.storage import LocalObjectStore, ObjectInfo


def waits(schedule: PollSchedule, count: int) -> list[float]:
    """The schedule's first `count` waits when a status request takes no time (elapsed = sum of the waits)."""
    out: list[float] = []
    for polls in range(count):
        out.append(schedule.wait(polls, sum(out)))
    return out


def test_poll_schedule_as_capped_exponential_backoff() -> None:
    # fraction 0: initial, x growth, capped (the local backend: 0.05 s up to 1 s).
    got = waits(PollSchedule(0.05, 1.0, 1.5), 10)
    assert got[:3] == pytest.approx([0.05, 0.05 * 1.5, 0.05 * 1.5**2]) and got[-1] == 1.0


def test_poll_schedule_ramp_then_fraction_of_age() -> None:
    # The AzureML defaults: a ramp from 1 s to 1.8 s, then 4.5 % of the time waited, at most 30 s.
    schedule = PollSchedule(1.0, 30.0, 1.5, floor=1.8, fraction=0.045)
    got = waits(schedule, 200)
    assert got[:3] == [1.0, 1.5, 1.8]
    assert max(got) == 30.0
    elapsed = sum(got[:100])
    assert got[100] == min(30.0, max(1.8, 0.045 * elapsed))


def test_poll_schedule_fraction_of_age_with_a_fixed_floor() -> None:
    # The Azure Batch defaults: growth 1 keeps the floor at 2 s; then 5 % of the task's age, at most 60 s.
    schedule = PollSchedule(2.0, 60.0, 1.0, fraction=0.05)
    assert schedule.wait(0, 0.0) == 2.0 and schedule.wait(7, 10.0) == 2.0
    assert schedule.wait(30, 400.0) == 20.0 and schedule.wait(90, 5000.0) == 60.0


def test_last_lines_of_a_log() -> None:
    text = "\n".join(f"line {i}" for i in range(40)).encode()
    assert last_lines(text, 3) == "line 37\nline 38\nline 39"
    assert last_lines("only") == "only"


class RecordingStore(LocalObjectStore):
    def put_bytes(self, name: str, data: bytes) -> ObjectInfo:
        WRITES.append(name)
        return super().put_bytes(name, data)

    def put_file(self, name: str, path: Path) -> ObjectInfo:
        WRITES.append(name)
        return super().put_file(name, path)


WRITES: list[str] = []


def test_outputs_are_published_with_their_completion_markers_last(tmp_path: Path) -> None:
    store = RecordingStore(root=str(tmp_path / "store"))
    local = tmp_path / "out"
    (local / "model").mkdir(parents=True)
    for name in ("metrics.json", "a.txt", "model/weights.bin", "z.txt"):
        (local / name).write_text(name)
    WRITES.clear()
    publish_dir(store, local, "models/m1")
    assert WRITES[-1] == "models/m1/metrics.json"
    assert is_complete(store, "models/m1", "train")
    # Each task's folder is complete by its own marker only: a training folder with a scoring marker is not.
    assert not is_complete(store, "models/m1", "score")

    WRITES.clear()
    store.put_bytes("staged/summary.json", b"{}")
    store.put_bytes("staged/predictions.csv", b"x")
    WRITES.clear()
    copy_prefix(store, "staged", "predictions/b1")
    assert WRITES == ["predictions/b1/predictions.csv", "predictions/b1/summary.json"]
    assert is_complete(store, "predictions/b1", "score")
    assert not is_complete(store, "predictions/nothing", "score")
    assert set(COMPLETION_MARKERS) == {"metrics.json", "summary.json", "_manifest.json"}


def test_a_job_polled_for_days_keeps_its_capped_wait() -> None:
    """The ramp is capped, not computed as an ever larger power (which overflows a float)."""
    local = PollSchedule(0.05, 1.0, 1.5)
    assert local.wait(10_000, 10_000.0) == 1.0
    azureml = PollSchedule(1.0, 30.0, 1.5, floor=1.8, fraction=0.045)
    assert azureml.wait(100_000, 3 * 86_400.0) == 30.0


def test_a_batch_step_that_readied_no_pool_releases_nothing_and_opens_no_client() -> None:
    """The driver calls `release` after every step; with no pool readied it must not build a Batch client
    (whose errors would then hide the step's own)."""
    from resources.compute.batch_tasks import AzureBatchBackend

    backend = AzureBatchBackend(account_url="https://acct.westeurope.batch.azure.com")
    backend.release(None)
    assert backend._service is None and backend._pools is None
