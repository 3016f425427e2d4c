"""Object storage in a local directory: the embedded default."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from .base import ObjectInfo, ObjectNotFound, ObjectStore
from .names import STAGING_DIR, validate_name, validate_prefix


class LocalObjectStore(ObjectStore):
    """Objects are files under `root`. Writes go to `root/.staging` and are renamed into place."""

    root: str

    def describe(self) -> str:
        return f"local directory {self._root()}"

    def uri(self, name: str) -> str:
        return self._path(name).as_uri()

    def _root(self) -> Path:
        return Path(self.root).expanduser().resolve()

    def _path(self, name: str) -> Path:
        path = self._root() / validate_name(name)
        # Defence in depth: validation already refuses '..', this refuses symlink tricks.
        if not path.resolve().is_relative_to(self._root()):
            raise ValueError(f"object name {name!r} resolves outside the storage root")
        return path

    def _info(self, name: str, st: os.stat_result) -> ObjectInfo:
        # A rename-into-place gives a new inode, so the etag changes on every write, as on Azure.
        etag = f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"'
        return ObjectInfo(name, st.st_size, etag, datetime.fromtimestamp(st.st_mtime, UTC))

    def _commit(self, name: str, write: Callable[[Path], None]) -> ObjectInfo:
        target = self._path(name)
        staging = self._root() / STAGING_DIR
        staging.mkdir(parents=True, exist_ok=True)
        tmp = staging / f"{uuid.uuid4().hex}.part"
        try:
            write(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        return self._info(name, target.stat())

    def put_bytes(self, name: str, data: bytes) -> ObjectInfo:
        def write(tmp: Path) -> None:
            with tmp.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())

        return self._commit(name, write)

    def put_file(self, name: str, path: Path) -> ObjectInfo:
        def write(tmp: Path) -> None:
            shutil.copyfile(path, tmp)

        return self._commit(name, write)

    def get_bytes(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFound(self.describe(), name) from None

    def download_file(self, name: str, path: Path) -> None:
        src = self._path(name)
        if not src.is_file():
            raise ObjectNotFound(self.describe(), name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
            pass
        shutil.copyfile(src, tmp.name)
        Path(tmp.name).replace(path)

    def info(self, name: str) -> ObjectInfo | None:
        try:
            st = self._path(name).stat()
        except FileNotFoundError:
            return None
        return self._info(name, st) if not Path(self._path(name)).is_dir() else None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        root = self._root()
        # Walk only the deepest directory the prefix pins down, not the whole root.
        start_rel = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = root / start_rel if start_rel else root
        if not start.is_dir():
            return
        names: list[tuple[str, os.stat_result]] = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            if rel_dir == "":
                dirnames[:] = [d for d in dirnames if d != STAGING_DIR]
            dirnames[:] = [
                d
                for d in dirnames
                if (rel_dir + d + "/").startswith(prefix) or prefix.startswith(rel_dir + d + "/")
            ]
            for fn in filenames:
                name = rel_dir + fn
                if name.startswith(prefix):
                    try:
                        names.append((name, Path(dirpath, fn).stat()))
                    except FileNotFoundError:  # deleted while listing
                        continue
        for name, st in sorted(names):
            yield self._info(name, st)

    def list_dirs(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        start = self._root() / base if base else self._root()
        if not start.is_dir():
            return
        # Sort as Azure does: by the full name including the trailing slash.
        for entry in sorted(os.scandir(start), key=lambda e: e.name + "/"):
            if entry.is_dir() and not (base == "" and entry.name == STAGING_DIR):
                yield base + entry.name + "/"

    def delete(self, name: str) -> None:
        path = self._path(name)
        path.unlink(missing_ok=True)
        # Tidy empty parent folders so listings of folders stay honest.
        root = self._root()
        parent = path.parent
        while parent != root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
