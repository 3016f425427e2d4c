"""Failed ticks of the other sensors and schedules, read from the instance's tick history with a cursor.

No Dagster primitive alerts on a failed sensor tick, so the tick watchers read the history themselves:
for each sensor and schedule of this code location, the ticks finished since the cursor, oldest first.
A failed tick after ticks that did not fail starts a *failure streak* and is reported; further failed
ticks of the same streak are not (a sensor failing every 5 s would otherwise send 720 messages an
hour); the first successful or skipped tick ends the streak, so the next failure is reported again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg

# Internals: tick and instigator states have no public home in Dagster 1.13 (the UI reads them the
# same way, through the instance's schedule storage).
from dagster._core.scheduler.instigation import InstigatorState, InstigatorTick, InstigatorType, TickStatus
from dagster_shared.error import SerializableErrorInfo

# A tick still STARTED after this long was abandoned (a daemon killed mid-tick): read past it.
ABANDONED_SECONDS = 600.0
# Ticks read per instigator and evaluation; more only after a long pause of the watcher (the newest win).
TICKS_PER_READ = 200


@dataclass
class Position:
    """How far one instigator's ticks were read, and whether its last finished tick failed."""

    tick_id: int = 0
    timestamp: float = 0.0
    failing: bool = False


@dataclass
class TickCursor:
    """The watcher's cursor: when watching began, and each instigator's position (by selector id)."""

    start: float
    positions: dict[str, Position] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None, *, start: float) -> TickCursor:
        """The stored cursor; none yet: watch ticks from `start` on (when the watcher was switched on)."""
        if not text:
            return cls(start=start)
        data = json.loads(text)
        return cls(
            start=float(data["start"]),
            positions={
                key: Position(int(i), float(ts), bool(f)) for key, (i, ts, f) in data["positions"].items()
            },
        )

    def dump(self) -> str:
        return json.dumps(
            {
                "start": self.start,
                "positions": {
                    key: [p.tick_id, p.timestamp, p.failing] for key, p in sorted(self.positions.items())
                },
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class FailedTick:
    """The first failed tick of a failure streak."""

    state: InstigatorState
    tick: InstigatorTick

    @property
    def kind(self) -> str:
        return "schedule" if self.state.instigator_type == InstigatorType.SCHEDULE else "sensor"

    @property
    def error(self) -> SerializableErrorInfo | None:
        return self.tick.error


def watched_instigators(context: dg.SensorEvaluationContext) -> list[InstigatorState]:
    """The sensors and schedules of the watcher's own code location, except the watcher itself."""
    origin = context.code_location_origin
    location = origin.location_name if origin is not None else None
    return [
        state
        for state in context.instance.all_instigator_state()
        if state.instigator_type in (InstigatorType.SENSOR, InstigatorType.SCHEDULE)
        and state.instigator_name != context.sensor_name
        and state.origin.repository_origin.repository_name == context.repository_name
        and (location is None or state.repository_selector.location_name == location)
    ]


def new_failure_streaks(
    instance: dg.DagsterInstance, states: Sequence[InstigatorState], cursor: TickCursor, now: float
) -> tuple[list[FailedTick], TickCursor]:
    """The failure streaks begun since `cursor`, and the cursor past every finished tick read."""
    found: list[FailedTick] = []
    positions = dict(cursor.positions)
    for state in states:
        at = positions.get(state.selector_id) or Position(timestamp=cursor.start)
        at = Position(at.tick_id, at.timestamp, at.failing)
        # `after` is exclusive and stored with less precision than floats: read a second early, drop by id.
        ticks = instance.get_ticks(
            state.instigator_origin_id, state.selector_id, after=at.timestamp - 1, limit=TICKS_PER_READ
        )
        for tick in sorted(ticks, key=lambda t: (t.timestamp, t.tick_id)):
            if tick.tick_id <= at.tick_id or tick.timestamp < cursor.start:
                continue
            if tick.status == TickStatus.STARTED and now - tick.timestamp < ABANDONED_SECONDS:
                break  # still running: read it, and whatever follows, next time
            if tick.status == TickStatus.FAILURE:
                if not at.failing:
                    found.append(FailedTick(state, tick))
                at.failing = True
            elif tick.status in (TickStatus.SUCCESS, TickStatus.SKIPPED):
                at.failing = False
            at.tick_id, at.timestamp = tick.tick_id, tick.timestamp
        positions[state.selector_id] = at
    return found, TickCursor(start=cursor.start, positions=positions)
