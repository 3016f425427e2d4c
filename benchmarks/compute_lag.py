"""Detection lag of remote compute backends: remote job finished -> Dagster notices, and status requests made.

    python benchmarks/compute_lag.py [--durations 5 60 600] [--real-seconds 12] [--backends azureml-v1 azureml-v2 azureml-v2-training]

Each backend runs simulated jobs on its contract fake (tests/support/fakes) whose clock is time-scaled: a
600 s job takes `--real-seconds` of wall time; the backend's poll schedule is scaled by the same
factor, so lag and request counts are reported in simulated seconds. The backend follows the job
exactly as `ComputeBackend.run` does (poll_intervals -> wait -> status, then new_log_lines).
ADF's fixed Until/Wait loop (Wait 120 s, then one status call) is printed beside it.

Generic: a backend is a factory `scale -> Harness`; other compute helpers can add theirs to HARNESSES.
Target: lag <= max(2 s, 5 % of the job's duration), and on average <= 1 status request per 10 s on long jobs.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resources.compute import ComputeBackend, WorkloadRequest
from resources.compute.base import PollSchedule
from resources.storage import LocalObjectStore

ADF_POLL_SECONDS = 120.0


@dataclass
class Harness:
    """A backend wired to its fake: how to tell when a job really finished and count requests."""

    backend: ComputeBackend
    request: WorkloadRequest
    set_duration: Callable[[float], None]  # simulated seconds of the next job
    finished_at: Callable[[str], float | None]  # simulated time the job finished
    now: Callable[[], float]  # simulated now
    status_requests: Callable[[], int]
    all_requests: Callable[[], int]
    close: Callable[[], None]


def _poll_settings(scale: float) -> dict[str, Any]:
    """The backend's default schedule, in real seconds for a clock running `scale` times faster."""
    from resources.compute.azureml.workspace import AzureMLBackend

    fields = AzureMLBackend.model_fields
    return {
        name: float(fields[name].default) / scale
        for name in ("poll_initial_seconds", "poll_floor_seconds", "poll_max_seconds")
    }


def azureml_v1(scale: float) -> Harness:
    from resources.compute.azureml import AzureMLPipelineBackend
    from tests.support.fakes.azureml_v1 import FakeAzureMLPipelines

    fake = FakeAzureMLPipelines(None, mode="simulate", queue_s=0.0, scale=scale, allow_reuse=False).start()
    backend = AzureMLPipelineBackend(
        subscription_id=fake.subscription,
        resource_group=fake.resource_group,
        workspace_name=fake.workspace,
        datastore=fake.datastore,
        service_url=fake.url,
        allow_http_loopback=True,
        credential="python:tests.support.fakes.http:fake_credential",
        pipeline_endpoint=fake.endpoint_name,
        **_poll_settings(scale),
    )
    request = WorkloadRequest(
        "train", "bench/train", {"raw": "raw/mnist/r"}, {"model": "models/mnist/m"}, {"seed": 0}
    )

    def set_duration(seconds: float) -> None:
        fake.run_s = seconds

    return Harness(
        backend,
        request,
        set_duration,
        lambda job: fake.runs[job].job.ended,
        fake.clock.now,
        lambda: len(fake.server.calls_to("run_status")),
        lambda: len(fake.server.calls),
        fake.stop,
    )


def azureml_v2(scale: float) -> Harness:
    from resources.compute.azureml import AzureMLBatchEndpointBackend
    from tests.support.fakes.azureml_v2 import FakeAzureMLBatch

    fake = FakeAzureMLBatch(None, mode="simulate", queue_s=0.0, scale=scale).start()
    fake.deploy("models/mnist/m/model")
    backend = AzureMLBatchEndpointBackend(
        subscription_id=fake.subscription,
        resource_group=fake.resource_group,
        workspace_name=fake.workspace,
        datastore=fake.datastore,
        arm_url=fake.url,
        allow_http_loopback=True,
        credential="python:tests.support.fakes.http:fake_credential",
        endpoint_name=fake.endpoint_name,
        **_poll_settings(scale),
    )
    request = WorkloadRequest(
        "score",
        "bench/score",
        {"model": "models/mnist/m/model", "batch": "inference/b"},
        {"predictions": "predictions/b"},
    )

    def set_duration(seconds: float) -> None:
        fake.run_s = seconds

    return Harness(
        backend,
        request,
        set_duration,
        lambda job: fake.jobs[job].job.ended,
        fake.clock.now,
        lambda: len(fake.server.calls_to("job")),
        lambda: len(fake.server.calls),
        fake.stop,
    )


