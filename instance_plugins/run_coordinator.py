"""The instance's run coordinator: every launch (UI, GraphQL/ADF, sensors, backfills) is submitted here.

It is Dagster's `QueuedRunCoordinator` plus what must hold for every launch, whoever makes it:

- **Idempotent launches.** ADF retries a Web activity whose response it did not get (timeout, 5xx,
  dropped connection), so a launch Dagster already accepted can arrive again. dagster-graphql 1.13
  offers no idempotency of its own (its `ExecutionMetadata` input has no `runId`), so a run tagged
  with an idempotency key (ADF's pipeline run id, tag `adf/pipeline_run_id`) is queued only if no run
  with that key has been queued before. A duplicate that asks for the same thing (job, assets,
  partition, run config) is deleted before it is queued, and the launch answers with the run queued
  first (`LaunchRunSuccess` carrying that run's id), so the caller simply goes on polling it. A launch
  that reuses a key for something else is refused. A re-execution inherits its parent's key and is
  queued as the new launch it is.
- **Partitions checked at launch.** A run that materializes a partitioned asset must name one of its
  partitions (tag `dagster/partition`) that exists; Dagster itself notices only when a step writes its
  output, after the work is done.
- **Concurrency pools' limits from the code location, or dagster.yaml.** Dagster keeps a pool's limit
  in storage, set by hand (`dagster instance concurrency set`, or the UI). Before a run is queued, the
  limit of each pool its steps use is set from the step's tag `mnist/pool_limit` (the code location's
  settings: one pool per compute target, orchestration/step_policies.py), or from `pool_limits` here
  for a pool named there (the instance's word wins), so the daemon dequeues runs within them.
- **No automatic retry of a run stopped at its maximum runtime.** Run retries (`run_retries` in
  dagster.yaml) are for runs whose worker died; run monitoring marks a run that exceeded its
  `dagster/max_runtime` FAILED without a reason Dagster's retry rules recognise, so the daemon would
  start the work again. Such a retry is refused here: the run, and its remote job, stay stopped.
- **Orphaned launches re-queued.** A run left STARTING by a launcher that died mid-launch (a
  SIGKILLed daemon; see instance_plugins.warm_launcher `orphan_reason`) is put back in the queue, so the
  next daemon launches it. The daemon reads the queue settings (`get_run_queue_config`) at every
  dequeue iteration; that is when the coordinator looks, at most every `ORPHAN_CHECK_SECONDS`.

A refused launch leaves no run (Dagster itself still records its refusal event under the run's id).
GraphQL callers get `PythonError` with `className: LaunchRefused` and the reason as its message (HTTP
200, no stack); the UI shows that message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, NoReturn, Self, cast

import dagster as dg

from instance_plugins.dagster_internals import (
    ConfigurableClassData,
    RunQueueConfig,
    UserConfigSchema,
    has_partition,
    launch_refusal,
    partitions_of_run_assets,
    pool_limits,
    set_pool_limit,
)
from instance_plugins.warm_launcher import orphan_reason

DEFAULT_IDEMPOTENCY_TAG = "adf/pipeline_run_id"
ORPHAN_CHECK_SECONDS = 5.0
# When this process started (the coordinator is loaded with the instance): in the daemon, when it started.
PROCESS_STARTED = time.time()
PARTITION_TAG = "dagster/partition"
PARTITION_RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
REFUSED = "LaunchRefused"
# One lock per process, not per coordinator: Dagster builds an instance's coordinator lazily, without a
# lock, so the first launches arriving together in a fresh webserver can each get a coordinator of
# their own; a lock per coordinator would then let simultaneous duplicates through.
SUBMIT_LOCK = threading.Lock()
POOL_LIMIT_TAG = "mnist/pool_limit"  # a step's pool's limit, as the code location declares it
# Dagster's tags for automatic run retries: the retry's number, and on the failed run the retry's id.
RETRY_NUMBER_TAG = "dagster/retry_number"
AUTO_RETRY_RUN_ID_TAG = "dagster/auto_retry_run_id"
MAX_RUNTIME_CANCEL = "Canceling due to exceeding maximum runtime"  # run monitoring's words (RUN_CANCELING)


class IdempotentQueuedRunCoordinator(dg.QueuedRunCoordinator):
    """QueuedRunCoordinator that refuses launches bound to fail and queues one run per idempotency key.

    "First queued wins": a run whose key already belongs to a queued (or later) run is a duplicate.
    Submissions in one process are serialized by a lock, so concurrent duplicates through one
    webserver are resolved exactly. Across several webserver replicas two duplicates arriving within
    the same few milliseconds could both be queued; ADF cannot produce that (it retries an activity
    only after the previous attempt ended, at least 30 s apart).
    """

    def __init__(
        self,
        idempotency_tag: str = DEFAULT_IDEMPOTENCY_TAG,
        pool_limits: Mapping[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        self._idempotency_tag = idempotency_tag
        self._pool_limits = dict(pool_limits or {})
        self._submit_lock = SUBMIT_LOCK
        self._orphans_checked = 0.0
        super().__init__(**kwargs)

    @property
    def idempotency_tag(self) -> str:
        return self._idempotency_tag

    @property
    def pool_limits(self) -> Mapping[str, int]:
        """The concurrency pools' limits this instance sets (pools not named keep theirs)."""
        return dict(self._pool_limits)

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        parent = cast("Mapping[str, Any]", super().config_type())  # a dict of Fields
        return {
            **parent,
            "idempotency_tag": dg.Field(
                dg.StringSource,
                is_required=False,
                default_value=DEFAULT_IDEMPOTENCY_TAG,
                description="Run tag whose value identifies one logical launch (ADF's pipeline run id).",
            ),
            "pool_limits": dg.Field(
                dg.Map(str, int),
                is_required=False,
                default_value={},
                description="Concurrency pool -> how many runs using it may be in progress at once "
                "(with `concurrency: pools: granularity: run`); set in storage before a run is queued.",
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        # The parent builds `cls` from its own settings; ours are added after.
        coordinator = super().from_config_value(inst_data, config_value)
        coordinator._idempotency_tag = config_value.get("idempotency_tag", DEFAULT_IDEMPOTENCY_TAG)
        limits = dict(config_value.get("pool_limits") or {})
        # 1000: Dagster's largest pool limit (DAGSTER_MAX_GLOBAL_OP_CONCURRENCY_LIMIT's default).
        bad = {pool: limit for pool, limit in limits.items() if not 0 <= limit <= 1000}
        if bad:
            raise dg.DagsterInvalidConfigError(
                f"run_coordinator.config.pool_limits in dagster.yaml: each limit must be a whole number "
                f"from 0 to 1000, found {bad}",
                [],
                None,
            )
        coordinator._pool_limits = limits
        return coordinator

    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        run = context.dagster_run
        key = run.tags.get(self._idempotency_tag)
        # A re-execution (from the UI, or a run retry) inherits its parent's tags, key included, but is
        # a launch of its own: someone asked for it again on purpose.
        if run.parent_run_id and RETRY_NUMBER_TAG in run.tags:
            self._refuse_retry_after_timeout(run)
        if not key or run.parent_run_id:
            self._check_partitions(context)
            self._apply_pool_limits(run)
            return super().submit_run(context)
        with self._submit_lock:
            earlier = [
                other
                for other in self._instance.get_runs(
                    dg.RunsFilter(tags={self._idempotency_tag: key}), ascending=True
                )
                if other.run_id != run.run_id and other.status != dg.DagsterRunStatus.NOT_STARTED
            ]
            if not earlier:
                self._check_partitions(context)
                self._apply_pool_limits(run)
                return super().submit_run(context)
            first = earlier[0]
            differences = launch_differences(first, run)
            if differences:
                self._refuse(
                    run,
                    f"The launch of {describe_launch(run)} carries {self._idempotency_tag}={key}, which "
                    f"already identifies the launch of {describe_launch(first)} (run {first.run_id}); "
                    f"they differ in {'; '.join(differences)}. A key names one launch: give this launch "
                    "a key of its own.",
                )
            # Never queued, so nothing ran: removing it leaves exactly one run for this key.
            self._instance.delete_run(run.run_id)
            self._logger.info(
                f"Launch with {self._idempotency_tag}={key} was already accepted as run {first.run_id}; "
                f"dropped duplicate run {run.run_id}."
            )
            return first

    def _refuse_retry_after_timeout(self, run: dg.DagsterRun) -> None:
        """Refuse the daemon's automatic retry of a run that run monitoring stopped at its max runtime."""
        parent = self._instance.get_run_by_id(run.parent_run_id or "")
        if parent is None or parent.tags.get(AUTO_RETRY_RUN_ID_TAG) != run.run_id:
            return  # not the daemon's retry of that run (a re-execution by hand is someone's decision)
        canceling = self._instance.get_records_for_run(
            parent.run_id, of_type=dg.DagsterEventType.RUN_CANCELING
        ).records
        if any(MAX_RUNTIME_CANCEL in (r.event_log_entry.message or "") for r in canceling):
            limit = parent.tags.get("dagster/max_runtime", "?")
            self._refuse(
                run,
                f"Not retrying run {parent.run_id} automatically: it was stopped at its maximum runtime "
                f"(dagster/max_runtime={limit} s) and its remote job cancelled; a retry would start the "
                "work again. Re-execute it by hand to try again.",
            )

    def _check_partitions(self, context: dg.SubmitRunContext) -> None:
        """Refuse a run of partitioned assets that names no partition, or one that does not exist."""
        run = context.dagster_run
        if context.workspace is None:  # a Python caller without a workspace: the assets check it themselves
            return
        partitioned = {
            key: definition
            for key, definition in partitions_of_run_assets(self._instance, run, context.workspace).items()
            if definition is not None
        }
        if not partitioned:
            return
        assets = ", ".join(key.to_user_string() for key in partitioned)
        definition = next(iter(partitioned.values()))
        keys = [run.tags[PARTITION_TAG]] if PARTITION_TAG in run.tags else []
        keys += [run.tags[t] for t in PARTITION_RANGE_TAGS if t in run.tags]
        if not keys:
            self._refuse(
                run,
                f"The launch of job {run.job_name} materializes {assets}, partitioned by "
                f"{_describe(definition)}, but names no partition: launch it with the tag "
                f"{PARTITION_TAG}=<partition key>, a partition that exists{_how_to_add(definition)}.",
            )
        missing = [k for k in keys if not has_partition(definition, k, self._instance)]
        if missing:
            self._refuse(
                run,
                f"The launch of job {run.job_name} asks for partition {missing[0]!r} of "
                f"{_describe(definition)} (the partitions of {assets}), which does not exist"
                f"{_how_to_add(definition, missing[0])}, then launch again.",
            )

    def _apply_pool_limits(self, run: dg.DagsterRun) -> None:
        wanted = {
            pool: (limit, "the code location's settings")
            for pool, limit in self._declared_limits(run).items()
        }
        wanted.update(
            {pool: (limit, "dagster.yaml pool_limits") for pool, limit in self._pool_limits.items()}
        )
        if not wanted:
            return
        current = pool_limits(self._instance)
        for pool, (limit, source) in wanted.items():
            if current.get(pool) != limit:
                self._set_pool_limit(pool, limit)
                self._logger.info(f"Concurrency pool {pool!r}: limit set to {limit} ({source}).")

    def _set_pool_limit(self, pool: str, limit: int) -> None:
        """Set a pool's limit in storage. Dagster creates a pool's row by select-then-insert, so another
        process creating the same row at the same moment (a launch in another webserver, the daemon
        giving a new pool its default) makes the insert fail once: then the row exists, try again."""
        from sqlalchemy.exc import IntegrityError

        for attempt in range(3):
            try:
                set_pool_limit(self._instance, pool, limit)
                return
            except IntegrityError:
                if attempt == 2:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _declared_limits(self, run: dg.DagsterRun) -> dict[str, int]:
        """Pool -> limit, from the `mnist/pool_limit` tags of the steps the run executes."""
        if run.execution_plan_snapshot_id is None:
            return {}
        plan = self._instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        limits: dict[str, int] = {}
        for step in plan.steps:
            value = (step.tags or {}).get(POOL_LIMIT_TAG)
            if step.pool and value and value.isdigit() and 0 <= int(value) <= 1000:
                limits[step.pool] = int(value)
        return limits

    def _refuse(self, run: dg.DagsterRun, message: str) -> NoReturn:
        # The run was created for this launch and never queued: it goes, so no run stands for a
        # launch that was refused.
        self._instance.delete_run(run.run_id)
        self._logger.warning(f"Refused launch (run {run.run_id} deleted): {message}")
        raise launch_refusal(REFUSED, message)

    def get_run_queue_config(self) -> RunQueueConfig:
        # Called by the daemon at every dequeue iteration, before it reads the queue.
        self._requeue_orphaned_launches()
        return super().get_run_queue_config()

    def _starting_since(self, run_id: str) -> float | None:
        """When the run was last marked STARTING (its RUN_STARTING event), if it was."""
        records = self._instance.get_records_for_run(
            run_id, None, dg.DagsterEventType.RUN_STARTING, 1, False
        ).records
        return records[0].timestamp if records else None

    def _requeue_orphaned_launches(self) -> None:
        now = time.time()
        if now - self._orphans_checked < ORPHAN_CHECK_SECONDS:
            return
        self._orphans_checked = now
        try:
            starting = self._instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING]))
            for stale in starting:
                run = self._instance.get_run_by_id(stale.run_id)  # as of now, not as of the listing
                reason = (
                    orphan_reason(run, time.time(), self._starting_since(run.run_id), PROCESS_STARTED)
                    if run is not None
                    else None
                )
                if run is None or reason is None:
                    continue
                self._instance.report_engine_event(
                    f"Putting the run back in the queue: {reason}.", run, cls=self.__class__
                )
                self._instance.report_dagster_event(dg.DagsterEvent.job_enqueue(run), run_id=run.run_id)
        except Exception:  # the queue must go on even if this check cannot
            self._logger.exception("Could not check for runs orphaned in STARTING")


