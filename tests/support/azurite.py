"""Start the real Azure Storage emulator (Azurite, from node_modules) on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
AZURITE = PROJECT_ROOT / "node_modules" / ".bin" / "azurite"
# Azurite's published well-known development account (not a secret).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def run_azurite(workdir: Path, keep: bool = False) -> Iterator[dict[str, str]]:
    if not AZURITE.exists():
        raise FileNotFoundError(f"{AZURITE} is missing: run './run test' (it installs Azurite with npm)")
    blob, queue = free_port(), free_port()
    log = (workdir / "azurite.log").open("wb")
    proc = subprocess.Popen(
        [
            str(AZURITE),
            "--silent",
            "--skipApiVersionCheck",
            "--loose",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(blob),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(queue),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(free_port()),
            # Tests keep nothing: in memory is faster. Benchmarks keep their large container on disk.
            *(["--location", str(workdir)] if keep else ["--inMemoryPersistence"]),
            # Azurite's debug log costs time on every request; ask for it when chasing a problem.
            *(["--debug", str(workdir / "debug.log")] if os.environ.get("AZURITE_DEBUG") else []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", blob), timeout=0.5):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Azurite did not start; see {workdir / 'azurite.log'}")
            time.sleep(0.1)
        blob_url = f"http://127.0.0.1:{blob}/{ACCOUNT}"
        yield {
            "blob_url": blob_url,
            "connection_string": (
                f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint={blob_url};QueueEndpoint=http://127.0.0.1:{queue}/{ACCOUNT};"
            ),
            "account_key": KEY,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
