"""Both deployment instances pass Dagster's config schema: the Container Apps one
(instance/production/dagster.yaml) and the AKS one (instance/kubernetes/dagster.yaml). Dagster's
instance loader checks only the top-level keys; the config of each plugged-in class (run launcher,
run coordinator, compute log manager) is checked here against that class's own schema, as Dagster
does when the instance builds it."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config

from tests.support.instance import PROJECT_ROOT

INSTANCES = {
    "container-apps": PROJECT_ROOT / "instance" / "production" / "dagster.yaml",
    "kubernetes": PROJECT_ROOT / "instance" / "kubernetes" / "dagster.yaml",
}
PLUGGED_IN = ("run_launcher", "run_coordinator", "compute_logs")
# Imported while collecting: the Azure SDKs ask `uname` for the platform once, on import, and unit
# tests start no process (tests/conftest.py).
for _path in INSTANCES.values():
    for _key in PLUGGED_IN:
        importlib.import_module(yaml.safe_load(_path.read_text())[_key]["module"])
# Every variable the two files read through `env:`; only their presence matters to the schema.
ENV_READ = (
    "DAGSTER_PG_HOST", "DAGSTER_PG_DB", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD",
    "DAGSTER_LOGS_STORAGE_ACCOUNT", "DAGSTER_LOGS_CONTAINER", "AZURE_SUBSCRIPTION_ID",
    "DAGSTER_ACA_RESOURCE_GROUP", "DAGSTER_ACA_REGION", "DAGSTER_ACA_ENVIRONMENT_ID", "DAGSTER_ACA_IDENTITY_ID",
)  # fmt: skip


def class_config_errors(section: dict[str, Any]) -> list[str]:
    cls = getattr(importlib.import_module(section["module"]), section["class"])
    result = process_config(resolve_to_config_type(cls.config_type()), section.get("config", {}))
    return [error.message for error in result.errors or []]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_READ:
        monkeypatch.setenv(name, "set-in-the-deployment")


@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_instance_passes_dagsters_schema_and_each_class_schema(name: str) -> None:
    path = INSTANCES[name]
    config, _ = dagster_instance_config(str(path.parent), path.name)
    assert config["run_coordinator"]["class"] == "IdempotentQueuedRunCoordinator"
    assert config["telemetry"] == {"enabled": False}
    raw = yaml.safe_load(path.read_text())
    for key in PLUGGED_IN:
        assert class_config_errors(raw[key]) == [], f"{path.name}: {key}"


def test_the_two_instances_differ_only_where_the_platform_does() -> None:
    """The queue, monitoring of sensors and retention are the same on both platforms; the launcher differs."""
    aca, k8s = (yaml.safe_load(INSTANCES[n].read_text()) for n in ("container-apps", "kubernetes"))
    assert aca["run_coordinator"] == k8s["run_coordinator"]
    assert (aca["sensors"], aca["schedules"]) == (k8s["sensors"], k8s["schedules"])
    assert aca["run_launcher"]["class"] == "AcaRunLauncher"
    assert k8s["run_launcher"]["class"] == "K8sRunLauncher"
    assert aca["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert k8s["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"


def test_a_misspelt_launcher_setting_is_refused(tmp_path: Path) -> None:
    """The check bites: a key the launcher does not know is an error, not silently ignored."""
    raw = yaml.safe_load(INSTANCES["kubernetes"].read_text())
    raw["run_launcher"]["config"]["fail_pod_on_run_faillure"] = True
    errors = class_config_errors(raw["run_launcher"])
    assert any("fail_pod_on_run_faillure" in error for error in errors), errors
