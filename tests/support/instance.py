"""Dagster instances for end-to-end tests, derived from the shipped production instance.

`instance_yaml` writes a `dagster.yaml` that keeps the production settings (queued run
coordinator and its limits, run monitoring, retention, telemetry off) and swaps only what cannot run
on this machine: storage goes to a fresh PostgreSQL database when one answers on 127.0.0.1:5432
(else SQLite under the home directory, with the reason printed), runs start as local subprocesses
instead of Azure Container Apps Jobs, and compute logs stay on local disk instead of Blob.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_YAML = PROJECT_ROOT / "instance" / "production" / "dagster.yaml"
PG_HOST = os.environ.get("DAGSTER_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("DAGSTER_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("DAGSTER_TEST_PG_USER", "postgres")


@dataclass(frozen=True)
class InstanceInfo:
    home: Path
    storage: str  # "postgres" or "sqlite"
    postgres_url: str | None
    reason: str  # why this storage was chosen


def postgres_unavailable_reason() -> str | None:
    """None when a PostgreSQL server answers on the test address, else why not."""
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            pass
    except OSError as exc:
        return f"no PostgreSQL on {PG_HOST}:{PG_PORT} ({exc})"
    try:
        import psycopg2

        psycopg2.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=3
        ).close()
    except Exception as exc:  # any reason (auth, missing driver) means: use SQLite instead
        return f"PostgreSQL on {PG_HOST}:{PG_PORT} refused user {PG_USER!r}: {exc}"
    return None


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty database (dropped afterwards, with any connections left); yields its URL."""
    import psycopg2

    name = f"dagster_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        # psycopg2 named explicitly, as in the production instance (SQLAlchemy 2.1 defaults to psycopg 3).
        yield f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def local_variant(production: dict[str, Any], home: Path, postgres_url: str | None) -> dict[str, Any]:
    """The production instance config with storage, run launcher and compute logs made local."""
    config = dict(production)
    if postgres_url:
        config["storage"] = {"postgres": {"postgres_url": postgres_url}}
    else:
        config["storage"] = {"sqlite": {"base_dir": str(home / "storage")}}
    config["run_launcher"] = {"module": "dagster._core.launcher", "class": "DefaultRunLauncher"}
    config["compute_logs"] = {
        "module": "dagster._core.storage.local_compute_log_manager",
        "class": "LocalComputeLogManager",
        "config": {"base_dir": str(home / "logs")},
    }
    monitoring = dict(config.get("run_monitoring", {}))
    monitoring.pop("max_resume_run_attempts", None)  # the default launcher's own default applies
    config["run_monitoring"] = monitoring
    return config


@contextlib.contextmanager
def instance_yaml(
    home: Path, prefer_postgres: bool = True, overrides: Mapping[str, Any] | None = None
) -> Iterator[InstanceInfo]:
    """Write `home/dagster.yaml` (production settings, local storage/launcher/logs); clean up after.

    `overrides` replaces whole top-level sections, e.g. `{"run_coordinator": {...}}` for a test that
    wants fewer concurrent runs than production. To run tests/support/daemon.py's `Daemon` on it, enter this
    after creating the `Daemon` (which copies the local instance's yaml into its home).
    """
    home.mkdir(parents=True, exist_ok=True)
    production = {**yaml.safe_load(PRODUCTION_YAML.read_text()), **(overrides or {})}
    reason = postgres_unavailable_reason() if prefer_postgres else "PostgreSQL not requested"
    with contextlib.ExitStack() as stack:
        url = None if reason else stack.enter_context(postgres_database())
        (home / "dagster.yaml").write_text(yaml.safe_dump(local_variant(production, home, url)))
        if url:
            yield InstanceInfo(home, "postgres", url, f"PostgreSQL on {PG_HOST}:{PG_PORT}")
        else:
            print(f"end-to-end tests on SQLite: {reason}")
            yield InstanceInfo(home, "sqlite", None, str(reason))
