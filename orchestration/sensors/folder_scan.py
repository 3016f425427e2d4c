"""Finding complete folders (inference batches, training sets) under a prefix, tick after tick.

Two ways, one cursor format, one notion of completeness and version (`orchestration.sensors.completeness`):

- listing: each tick lists the folders whose name starts with today's or yesterday's UTC date
  (`2026-11-22-...`) with one flat listing per day, so its cost follows what landed recently, not the
  history kept in the container. A full pass (the folder names under the prefix, then one listing per
  folder not seen before, plus a few done folders in rotation to notice re-uploads) runs every tick
  while it is cheap, and every `full_pass_seconds` once the container has grown so large that it is not;
- events: Event Grid BlobCreated events from a storage queue say which folders changed; only those
  are listed. Messages are acknowledged (deleted) on the *next* tick, i.e. only once the run requests
  they caused have been recorded with the cursor; a crash in between makes them reappear, and the run
  keys make the replay harmless.

What was requested already is not kept in the cursor for every folder ever seen (that would grow with
the history, and Dagster stores the cursor with every tick): the cursor remembers the most recent
requests, and the `Ledger` reads older ones from Dagster's own run records (their run keys) when needed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from resources.blob_events import BLOB_CREATED, BlobEventQueue, MalformedEvent, parse_events
from resources.storage import ObjectInfo, ObjectStore

from .completeness import BatchRules, BatchState, assess, basename, batch_id_problem

CURSOR_VERSION = 2
CHEAP_POLL_SECONDS = 0.5  # re-poll within a tick only while the dated listing costs less than this
CHEAP_FULL_PASS_SECONDS = 0.5  # a full pass this cheap runs on every tick
RECENT_LIMIT = 1000  # requests remembered in the cursor; older ones are in the ledger
REJECTED_LIMIT = 1000
RECENT_DAYS = 2  # dated folders of today and yesterday (UTC) are listed on every tick


@dataclass
class WatchCursor:
    recent: dict[str, str] = field(default_factory=dict)  # folder -> version last requested, oldest first
    rejected: dict[str, str] = field(default_factory=dict)  # folder -> why it cannot become a run
    waiting: list[str] = field(default_factory=list)  # events mode: folders to look at again
    rotation: str = ""  # listing mode: last done folder re-checked
    ack: list[tuple[str, str]] = field(default_factory=list)  # events mode: (message id, pop receipt)
    full_pass_at: float = 0.0  # listing mode: when the last full pass ran (epoch seconds)
    full_pass_seconds: float = 0.0  # ... and what it cost

    @classmethod
    def parse(cls, raw: str | None) -> WatchCursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        version = data.get("v")
        if version not in (1, CURSOR_VERSION):
            raise ValueError(
                f"sensor cursor version {version!r} is not {CURSOR_VERSION}; reset the sensor cursor"
            )
        # Version 1 kept every folder in `done`: keep the newest as recent, the ledger knows the rest.
        recent = dict(data.get("recent", data.get("done", {})))
        cursor = cls(
            recent=dict(list(recent.items())[-RECENT_LIMIT:]),
            rejected=dict(data.get("rejected", {})),
            waiting=list(data.get("waiting", [])),
            rotation=str(data.get("rotation", "")),
            ack=[(str(a), str(b)) for a, b in data.get("ack", [])],
            full_pass_at=float(data.get("full_pass_at", 0.0)),
            full_pass_seconds=float(data.get("full_pass_seconds", 0.0)),
        )
        return cursor

    def dump(self) -> str:
        return json.dumps(
            {"v": CURSOR_VERSION, "recent": self.recent, "rejected": self.rejected, "waiting": self.waiting,
             "rotation": self.rotation, "ack": self.ack, "full_pass_at": round(self.full_pass_at, 3),
             "full_pass_seconds": round(self.full_pass_seconds, 3)},
            separators=(",", ":"),
        )  # fmt: skip

    def remember(self, folder: str, version: str) -> None:
        self.recent.pop(folder, None)
        self.recent[folder] = version
        while len(self.recent) > RECENT_LIMIT:
            del self.recent[next(iter(self.recent))]

    def reject(self, folder: str, problem: str) -> None:
        self.rejected[folder] = problem
        while len(self.rejected) > REJECTED_LIMIT:
            del self.rejected[next(iter(self.rejected))]


class Ledger:
    """Which versions of which folders have been requested, from run keys `<prefix><folder>@<version>`.

    Loaded at most once per tick, and only when a tick needs more than the cursor's recent requests.
    """

    def __init__(self, load: Callable[[], Iterable[str]] | None = None) -> None:
        self._load = load
        self._versions: dict[str, set[str]] | None = None

    def _all(self) -> dict[str, set[str]]:
        if self._versions is None:
            self._versions = {}
            for key in self._load() if self._load else ():
                folder, at, version = key.rpartition("@")
                if at:
                    self._versions.setdefault(folder, set()).add(version)
        return self._versions

    def knows(self, folder: str) -> bool:
        return folder in self._all()

    def requested(self, folder: str, version: str) -> bool:
        return version in self._all().get(folder, ())

    def folders(self) -> set[str]:
        return set(self._all())


@dataclass
class TickPlan:
    ready: list[BatchState]  # complete folders whose version has not been requested yet
    notes: list[str]  # why nothing (more) happened: incomplete folders, rejections, deferrals
    cursor: WatchCursor
    ledger: Ledger = field(default_factory=Ledger)
    listings: int = 0  # storage list requests made (for the benchmark)
    messages: int = 0
    full_pass: bool = False


def _look(store: ObjectStore, prefix: str, folder: str, rules: BatchRules, now: datetime) -> BatchState:
    return assess(folder, store.list(f"{prefix}{folder}/"), rules, now)


def _requested(plan: TickPlan, state: BatchState) -> bool:
    if plan.cursor.recent.get(state.batch_id) == state.version:
        return True
    return plan.ledger.requested(state.batch_id, state.version)


def _consider(plan: TickPlan, state: BatchState, waiting: list[str] | None = None) -> None:
    notes = plan.notes if waiting is None else waiting
    if state.complete and state.files == 0:
        # A marker alone: a run would fail on a folder with nothing in it. Files landing later change
        # the folder's version, and it becomes a run then.
        notes.append(f"{state.batch_id}: complete ({state.reason}), but it holds no data files: no run")
    elif state.complete and not _requested(plan, state):
        plan.ready.append(state)
        plan.cursor.remember(state.batch_id, state.version)
    elif not state.complete:
        notes.append(f"{state.batch_id}: {state.reason}")


def _reject_if_bad(plan: TickPlan, folder: str) -> bool:
    problem = batch_id_problem(folder)
    if problem is None:
        return False
    if plan.cursor.rejected.get(folder) != problem:
        plan.cursor.reject(folder, problem)
        plan.notes.append(f"{folder[:80]!r} ignored: {problem}")
    return True


def recent_days(now: datetime) -> list[str]:
    """Date prefixes whose folders are listed on every tick: today and yesterday, UTC."""
    return sorted({(now - timedelta(days=d)).strftime("%Y-%m-%d") for d in range(RECENT_DAYS)})


def _dated_round(
    plan: TickPlan, store: ObjectStore, prefix: str, rules: BatchRules, now: datetime,
    seen: set[str], waiting: list[str],
) -> None:  # fmt: skip
    """One flat listing per recent day: every object of every folder named after that day."""
    for day in recent_days(now):
        by_folder: dict[str, list[ObjectInfo]] = {}
        for obj in store.list(f"{prefix}{day}"):
            folder, sep, rest = obj.name[len(prefix) :].partition("/")
            if sep and rest:
                by_folder.setdefault(folder, []).append(obj)
        plan.listings += 1 + sum(map(len, by_folder.values())) // 5000
        for folder, objects in sorted(by_folder.items()):
            seen.add(folder)
            if not _reject_if_bad(plan, folder):
                _consider(plan, assess(folder, objects, rules, now), waiting)


def scan_listing(
    store: ObjectStore, prefix: str, rules: BatchRules, cursor: WatchCursor, *, max_folders: int, rotate: int,
    ledger: Ledger | None = None, now: datetime | None = None, long_poll_seconds: float = 0.0,
    full_pass_seconds: float = 60.0,
) -> TickPlan:  # fmt: skip
    fixed_now = now
    deadline = time.monotonic() + long_poll_seconds
    plan = TickPlan([], [], cursor, ledger or Ledger())
    fresh: list[str] = []
    folders: list[str] = []
    while True:
        started = time.monotonic()
        waiting: list[str] = []  # incomplete folders seen in this round
        seen: set[str] = set()
        _dated_round(plan, store, prefix, rules, fixed_now or datetime.now(UTC), seen, waiting)
        dated_cost = time.monotonic() - started
        if (
            cursor.full_pass_seconds < CHEAP_FULL_PASS_SECONDS
            or time.time() - cursor.full_pass_at >= full_pass_seconds
        ):
            pass_started = time.monotonic()
            plan.full_pass = True
            folders = [d[len(prefix) : -1] for d in store.list_dirs(prefix)]
            plan.listings += 1 + len(folders) // 5000
            fresh = [
                f for f in folders
                if f not in seen and f not in cursor.recent and not plan.ledger.knows(f)
                and not _reject_if_bad(plan, f)
            ]  # fmt: skip
            for folder in fresh[:max_folders]:
                _consider(plan, _look(store, prefix, folder, rules, fixed_now or datetime.now(UTC)), waiting)
                plan.listings += 1
            cursor.full_pass_at = time.time()
            cursor.full_pass_seconds = time.monotonic() - pass_started
        # Long-poll while it is cheap (small containers, few open folders): a marker that lands during
        # the tick is seen at once instead of on the next tick, seconds later.
        # (The full pass joins later rounds only while it is cheap too; at scale the dated listing alone
        # keeps long-polling, so dated batches are seen within a second however large the container.)
        if plan.ready or time.monotonic() >= deadline or dated_cost > CHEAP_POLL_SECONDS:
            plan.notes.extend(waiting)
            break
        time.sleep(0.3)
    if len(fresh) > max_folders:
        plan.notes.append(
            f"{len(fresh) - max_folders} more folder(s) to look at on the next tick (cap {max_folders})"
        )
    if plan.full_pass and rotate:
        _rotate(plan, store, prefix, rules, folders, rotate, fixed_now)
    elif not plan.full_pass:
        plan.notes.append(
            f"full pass over every folder skipped: the last one took {cursor.full_pass_seconds:.1f} s; "
            f"next within {full_pass_seconds:g} s of it (folders named after today's date are seen at once)"
        )
    return plan


def _rotate(
    plan: TickPlan, store: ObjectStore, prefix: str, rules: BatchRules, folders: list[str], rotate: int,
    fixed_now: datetime | None,
) -> None:  # fmt: skip
    """Re-check a few done folders, in rotation, to notice re-uploads without listing everything."""
    requested = plan.ledger.folders() | set(plan.cursor.recent)
    done = sorted(f for f in folders if f in requested)
    if not done:
        return
    start = next((i for i, f in enumerate(done) if f > plan.cursor.rotation), 0)
    picked = (done[start:] + done[:start])[: min(rotate, len(done))]
    for folder in picked:
        _consider(plan, _look(store, prefix, folder, rules, fixed_now or datetime.now(UTC)))
        plan.listings += 1
    plan.cursor.rotation = picked[-1]


def scan_events(
    store: ObjectStore, queue: BlobEventQueue, container: str | None, prefix: str, rules: BatchRules,
    cursor: WatchCursor, *, max_messages: int, long_poll_seconds: float, now: datetime | None = None,
    ledger: Ledger | None = None,
) -> TickPlan:  # fmt: skip
    plan = TickPlan([], [], cursor, ledger or Ledger())
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
