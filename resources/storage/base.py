"""The object-storage concern: one abstract resource, a local and an Azure Blob implementation."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg

TRANSFER_THREADS = 8  # parallel object transfers: many small blobs are latency-bound, not bandwidth-bound


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int
    etag: str
    last_modified: datetime


class ObjectNotFound(KeyError):
    def __init__(self, store: str, name: str) -> None:
        self.name = name
        super().__init__(f"{name!r} does not exist in {store}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class ObjectStore(dg.ConfigurableResource, ABC):
    """Where the pipeline's data lives: raw files, models, inference batches, predictions.

    Every write is atomic: readers see the old object or the new one, never a partial one.
    """

    @abstractmethod
    def describe(self) -> str:
        """Human-readable location, for logs and errors (never includes secrets)."""

    @abstractmethod
    def uri(self, name: str) -> str:
        """A URI for `name` that a person or remote compute can use."""

    @abstractmethod
    def put_bytes(self, name: str, data: bytes) -> ObjectInfo: ...

    @abstractmethod
    def put_file(self, name: str, path: Path) -> ObjectInfo: ...

    @abstractmethod
    def get_bytes(self, name: str) -> bytes: ...

    @abstractmethod
    def download_file(self, name: str, path: Path) -> None: ...

    @abstractmethod
    def info(self, name: str) -> ObjectInfo | None:
        """Size, etag and last-modified of `name`, or None when it does not exist."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose name starts with `prefix`, in lexicographic name order."""

    @abstractmethod
    def list_dirs(self, prefix: str = "") -> Iterator[str]:
        """The immediate 'sub-folders' under `prefix` (names ending in '/'), without recursing."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Delete `name`; deleting a missing object is not an error."""

    # Conveniences shared by every implementation.
    def exists(self, name: str) -> bool:
        return self.info(name) is not None

    def put_json(self, name: str, value: Any) -> ObjectInfo:
        return self.put_bytes(name, json.dumps(value, indent=2, sort_keys=True).encode())

    def get_json(self, name: str) -> Any:
        return json.loads(self.get_bytes(name))

    def upload_dir(self, local_dir: Path, prefix: str, *, last: tuple[str, ...] = ()) -> list[ObjectInfo]:
        """Upload a directory tree under `prefix`; files named in `last` go last (e.g. a manifest)."""
        files = sorted(p for p in local_dir.rglob("*") if p.is_file())
        rel = [p.relative_to(local_dir).as_posix() for p in files]
        base = prefix.rstrip("/") + "/"
        first = [i for i in range(len(files)) if rel[i] not in last]
        final = sorted((i for i in range(len(files)) if rel[i] in last), key=lambda i: last.index(rel[i]))
        with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
            uploaded = list(pool.map(lambda i: self.put_file(base + rel[i], files[i]), first))
        return uploaded + [self.put_file(base + rel[i], files[i]) for i in final]

    def download_prefix(self, prefix: str, local_dir: Path) -> list[Path]:
        """Download every object under `prefix` into `local_dir`, keeping relative paths."""
        base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        names = [obj.name for obj in self.list(base)]

        def fetch(name: str) -> Path:
            target = local_dir / name[len(base) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            self.download_file(name, target)
            return target

        with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
            return list(pool.map(fetch, names))
