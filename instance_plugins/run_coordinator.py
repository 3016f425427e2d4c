"""Idempotent launches: the same idempotency key never starts a second run.

ADF retries a Web activity whose response it did not get (timeout, 5xx, dropped connection), so a
launch Dagster already accepted can arrive again. dagster-graphql 1.13 offers no idempotency of its
own (its `ExecutionMetadata` input has no `runId`; a run id can only be chosen through Python), so
the instance's run coordinator provides it: a run tagged with an idempotency key (ADF's pipeline run
id, tag `adf/pipeline_run_id`) is queued only if no run with that key has been queued before. A
duplicate is deleted before it is queued, and the launch answers with the run that was queued first
(`LaunchRunSuccess` carrying that run's id), so the caller simply goes on polling it.

Configured in the instance's `dagster.yaml` (instance/production/dagster.yaml) in place of
`QueuedRunCoordinator`, with the same settings plus `idempotency_tag`.

Orphaned launches: a run left STARTING by a launcher that died mid-launch (a SIGKILLed daemon; see
instance_plugins.warm_launcher `orphan_reason`) is put back in the queue, so the next daemon launches
it. The daemon reads the queue settings (`get_run_queue_config`) at every dequeue iteration; that is
when the coordinator looks, at most every `ORPHAN_CHECK_SECONDS`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, Self, cast

import dagster as dg

from instance_plugins.dagster_internals import ConfigurableClassData, RunQueueConfig, UserConfigSchema
from instance_plugins.warm_launcher import orphan_reason

DEFAULT_IDEMPOTENCY_TAG = "adf/pipeline_run_id"
ORPHAN_CHECK_SECONDS = 5.0


class IdempotentQueuedRunCoordinator(dg.QueuedRunCoordinator):
    """QueuedRunCoordinator that queues at most one run per value of the idempotency tag.

    "First queued wins": a run whose key already belongs to a queued (or later) run is a duplicate.
    Submissions in one process are serialized by a lock, so concurrent duplicates through one
    webserver are resolved exactly. Across several webserver replicas two duplicates arriving within
    the same few milliseconds could both be queued; ADF cannot produce that (it retries an activity
    only after the previous attempt ended, at least 30 s apart).
    """

    def __init__(self, idempotency_tag: str = DEFAULT_IDEMPOTENCY_TAG, **kwargs: Any) -> None:
        self._idempotency_tag = idempotency_tag
        self._submit_lock = threading.Lock()
        self._orphans_checked = 0.0
        super().__init__(**kwargs)

    @property
    def idempotency_tag(self) -> str:
        return self._idempotency_tag

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
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        # The parent builds `cls` from its own settings; the tag is ours to add.
        coordinator = super().from_config_value(inst_data, config_value)
        coordinator._idempotency_tag = config_value.get("idempotency_tag", DEFAULT_IDEMPOTENCY_TAG)
        return coordinator

    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        run = context.dagster_run
        key = run.tags.get(self._idempotency_tag)
        if not key:
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
                return super().submit_run(context)
            first = earlier[0]
            # Never queued, so nothing ran: removing it leaves exactly one run for this key.
            self._instance.delete_run(run.run_id)
            self._logger.info(
                f"Launch with {self._idempotency_tag}={key} was already accepted as run {first.run_id}; "
                f"dropped duplicate run {run.run_id}."
            )
            return first

    def get_run_queue_config(self) -> RunQueueConfig:
        # Called by the daemon at every dequeue iteration, before it reads the queue.
        self._requeue_orphaned_launches()
        return super().get_run_queue_config()

    def _requeue_orphaned_launches(self) -> None:
        now = time.time()
        if now - self._orphans_checked < ORPHAN_CHECK_SECONDS:
            return
        self._orphans_checked = now
        try:
            starting = self._instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING]))
            for stale in starting:
                run = self._instance.get_run_by_id(stale.run_id)  # as of now, not as of the listing
                reason = orphan_reason(run, time.time()) if run is not None else None
                if run is None or reason is None:
                    continue
                self._instance.report_engine_event(
                    f"Putting the run back in the queue: {reason}.", run, cls=self.__class__
                )
                self._instance.report_dagster_event(dg.DagsterEvent.job_enqueue(run), run_id=run.run_id)
        except Exception:  # the queue must go on even if this check cannot
            self._logger.exception("Could not check for runs orphaned in STARTING")
