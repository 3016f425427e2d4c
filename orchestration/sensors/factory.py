"""Sensors that replace ADF storage event triggers: one run per complete inference batch or training set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.storage.tags import RUN_KEY_TAG

from assets.layout import INFERENCE_PREFIX, TRAINING_PREFIX
from assets.predictions import INFERENCE_BATCHES, inference_batches
from orchestration.jobs import score_batch, train_model
from orchestration.sensors.completeness import BatchRules, BatchState, run_key
from orchestration.sensors.folder_scan import Ledger, TickPlan, WatchCursor, scan_events, scan_listing
from resources.blob_events import BlobEventQueue
from resources.storage import ObjectStore


@dataclass(frozen=True)
class SensorSettings:
    interval_seconds: int = 5
    rules: BatchRules = field(default_factory=BatchRules)
    max_folders_per_tick: int = 50
    rotate_per_tick: int = 10
    events: bool = False  # events mode: storage queues instead of listing
    events_container: str | None = None
    long_poll_seconds: float = 3.5
    max_messages_per_tick: int = 256
    full_pass_seconds: float = (
        60.0  # listing mode: at most this long between full passes once they are costly
    )


def _result(
    context: dg.SensorEvaluationContext,
    plan: TickPlan,
    request: Callable[[BatchState], dg.RunRequest],
    partitions: dg.DynamicPartitionsDefinition | None,
) -> dg.SensorResult:
    for note in plan.notes:
        context.log.info(note)
    new_partitions = []
    if partitions is not None:
        assert partitions.name is not None
        new_partitions = sorted(
            {
                s.batch_id
                for s in plan.ready
                if not context.instance.has_dynamic_partition(partitions.name, s.batch_id)
            }
        )
    skip = None
    if not plan.ready:
        shown = "; ".join(plan.notes[:5]) + (
            f"; and {len(plan.notes) - 5} more" if len(plan.notes) > 5 else ""
        )
        skip = dg.SkipReason(f"nothing new is complete ({shown})" if shown else "no new or changed folders")
    return dg.SensorResult(
        run_requests=[request(s) for s in plan.ready],
        dynamic_partitions_requests=[partitions.build_add_request(new_partitions)]
        if new_partitions and partitions
        else [],
        cursor=plan.cursor.dump(),
        skip_reason=skip,
    )


def _plan(
    context: dg.SensorEvaluationContext,
    store: ObjectStore,
    queue: BlobEventQueue | None,
    prefix: str,
    s: SensorSettings,
) -> TickPlan:
    cursor = WatchCursor.parse(context.cursor)
    ledger = Ledger(lambda: requested_run_keys(context.instance, prefix))
    if queue is not None:
        return scan_events(
            store, queue, s.events_container, prefix, s.rules, cursor,
            max_messages=s.max_messages_per_tick, long_poll_seconds=s.long_poll_seconds, ledger=ledger,
        )  # fmt: skip
    return scan_listing(
        store, prefix, s.rules, cursor, max_folders=s.max_folders_per_tick, rotate=s.rotate_per_tick,
        long_poll_seconds=s.long_poll_seconds, ledger=ledger, full_pass_seconds=s.full_pass_seconds,
    )  # fmt: skip


def requested_run_keys(instance: dg.DagsterInstance, prefix: str) -> list[str]:
    """`<folder>@<version>` of every run requested for a folder under `prefix`, from the runs' run keys.

    One query on the run storage; run keys are `<prefix><folder>@<version>` (see `orchestration.sensors.completeness`).
    """
    rows = instance.get_run_tags(tag_keys=[RUN_KEY_TAG], value_prefix=prefix)
    return [key[len(prefix) :] for _, values in rows for key in values if key.startswith(prefix)]


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


def build_sensors(s: SensorSettings) -> list[dg.SensorDefinition]:
    mode = "Event Grid events from a storage queue" if s.events else "listing the storage"
    completion = f"its `{s.rules.marker}` marker appears" + (
        f" or nothing new has landed for {s.rules.quiet_seconds:g} s"
        if s.rules.quiet_seconds is not None
        else ""
    )
    common = {
        "minimum_interval_seconds": s.interval_seconds,
        "default_status": dg.DefaultSensorStatus.STOPPED,
    }
    descriptions = {
        "inference_batch_sensor": f"Scores each inference batch (a folder under `{INFERENCE_PREFIX}/`) once it is "
        f"complete: when {completion}. Adds the batch as a partition of mnist_predictions and requests exactly "
        f"one score_batch run per batch version (run key: folder + digest of its objects' etags). Watches by {mode}.",
        "training_data_sensor": f"Retrains when a labelled set lands under `{TRAINING_PREFIX}/<set>/` (the four "
        f"MNIST IDX files and an md5sums file) and is complete: when {completion}. Requests one train_model run "
        f"per set version, with raw_mnist reading that set. Watches by {mode}.",
    }

    if s.events:

        @dg.sensor(
            name="inference_batch_sensor",
            job=score_batch,
            description=descriptions["inference_batch_sensor"],
            **common,
        )
        def inference_events(
            context: dg.SensorEvaluationContext, storage: ObjectStore, inference_events: BlobEventQueue
        ) -> dg.SensorResult:
            plan = _plan(context, storage, inference_events, f"{INFERENCE_PREFIX}/", s)
            return _result(context, plan, _score_request, inference_batches)

        @dg.sensor(
            name="training_data_sensor",
            job=train_model,
            description=descriptions["training_data_sensor"],
            **common,
        )
        def training_events(
            context: dg.SensorEvaluationContext, storage: ObjectStore, training_events: BlobEventQueue
        ) -> dg.SensorResult:
            plan = _plan(context, storage, training_events, f"{TRAINING_PREFIX}/", s)
            return _result(context, plan, _train_request, None)

        sensors = [inference_events, training_events]
    else:

        @dg.sensor(
            name="inference_batch_sensor",
            job=score_batch,
            description=descriptions["inference_batch_sensor"],
            **common,
        )
        def inference_listing(context: dg.SensorEvaluationContext, storage: ObjectStore) -> dg.SensorResult:
            plan = _plan(context, storage, None, f"{INFERENCE_PREFIX}/", s)
            return _result(context, plan, _score_request, inference_batches)

        @dg.sensor(
            name="training_data_sensor",
            job=train_model,
            description=descriptions["training_data_sensor"],
            **common,
        )
        def training_listing(context: dg.SensorEvaluationContext, storage: ObjectStore) -> dg.SensorResult:
            plan = _plan(context, storage, None, f"{TRAINING_PREFIX}/", s)
            return _result(context, plan, _train_request, None)

        sensors = [inference_listing, training_listing]

    return sensors


__all__ = ["INFERENCE_BATCHES", "SensorSettings", "build_sensors"]