def azureml_v2_training(scale: float) -> Harness:
    from resources.compute.azureml import AzureMLCommandJobBackend
    from tests.support.fakes.azureml_v2_training import FakeAzureMLV2

    fake = FakeAzureMLV2(None, mode="simulate", queue_s=0.0, scale=scale).start()
    backend = AzureMLCommandJobBackend(
        subscription_id=fake.subscription,
        resource_group=fake.resource_group,
        workspace_name=fake.workspace,
        datastore=fake.datastore,
        arm_url=fake.url,
        service_url=fake.url,
        compute_name="cpu-cluster",
        allow_http_loopback=True,
        credential="python:tests.support.fakes.http:fake_credential",
        **_poll_settings(scale),
    )
    request = WorkloadRequest(
        "train", "bench/train", {"raw": "raw/mnist/r"}, {"model": "models/mnist/m"}, {"seed": 0}
    )

    def set_duration(seconds: float) -> None:
        fake.run_s = seconds

    return Harness(
        backend,
        request,
        set_duration,
        lambda job: fake.command_jobs[job].job.ended,
        fake.clock.now,
        lambda: len(fake.server.calls_to("job")),
        lambda: len(fake.server.calls),
        fake.stop,
    )


HARNESSES: dict[str, Callable[[float], Harness]] = {
    "azureml-v1": azureml_v1,
    "azureml-v2": azureml_v2,
    "azureml-v2-training": azureml_v2_training,
}


@dataclass
class Measurement:
    backend: str
    duration: float
    lag: float
    status_requests: int
    all_requests: int


def measure(name: str, duration: float, real_seconds: float) -> Measurement:
    scale = max(1.0, duration / real_seconds)
    h = HARNESSES[name](scale)
    try:
        h.set_duration(duration)
        with tempfile.TemporaryDirectory() as tmp:
            job = h.backend.submit(h.request, LocalObjectStore(root=tmp), {})
        status_before, all_before = h.status_requests(), h.all_requests()
        # The same loop as ComputeBackend._follow.
        for interval in h.backend.poll_intervals():
            status = h.backend.wait(job, interval)
            h.backend.new_log_lines(job)
            if status.state.terminal:
                break
        noticed = h.now()
        finished = h.finished_at(job)
        assert finished is not None, "the job did not finish"
        return Measurement(
            name,
            duration,
            noticed - finished,
            h.status_requests() - status_before,
            h.all_requests() - all_before,
        )
    finally:
        h.close()


def schedule_only(duration: float) -> tuple[float, int]:
    """The default schedule with zero request latency: (lag, status requests) for a job of `duration`.

    The measured figures also carry each poll's HTTP round trips, multiplied by the clock scale.
    """
    from resources.compute.azureml.workspace import AzureMLBackend

    f = {k: v.default for k, v in AzureMLBackend.model_fields.items() if k.startswith("poll_")}
    schedule = PollSchedule(
        f["poll_initial_seconds"],
        f["poll_max_seconds"],
        f["poll_growth"],
        f["poll_floor_seconds"],
        f["poll_fraction"],
    )
    t, polls = 0.0, 0
    while t < duration:
        t += schedule.wait(polls, t)
        polls += 1
    return t - duration, polls


def adf(duration: float) -> tuple[float, int]:
    """ADF Until loop: Wait 120 s, then one Web activity status call, until done."""
    polls = max(1, math.ceil(duration / ADF_POLL_SECONDS))
    return polls * ADF_POLL_SECONDS - duration, polls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[5.0, 60.0, 600.0])
    parser.add_argument(
        "--real-seconds", type=float, default=12.0, help="wall time of the longest simulated job"
    )
    parser.add_argument("--backends", nargs="+", default=list(HARNESSES), choices=list(HARNESSES))
    args = parser.parse_args(argv)
    rows = []
    for name in args.backends:
        for duration in args.durations:
            m = measure(name, duration, args.real_seconds)
            target = max(2.0, 0.05 * duration)
            rate = m.status_requests / duration * 10
            adf_lag, adf_polls = adf(duration)
            ideal_lag, ideal_polls = schedule_only(duration)
            rows.append(
                (
                    name,
                    f"{duration:.0f}",
                    f"{m.lag:.2f}",
                    f"{target:.1f}",
                    "yes" if m.lag <= target else "NO",
                    str(m.status_requests),
                    f"{rate:.2f}",
                    str(m.all_requests),
                    f"{ideal_lag:.2f} / {ideal_polls} ({ideal_polls / duration * 10:.2f})",
                    f"{adf_lag:.0f} (up to 120)",
                    str(adf_polls),
                )
            )
    header = (
        "backend",
        "job s",
        "lag s",
        "lag target",
        "met",
        "status req",
        "per 10 s",
        "all req",
        "schedule alone: lag / req (per 10 s)",
        "ADF lag s",
        "ADF req",
    )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    print("\nschedule alone (zero latency), longer jobs:")
    for duration in (1200.0, 3600.0, 4 * 3600.0):
        lag, polls = schedule_only(duration)
        print(
            f"  {duration:>6.0f} s job: lag {lag:5.2f} s, {polls} status requests ({polls / duration * 10:.2f} per 10 s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
