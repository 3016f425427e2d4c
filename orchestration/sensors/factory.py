"""Sensors that replace ADF storage event triggers: one run per complete inference batch or training set.

Each watched area (a folder tree and what a complete folder in it becomes) is a `WatchedArea`; one
function builds its sensor for either way of noticing new data (listing the storage, or Event Grid
events from a storage queue), as the sensor settings say.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
from dagster._core.storage.tags import RUN_KEY_TAG

from assets.layout import (
    INFERENCE_PREFIX,
    SCORED_WITH,
    TRAINING_PREFIX,
    batch_files_digest,
    batch_prefix,
    predictions_prefix,
)
from assets.predictions import INFERENCE_BATCHES, inference_batches
from orchestration.jobs import SCORE_JOB, TRAIN_JOB
from orchestration.sensors.completeness import BatchRules, BatchState, run_key
from orchestration.sensors.folder_scan import Ledger, TickPlan, WatchCursor, scan_events, scan_listing
from orchestration.settings import SensorSettings
from orchestration.settings.wiring import INFERENCE_EVENTS, TRAINING_EVENTS
from resources.blob_events import BlobEventQueue
from resources.storage import ObjectStore

# Within one tick, keep looking for this long while nothing is complete yet (see folder_scan).
LONG_POLL_SECONDS = 3.5
# Listing mode: done folders re-checked per tick, to notice re-uploads.
ROTATE_PER_TICK = 10


@dataclass(frozen=True)
class WatchedArea:
    """A folder tree a sensor watches, and what a complete folder in it becomes."""

    sensor_name: str
    prefix: str  # "<area>/": each folder under it is one batch
    job_name: str
    request: Callable[[BatchState], dg.RunRequest]  # the run a complete folder version asks for
    describe: Callable[[str, str], str]  # (when a folder is complete, how it is noticed) -> description
    events_resource: str  # events mode: resource key of the storage queue of this area's blob events
    partitions: dg.DynamicPartitionsDefinition | None = None  # each folder becomes a partition of these
    # Why a complete folder version needs no run although none was requested for it (None: it does).
    done: Callable[[ObjectStore, BatchState], str | None] | None = None


def _already_scored(store: ObjectStore, state: BatchState) -> str | None:
    """Why the batch needs no scoring run: its current files are the ones its predictions were made from
    (the `files` digest that mnist_predictions records beside them). None when they are not, or unknown."""
    stamp = f"{predictions_prefix(state.batch_id)}/{SCORED_WITH}"
    if not store.exists(stamp):
        return None
    scored = store.get_json(stamp).get("files")
    if scored is None or scored != batch_files_digest(store.list(batch_prefix(state.batch_id) + "/")):
        return None
    return f"{state.batch_id}: its current files were scored already ({stamp})"


def _score_request(state: BatchState) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key(f"{INFERENCE_PREFIX}/{state.batch_id}", state),
        partition_key=state.batch_id,
        tags={"mnist/batch": state.batch_id, "mnist/batch_version": state.version},
    )


def _train_request(state: BatchState) -> dg.RunRequest:
    folder = f"{TRAINING_PREFIX}/{state.batch_id}"
    return dg.RunRequest(
        run_key=run_key(folder, state),
        run_config={"ops": {"raw_mnist": {"config": {"training_set": folder}}}},
        tags={"mnist/training_set": state.batch_id, "mnist/training_set_version": state.version},
    )


INFERENCE = WatchedArea(
    sensor_name="inference_batch_sensor",
    prefix=f"{INFERENCE_PREFIX}/",
    job_name=SCORE_JOB,
    request=_score_request,
    describe=lambda completion, mode: (
        f"Scores each inference batch (a folder under `{INFERENCE_PREFIX}/`) once it is complete: when "
        f"{completion}. Adds the batch as a partition of mnist_predictions and requests exactly one "
        f"score_batch run per batch version (run key: folder + digest of its objects' etags), none for files "
        f"that were scored already. Watches by {mode}."
    ),
    events_resource=INFERENCE_EVENTS,
    partitions=inference_batches,
    done=_already_scored,
)
TRAINING = WatchedArea(
    sensor_name="training_data_sensor",
    prefix=f"{TRAINING_PREFIX}/",
    job_name=TRAIN_JOB,
    request=_train_request,
    describe=lambda completion, mode: (
        f"Retrains when a labelled set lands under `{TRAINING_PREFIX}/<set>/` (the four MNIST IDX files and an "
        f"md5sums file) and is complete: when {completion}. Requests one train_model run per set version, "
        f"with raw_mnist reading that set. Watches by {mode}."
    ),
    events_resource=TRAINING_EVENTS,
)
AREAS = (INFERENCE, TRAINING)


def build_sensors(
    settings: SensorSettings, *, container: str | None = None, long_poll_seconds: float = LONG_POLL_SECONDS
) -> list[dg.SensorDefinition]:
    """The sensor of every watched area. `container`: events mode counts only events of this blob container."""
    return [
        build_sensor(area, settings, container=container, long_poll_seconds=long_poll_seconds)
        for area in AREAS
    ]


def build_sensor(
    area: WatchedArea,
    settings: SensorSettings,
    *,
    container: str | None = None,
    long_poll_seconds: float = LONG_POLL_SECONDS,
) -> dg.SensorDefinition:
    """The sensor of one area: each tick, the complete folders whose version was not requested yet become runs."""
    rules = BatchRules(marker=settings.batch_marker, quiet_seconds=settings.batch_quiet_seconds)
    completion = f"its `{rules.marker}` marker appears" + (
        f" or nothing new has landed for {rules.quiet_seconds:g} s" if rules.quiet_seconds is not None else ""
    )
    mode = "Event Grid events from a storage queue" if settings.events else "listing the storage"
    events = settings.events

    @dg.sensor(
        name=area.sensor_name,
        job_name=area.job_name,
        description=area.describe(completion, mode),
        minimum_interval_seconds=settings.interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        required_resource_keys={"storage", area.events_resource} if events else {"storage"},
    )
    def watch(context: dg.SensorEvaluationContext, **_called_with: object) -> dg.SensorResult:
        # Resources come from the context: the queue's key differs by area, so it cannot be a parameter.
        # (Calling the sensor directly, as tests do, also passes them as keyword arguments: the same objects.)
        store: ObjectStore = context.resources.storage
        cursor = WatchCursor.parse(context.cursor)
        ledger = Ledger(lambda: requested_run_keys(context.instance, area.prefix))
        if events:
            queue: BlobEventQueue = getattr(context.resources, area.events_resource)
            plan = scan_events(
                store, queue, container, area.prefix, rules, cursor,
                max_messages=settings.max_messages_per_tick, long_poll_seconds=long_poll_seconds, ledger=ledger,
            )  # fmt: skip
        else:
            plan = scan_listing(
                store, area.prefix, rules, cursor, max_folders=settings.max_folders_per_tick,
                rotate=ROTATE_PER_TICK, long_poll_seconds=long_poll_seconds, ledger=ledger,
                full_pass_seconds=settings.full_pass_seconds,
            )  # fmt: skip
        return _result(context, plan, area, store)

    return watch


def _result(
    context: dg.SensorEvaluationContext, plan: TickPlan, area: WatchedArea, store: ObjectStore
) -> dg.SensorResult:
    ready = []
    for state in plan.ready:
        done = area.done(store, state) if area.done is not None else None
        if done is None:
            ready.append(state)
        else:
            plan.notes.append(f"{done}: no run")  # remembered in the cursor, not looked at again
    for note in plan.notes:
        context.log.info(note)
    partitions = area.partitions
    new_partitions = []
    if partitions is not None:
        assert partitions.name is not None
        new_partitions = sorted(
            {
                s.batch_id
                for s in ready
                if not context.instance.has_dynamic_partition(partitions.name, s.batch_id)
            }
        )
    skip = None
    if not ready:
        shown = "; ".join(plan.notes[:5]) + (
            f"; and {len(plan.notes) - 5} more" if len(plan.notes) > 5 else ""
        )
        skip = dg.SkipReason(f"no run to request ({shown})" if shown else "no new or changed folders")
    return dg.SensorResult(
        run_requests=[area.request(s) for s in ready],
        dynamic_partitions_requests=[partitions.build_add_request(new_partitions)]
        if new_partitions and partitions
        else [],
        cursor=plan.cursor.dump(),
        skip_reason=skip,
    )


def requested_run_keys(instance: dg.DagsterInstance, prefix: str) -> list[str]:
    """`<folder>@<version>` of every run requested for a folder under `prefix`, from the runs' run keys.

    One query on the run storage; run keys are `<prefix><folder>@<version>` (see `orchestration.sensors.completeness`).
    """
    rows = instance.get_run_tags(tag_keys=[RUN_KEY_TAG], value_prefix=prefix)
    return [key[len(prefix) :] for _, values in rows for key in values if key.startswith(prefix)]


__all__ = ["AREAS", "INFERENCE_BATCHES", "WatchedArea", "build_sensor", "build_sensors", "requested_run_keys"]
