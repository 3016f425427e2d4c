"""Automation: how the sensors notice complete folders (listing the storage, or Event Grid events)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, PositiveFloat, PositiveInt

from orchestration.settings.base import EnvironmentSettings, variable

# Per tick, when MNIST_SENSOR_MAX_PER_TICK is unset.
DEFAULT_FOLDERS_PER_TICK = 50
DEFAULT_MESSAGES_PER_TICK = 256


def _file_name(value: str) -> str:
    if "/" in value or value in (".", ".."):
        raise ValueError("expected a file name")
    return value


class SensorSettings(EnvironmentSettings):
    """Sensors: how new inference batches and training sets are noticed, and when a folder is complete."""

    mode: Literal["listing", "events"] = variable(
        "MNIST_SENSOR_MODE",
        "listing",
        "how sensors notice new data: 'listing' or 'events' (Event Grid via storage queues)",
    )
    interval_seconds: PositiveInt = variable(
        "MNIST_SENSOR_INTERVAL", 5, "seconds between sensor ticks (the daemon ticks at most every 5 s)"
    )
    full_pass_seconds: PositiveFloat = variable(
        "MNIST_SENSOR_FULL_PASS_SECONDS",
        60.0,
        "listing mode: longest time between full passes over every folder once a pass costs more than "
        "0.5 s (folders named after today's UTC date are seen on every tick)",
    )
    batch_marker: Annotated[str, AfterValidator(_file_name)] = variable(
        "MNIST_BATCH_MARKER",
        "_SUCCESS",
        "object that marks a folder complete",
        expected="a file name like _SUCCESS",
    )
    batch_quiet_seconds: PositiveFloat | None = variable(
        "MNIST_BATCH_QUIET_SECONDS",
        None,
        "also treat a folder as complete after this many seconds without new objects",
    )
    max_per_tick: PositiveInt | None = variable(
        "MNIST_SENSOR_MAX_PER_TICK",
        None,
        f"folders (listing) or queue messages (events) handled per tick (unset: {DEFAULT_FOLDERS_PER_TICK} / "
        f"{DEFAULT_MESSAGES_PER_TICK})",
    )
    inference_queue: str = variable(
        "MNIST_INFERENCE_QUEUE",
        "inference-events",
        "events mode: storage queue receiving BlobCreated events for inference/",
    )
    training_queue: str = variable(
        "MNIST_TRAINING_QUEUE",
        "training-events",
        "events mode: storage queue receiving BlobCreated events for training/",
    )
    queue_url: str | None = variable(
        "AZURE_STORAGE_QUEUE_URL",
        None,
        "events mode: https://<account>.queue.core.windows.net (unset: from the connection string)",
    )

    @property
    def events(self) -> bool:
        """Whether sensors read Event Grid events from storage queues instead of listing the storage."""
        return self.mode == "events"

    @property
    def max_folders_per_tick(self) -> int:
        return self.max_per_tick or DEFAULT_FOLDERS_PER_TICK

    @property
    def max_messages_per_tick(self) -> int:
        return self.max_per_tick or DEFAULT_MESSAGES_PER_TICK
