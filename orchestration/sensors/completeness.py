"""When is a folder of blobs a complete batch, and which version of it is this? (Pure functions.)

Shared by the listing and the event sensors, so both modes agree on completeness and on run keys:
a run key is `<folder>@<version>`, the version a digest of the (name, etag) of every counted object,
so the same objects never trigger twice and any re-upload (new etag) triggers exactly once more.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

# The sensors refuse a folder by the rules the asset and the gateway apply (re-exported for folder_scan).
from assets.batch_ids import batch_id_problem as batch_id_problem
from resources.storage import ObjectInfo

TEMPORARY_SUFFIXES = (".tmp", ".temp", ".part", ".partial", "._COPYING_", ".crdownload", "~")
TEMPORARY_PREFIXES = (".", "~", "_")


@dataclass(frozen=True)
class BatchRules:
    """Completion rules: a marker object appears, or (when `quiet_seconds` is set) nothing new for that long."""

    marker: str = "_SUCCESS"
    quiet_seconds: float | None = None


@dataclass(frozen=True)
class BatchState:
    batch_id: str
    complete: bool
    version: str
    files: int
    reason: str


def basename(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def ignored(obj: ObjectInfo, rules: BatchRules) -> str | None:
    """Why an object does not count (None when it does). The marker always counts."""
    base = basename(obj.name)
    if base == rules.marker:
        return None
    if base.startswith(TEMPORARY_PREFIXES) or base.endswith(TEMPORARY_SUFFIXES):
        return "temporary name"
    if obj.size == 0:
        return "empty object"
    return None


def assess(batch_id: str, objects: Iterable[ObjectInfo], rules: BatchRules, now: datetime) -> BatchState:
    counted = sorted((o for o in objects if ignored(o, rules) is None), key=lambda o: o.name)
    marker = [o for o in counted if basename(o.name) == rules.marker]
    data = [o for o in counted if basename(o.name) != rules.marker]
    digest = hashlib.sha256("\n".join(f"{o.name}\t{o.etag}" for o in counted).encode()).hexdigest()[:16]
    if marker:
        return BatchState(batch_id, True, digest, len(data), f"{rules.marker} present")
    if rules.quiet_seconds is not None and data:
        idle = (now - max(o.last_modified for o in data)).total_seconds()
        if idle >= rules.quiet_seconds:
            return BatchState(batch_id, True, digest, len(data), f"no new object for {idle:.0f} s")
        return BatchState(
            batch_id, False, digest, len(data), f"files still arriving (last write {idle:.0f} s ago)"
        )
    return BatchState(batch_id, False, digest, len(data), f"waiting for {rules.marker}")


def run_key(folder: str, state: BatchState) -> str:
    return f"{folder}@{state.version}"
