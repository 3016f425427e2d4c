"""Where raw MNIST comes from, and how each file is verified before anything trusts it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
from pydantic import Field

from resources.storage import ObjectStore

# Download and verification live with the workload (its `ingest` task uses them on remote compute); the
# orchestration side uses the very same functions, so both accept and refuse the same files.
from workload.ingest import MAX_FILE_BYTES, MNIST_FILES, SourceError, download, verify_md5

__all__ = ["MAX_FILE_BYTES", "MNIST_FILES", "FetchedFile", "MnistSource", "SourceError", "StoredSetSource"]

CANONICAL_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
CANONICAL_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


@dataclass(frozen=True)
class FetchedFile:
    name: str
    data: bytes
    md5: str
    origin: str


def parse_md5sums(text: str, origin: str) -> dict[str, str]:
    """Parse `md5sum` output ('<32 hex>  <name>' per line)."""
    sums: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 32 or any(c not in "0123456789abcdefABCDEF" for c in parts[0]):
            raise SourceError(f"{origin} line {lineno}: expected '<md5 hex>  <file name>', found {line!r}")
        sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def parse_checksum_setting(value: str) -> dict[str, str]:
    """'name=md5,name=md5' (the MNIST_SOURCE_CHECKSUMS setting)."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in value.split(","))):
        name, sep, md5 = item.partition("=")
        if not sep or len(md5.strip()) != 32:
            raise SourceError(f"MNIST_SOURCE_CHECKSUMS: expected 'file=<32 hex md5>', found {item!r}")
        out[name.strip()] = md5.strip().lower()
    return out


class MnistSource(dg.ConfigurableResource):
    """The four MNIST IDX files: the canonical mirror over https by default, or any base URL or directory.

    The canonical mirror is checked against the published md5s. Any other source is checked against
    its own `md5sums` file, or against `checksums` when given; an unverifiable source is refused.
    """

    location: str = Field(
        default=CANONICAL_URL, description="Base URL (http/https/file) or a local directory."
    )
    checksums: str | None = Field(default=None, description="Explicit 'file=md5,...', overriding md5sums.")
    timeout_seconds: float = 30.0
    attempts: int = 3
    backoff_seconds: float = 1.0

    def describe(self) -> str:
        return self.location

    def worker_location(self) -> str:
        """The location as a worker process sees it: an absolute directory (workers run elsewhere), or the URL."""
        return str(self._local_dir().resolve()) if self._is_local() else self.location

    def _is_local(self) -> bool:
        scheme = urlparse(self.location).scheme
        return scheme in ("", "file") or (len(scheme) == 1 and self.location[1] == ":")

    def _local_dir(self) -> Path:
        parsed = urlparse(self.location)
        return Path(parsed.path if parsed.scheme == "file" else self.location).expanduser()

    def _url(self, name: str) -> str:
        return self.location.rstrip("/") + "/" + name

    def _read(self, name: str) -> bytes:
        if self._is_local():
            path = self._local_dir() / name
            if not path.is_file():
                raise SourceError(
                    f"{path}: file not found (expected the MNIST file {name} in {self._local_dir()})"
                )
            return path.read_bytes()
        return self._download(self._url(name))

    def _download(self, url: str) -> bytes:
        return download(
            url,
            timeout_seconds=self.timeout_seconds,
            attempts=self.attempts,
            backoff_seconds=self.backoff_seconds,
        )

    def expected_checksums(self) -> dict[str, str]:
        """md5 per file, from the most authoritative place available; refuses to guess."""
        if self.checksums:
            sums = parse_checksum_setting(self.checksums)
            origin = "MNIST_SOURCE_CHECKSUMS"
        elif self.location.rstrip("/") == CANONICAL_URL.rstrip("/"):
            return dict(CANONICAL_MD5)
        else:
            origin = f"{self.location.rstrip('/')}/md5sums"
            try:
                text = self._read("md5sums").decode("utf-8", errors="replace")
            except SourceError as exc:
                raise SourceError(
                    f"cannot verify source {self.location}: no md5sums file ({exc}); publish one beside the "
                    "data files or set MNIST_SOURCE_CHECKSUMS='file=md5,...'"
                ) from None
            sums = parse_md5sums(text, origin)
        missing = [n for n in MNIST_FILES if n not in sums]
        if missing:
            raise SourceError(f"{origin}: no checksum for {', '.join(missing)}")
        return {n: sums[n] for n in MNIST_FILES}

    def fetch(self, name: str, expected_md5: str) -> FetchedFile:
        origin = str(self._local_dir() / name) if self._is_local() else self._url(name)
        data = self._read(name)
        return FetchedFile(name, data, verify_md5(data, expected_md5, origin), origin)


class StoredSetSource:
    """A labelled set that another system dropped into the object store (`training/<set>/`).

    Same contract as `MnistSource`: the four IDX files, verified against the set's own `md5sums`.
    """

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix.rstrip("/")

    def describe(self) -> str:
        return self.store.uri(self.prefix)

    def expected_checksums(self) -> dict[str, str]:
        name = f"{self.prefix}/md5sums"
        if not self.store.exists(name):
            raise SourceError(
                f"{self.store.uri(name)}: missing; a training set must carry an md5sums file for its four IDX files"
            )
        sums = parse_md5sums(
            self.store.get_bytes(name).decode("utf-8", errors="replace"), self.store.uri(name)
        )
        missing = [n for n in MNIST_FILES if n not in sums]
        if missing:
            raise SourceError(f"{self.store.uri(name)}: no checksum for {', '.join(missing)}")
        return {n: sums[n] for n in MNIST_FILES}

    def fetch(self, name: str, expected_md5: str) -> FetchedFile:
        path = f"{self.prefix}/{name}"
        if not self.store.exists(path):
            raise SourceError(
                f"{self.store.uri(path)}: missing (expected the MNIST file {name} in the training set)"
            )
        data = self.store.get_bytes(path)
        return FetchedFile(
            name, data, verify_md5(data, expected_md5, self.store.uri(path)), self.store.uri(path)
        )
