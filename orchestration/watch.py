"""Finding complete folders (inference batches, training sets) under a prefix, tick after tick.

Two ways, one cursor format, one notion of completeness and version (`orchestration.batches`):

- listing: one hierarchical listing of the folder names under the prefix (names only: a few requests
  however many objects the folders hold), then one listing per folder that is new or still incomplete,
  plus a few already-done folders per tick in rotation so that a re-upload is noticed;
- events: Event Grid BlobCreated events from a storage queue say which folders changed; only those
  are listed. Messages are acknowledged (deleted) on the *next* tick, i.e. only once the run requests
  they caused have been recorded with the cursor; a crash in between makes them reappear, and the run
  keys make the replay harmless.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from resources.events import BLOB_CREATED, BlobEventQueue, MalformedEvent, parse_events
from resources.storage import ObjectStore

from .batches import BatchRules, BatchState, assess, basename, batch_id_problem

CURSOR_VERSION = 1
CHEAP_POLL_SECONDS = 0.5  # re-poll within a tick only while one listing round costs less than this


@dataclass
class WatchCursor:
    done: dict[str, str] = field(default_factory=dict)  # folder -> version last requested
    rejected: dict[str, str] = field(default_factory=dict)  # folder -> why it cannot become a run
    waiting: list[str] = field(default_factory=list)  # events mode: folders to look at again
    rotation: str = ""  # listing mode: last done folder re-checked
    ack: list[tuple[str, str]] = field(default_factory=list)  # events mode: (message id, pop receipt)

    @classmethod
    def parse(cls, raw: str | None) -> WatchCursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        if data.get("v") != CURSOR_VERSION:
            raise ValueError(
                f"sensor cursor version {data.get('v')!r} is not {CURSOR_VERSION}; reset the sensor cursor"
            )
        return cls(
            done=dict(data.get("done", {})),
            rejected=dict(data.get("rejected", {})),
            waiting=list(data.get("waiting", [])),
            rotation=str(data.get("rotation", "")),
            ack=[(str(a), str(b)) for a, b in data.get("ack", [])],
        )

    def dump(self) -> str:
        return json.dumps(
            {"v": CURSOR_VERSION, "done": self.done, "rejected": self.rejected, "waiting": self.waiting,
             "rotation": self.rotation, "ack": self.ack},
            sort_keys=True, separators=(",", ":"),
        )  # fmt: skip


@dataclass
class TickPlan:
    ready: list[BatchState]  # complete folders whose version has not been requested yet
    notes: list[str]  # why nothing (more) happened: incomplete folders, rejections, deferrals
    cursor: WatchCursor
    listings: int = 0  # storage list requests made (for the benchmark)
    messages: int = 0


def _look(store: ObjectStore, prefix: str, folder: str, rules: BatchRules, now: datetime) -> BatchState:
    return assess(folder, store.list(f"{prefix}{folder}/"), rules, now)


def _consider(plan: TickPlan, state: BatchState, waiting: list[str] | None = None) -> None:
    if state.complete and plan.cursor.done.get(state.batch_id) != state.version:
        plan.ready.append(state)
        plan.cursor.done[state.batch_id] = state.version
    elif not state.complete:
        (plan.notes if waiting is None else waiting).append(f"{state.batch_id}: {state.reason}")


def _reject_if_bad(plan: TickPlan, folder: str) -> bool:
    problem = batch_id_problem(folder)
    if problem is None:
        return False
    if plan.cursor.rejected.get(folder) != problem:
        plan.cursor.rejected[folder] = problem
        plan.notes.append(f"{folder[:80]!r} ignored: {problem}")
    return True


def scan_listing(
    store: ObjectStore, prefix: str, rules: BatchRules, cursor: WatchCursor, *, max_folders: int, rotate: int,
    now: datetime | None = None, long_poll_seconds: float = 0.0,
) -> TickPlan:  # fmt: skip
    fixed_now = now
    deadline = time.monotonic() + long_poll_seconds
    plan = TickPlan([], [], cursor)
    while True:
        started = time.monotonic()
        waiting: list[str] = []  # incomplete folders seen in this round
        folders = [d[len(prefix) : -1] for d in store.list_dirs(prefix)]
        plan.listings += 1 + len(folders) // 5000
        fresh = [f for f in folders if f not in cursor.done and not _reject_if_bad(plan, f)]
        for folder in fresh[:max_folders]:
            _consider(plan, _look(store, prefix, folder, rules, fixed_now or datetime.now(UTC)), waiting)
            plan.listings += 1
        # Long-poll while it is cheap (small containers, few open folders): a marker that lands during
        # the tick is seen at once instead of on the next tick, five seconds later.
        if plan.ready or time.monotonic() >= deadline or time.monotonic() - started > CHEAP_POLL_SECONDS:
            plan.notes.extend(waiting)
            break
        time.sleep(0.3)
    if len(fresh) > max_folders:
        plan.notes.append(
            f"{len(fresh) - max_folders} more folder(s) to look at on the next tick (cap {max_folders})"
        )
    # Re-check a few done folders per tick, in rotation, to notice re-uploads without listing everything.
    present = set(folders)
    done = sorted(f for f in cursor.done if f in present)
    if done and rotate:
        start = next((i for i, f in enumerate(done) if f > cursor.rotation), 0)
        picked = (done[start:] + done[:start])[: min(rotate, len(done))]
        for folder in picked:
            _consider(plan, _look(store, prefix, folder, rules, fixed_now or datetime.now(UTC)))
            plan.listings += 1
        cursor.rotation = picked[-1]
    return plan


def scan_events(
    store: ObjectStore, queue: BlobEventQueue, container: str | None, prefix: str, rules: BatchRules,
    cursor: WatchCursor, *, max_messages: int, long_poll_seconds: float, now: datetime | None = None,
) -> TickPlan:  # fmt: skip
    plan = TickPlan([], [], cursor)
    # 1. The previous tick's requests are recorded (we are running with its cursor): acknowledge.
    for message_id, receipt in cursor.ack:
        queue.delete(message_id, receipt)
    cursor.ack = []
    # 2. Wait briefly for events: sub-second reaction although the daemon ticks every few seconds.
    deadline = time.monotonic() + long_poll_seconds
    messages = queue.receive(max_messages)
    while not messages and not cursor.waiting and time.monotonic() < deadline:
        time.sleep(0.2)
        messages = queue.receive(max_messages)
    plan.messages = len(messages)
    now = now or datetime.now(UTC)
    touched: set[str] = set(cursor.waiting)
    for message in messages:
        cursor.ack.append((message.id, message.pop_receipt))
        try:
            events = parse_events(message.content)
        except MalformedEvent as exc:
            plan.notes.append(f"dropped malformed queue message {message.id}: {exc}")
            continue
        for event in events:
            if event.event_type != BLOB_CREATED or not event.name.startswith(prefix):
                continue
            if container and event.container != container:
                continue
            folder, sep, rest = event.name[len(prefix) :].partition("/")
            if not sep or not rest:
                continue
            if rules.quiet_seconds is None and basename(event.name) != rules.marker:
                continue  # marker mode: only the marker completes a folder
            if not _reject_if_bad(plan, folder):
                touched.add(folder)
    cursor.waiting = []
    for folder in sorted(touched):
        state = _look(store, prefix, folder, rules, now)
        plan.listings += 1
        _consider(plan, state)
        if not state.complete and rules.quiet_seconds is not None:
            cursor.waiting.append(folder)  # look again once the quiet period may have passed
    return plan
