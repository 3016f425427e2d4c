"""The shipped production instance (instance/production/dagster.yaml) builds every component it names
against the local PostgreSQL server (skipped, saying why, when none answers)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from instance_plugins.run_coordinator import IdempotentQueuedRunCoordinator
from tests.support.instance import (
    PG_HOST,
    PG_USER,
    PRODUCTION_YAML,
    postgres_database,
    postgres_unavailable_reason,
)

ENV = {
    "DAGSTER_PG_HOST": PG_HOST,
    "DAGSTER_PG_USER": PG_USER,
    "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
    "DAGSTER_LOGS_STORAGE_ACCOUNT": "mnistlogs",
    "DAGSTER_LOGS_CONTAINER": "dagster-logs",
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "DAGSTER_ACA_RESOURCE_GROUP": "rg-dagster",
    "DAGSTER_ACA_REGION": "westeurope",
    "DAGSTER_ACA_ENVIRONMENT_ID": "/subscriptions/0/resourceGroups/rg-dagster/providers/Microsoft.App/managedEnvironments/env",
    "DAGSTER_ACA_IDENTITY_ID": "/subscriptions/0/resourceGroups/rg-dagster/providers/Microsoft.ManagedIdentity/userAssignedIdentities/dagster",
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    reason = postgres_unavailable_reason()
    if reason:
        pytest.skip(f"needs PostgreSQL for the production storage: {reason}")
    with postgres_database() as url:
        for name, value in {**ENV, "DAGSTER_PG_DB": url.rsplit("/", 1)[1]}.items():
            monkeypatch.setenv(name, value)
        shutil.copy(PRODUCTION_YAML, tmp_path / "dagster.yaml")
        yield tmp_path


def test_production_instance_builds_every_component_on_postgres(home: Path) -> None:
    from dagster_azure.blob.compute_log_manager import AzureBlobComputeLogManager
    from dagster_azure.container_apps.launcher import AcaRunLauncher
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, IdempotentQueuedRunCoordinator)
        assert coordinator.idempotency_tag == "adf/pipeline_run_id"
        assert coordinator.get_run_queue_config().max_concurrent_runs == 10
        # Pool limits come from the code location with each step (one pool per compute target); the
        # production YAML overrides none of them.
        assert coordinator.pool_limits == {}
        granularity = instance.get_concurrency_config().pool_config.pool_granularity
        assert granularity is not None and granularity.value == "run"
        launcher = instance.run_launcher
        assert isinstance(launcher, AcaRunLauncher)
        assert (
            "DAGSTER_PG_PASSWORD" in launcher.env_vars
            and launcher.identity_id == ENV["DAGSTER_ACA_IDENTITY_ID"]
        )
        logs = instance.compute_log_manager
        assert isinstance(logs, AzureBlobComputeLogManager)
        assert logs._container_client.url == "https://mnistlogs.blob.core.windows.net/dagster-logs"
        assert instance.run_monitoring_enabled and instance.run_monitoring_start_timeout_seconds == 600
        assert not instance.telemetry_enabled
        # The schema really exists in PostgreSQL: a run written is read back.
        run_id = str(uuid.uuid4())
        instance.add_run(
            dg.DagsterRun(job_name="train_model", run_id=run_id, tags={"adf/pipeline_run_id": "r"})
        )
        assert [r.run_id for r in instance.get_runs(dg.RunsFilter(tags={"adf/pipeline_run_id": "r"}))] == [
            run_id
        ]
        # No secret value is kept in the instance's serialized config, only the variable's name.
        assert ENV["DAGSTER_PG_PASSWORD"] not in str(instance.get_ref())
