"""Publishing a job's outputs so that nothing half-written is ever visible.

Each workload task writes a completion marker last into its output folder (`train`: metrics.json,
`score`: summary.json, `ingest`: _manifest.json): whoever sees the marker may read the whole folder.
Every backend keeps that promise when it moves outputs into place: the markers go last.
"""

from __future__ import annotations

from pathlib import Path

from resources.storage import ObjectInfo, ObjectStore

# The marker each workload task writes last into its output folder.
MARKER_OF_TASK = {"train": "metrics.json", "score": "summary.json", "ingest": "_manifest.json"}
COMPLETION_MARKERS = tuple(MARKER_OF_TASK.values())


def publish_dir(store: ObjectStore, local_dir: Path, prefix: str) -> list[ObjectInfo]:
    """Upload a job's local output folder under `prefix`, completion markers last."""
    return store.upload_dir(local_dir, prefix, last=COMPLETION_MARKERS)


def copy_prefix(store: ObjectStore, source: str, target: str) -> None:
    """Copy every object under `source` to `target` within `store`, completion markers last."""
    base = source.rstrip("/") + "/"
    names = [o.name for o in store.list(base)]
    markers = {base + m: i for i, m in enumerate(COMPLETION_MARKERS)}
    for name in sorted(names, key=lambda n: (n in markers, markers.get(n, 0))):
        store.put_bytes(f"{target.rstrip('/')}/{name[len(base) :]}", store.get_bytes(name))


def completion_marker(task: str) -> str:
    """The file `task` writes last into its output folder."""
    return MARKER_OF_TASK[task]


def is_complete(store: ObjectStore, prefix: str, task: str) -> bool:
    """Whether the output folder `prefix` of a `task` job holds that task's completion marker."""
    return store.exists(f"{prefix.rstrip('/')}/{completion_marker(task)}")
