"""Ingest raw MNIST: fetch the four IDX files, verify their md5s and their IDX structure, write them with a manifest.

Runs as the workload task `ingest` on any compute backend (a local subprocess, Azure Batch), like ADF's
reference pipeline where a Batch task downloads MNIST and uploads it to Blob. The orchestration side uses
the same download and verification functions (resources/mnist_source.py), so both refuse the same files
with the same messages. No Dagster here.

Output folder: the four files, then `_manifest.json` last (the completion marker: whoever sees it sees
everything else). Nothing is written before every file is fetched, verified and parsed.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .mnist_idx import parse_split
from .report import Reporter

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
SPLITS = {"train": MNIST_FILES[0:2], "t10k": MNIST_FILES[2:4]}
MAX_FILE_BYTES = 64 * 1024 * 1024  # the real train images are ~10 MB; refuse runaway downloads
MANIFEST = "_manifest.json"


class SourceError(RuntimeError):
    """The source could not provide a verified file. The message says what and where."""


def download(url: str, *, timeout_seconds: float, attempts: int, backoff_seconds: float) -> bytes:
    """GET `url` with a timeout, a size cap, truncation detection and retries of transient failures."""
    import requests

    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            with requests.get(url, timeout=timeout_seconds, stream=True) as resp:
                if resp.status_code == 404:
                    raise SourceError(f"{url}: not found (HTTP 404)")
                if 400 <= resp.status_code < 500:
                    raise SourceError(f"{url}: refused with HTTP {resp.status_code}")
                resp.raise_for_status()
                expected_len = resp.headers.get("Content-Length")
                chunks, size = [], 0
                for chunk in resp.iter_content(1 << 16):
                    size += len(chunk)
                    if size > MAX_FILE_BYTES:
                        raise SourceError(f"{url}: larger than {MAX_FILE_BYTES} bytes; not an MNIST file")
                    chunks.append(chunk)
                data = b"".join(chunks)
                if expected_len is not None and int(expected_len) != len(data):
                    raise requests.ConnectionError(f"truncated: {len(data)} of {expected_len} bytes")
                return data
        except SourceError:
            raise
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.HTTPError,
            requests.exceptions.ChunkedEncodingError,  # connection dropped mid-body
        ) as exc:
            last = exc
            if attempt < attempts:
                time.sleep(backoff_seconds * 2 ** (attempt - 1))
    raise SourceError(f"{url}: failed after {attempts} attempts ({type(last).__name__}: {last})")


def verify_md5(data: bytes, expected_md5: str, origin: str) -> str:
    """The md5 of `data`, which must be `expected_md5`."""
    md5 = hashlib.md5(data).hexdigest()
    if md5 != expected_md5:
        raise SourceError(
            f"{origin}: checksum mismatch: expected md5 {expected_md5}, found {md5} ({len(data)} bytes)"
        )
    return md5


def verify_set(files: dict[str, bytes]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Parse both splits (gzip, IDX header, dimensions, counts, labels 0-9): every file, before any is kept."""
    return {split: parse_split(files[img], img, files[lab], lab) for split, (img, lab) in SPLITS.items()}


def _read(location: str, name: str, params: dict[str, Any]) -> tuple[bytes, str]:
    if location.startswith(("http://", "https://")):
        url = location.rstrip("/") + "/" + name
        data = download(
            url,
            timeout_seconds=float(params.get("timeout_seconds", 30)),
            attempts=int(params.get("attempts", 3)),
            backoff_seconds=float(params.get("backoff_seconds", 1)),
        )
        return data, url
    directory = Path(location.removeprefix("file://")).expanduser()
    path = directory / name
    if not path.is_file():
        raise SourceError(f"{path}: file not found (expected the MNIST file {name} in {directory})")
    return path.read_bytes(), str(path)


def ingest(source_dir: Path | None, output: Path, params: dict[str, Any], report: Reporter) -> None:
    """Fetch from `source_dir` (an input folder) or `params['source']` (URL or directory), verify, write."""
    expected: dict[str, str] = json.loads(str(params["checksums"]))
    location = str(source_dir) if source_dir is not None else str(params["source"])
    files: dict[str, bytes] = {}
    for name in MNIST_FILES:
        data, origin = _read(location, name, params)
        md5 = verify_md5(data, expected[name], origin)
        files[name] = data
        report.info(f"Fetched and verified {origin} ({len(data):,} bytes, md5 {md5})")
    parsed = verify_set(files)
    output.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (output / name).write_bytes(data)
    manifest = {
        "version": params["version"],
        "checksums": expected,
        "source": params.get("origin") or location,
        "stored_at": datetime.now(UTC).isoformat(),
    }
    (output / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    report.metric(train_images=len(parsed["train"][1]), held_out_images=len(parsed["t10k"][1]))