def describe_launch(run: dg.DagsterRun) -> str:
    """A launch in words: job, asset selection, partition."""
    words = f"job {run.job_name}"
    if run.asset_selection:
        words += " for " + ", ".join(sorted(k.to_user_string() for k in run.asset_selection))
    partition = run.tags.get(PARTITION_TAG)
    return words + (f" with partition {partition!r}" if partition else " with no partition")


def launch_differences(first: dg.DagsterRun, other: dg.DagsterRun) -> list[str]:
    """How `other` asks for something else than `first`: job, assets, partition, run config."""
    differences = []
    if first.job_name != other.job_name:
        differences.append(f"job ({first.job_name} / {other.job_name})")
    if (first.asset_selection or frozenset()) != (other.asset_selection or frozenset()):
        differences.append("asset selection")
    for tag in (PARTITION_TAG, *PARTITION_RANGE_TAGS):
        if first.tags.get(tag) != other.tags.get(tag):
            differences.append(f"partition ({first.tags.get(tag)!r} / {other.tags.get(tag)!r})")
            break
    if dict(first.run_config or {}) != dict(other.run_config or {}):
        differences.append("run config")
    return differences


def _describe(definition: dg.PartitionsDefinition) -> str:
    if isinstance(definition, dg.DynamicPartitionsDefinition) and definition.name:
        return f"the dynamic partitions {definition.name!r}"
    return f"{type(definition).__name__}"


def _how_to_add(definition: dg.PartitionsDefinition, key: str = "<partition key>") -> str:
    if not (isinstance(definition, dg.DynamicPartitionsDefinition) and definition.name):
        return ""
    return (
        f" (add it first: the GraphQL mutation addDynamicPartition(partitionsDefName: "
        f'"{definition.name}", partitionKey: "{key}"), as the generated ADF pipelines do before they '
        f"launch; 'Add partition' in the UI's partition picker; or DagsterInstance.add_dynamic_partitions)"
    )
