"""The AKS deployment (deploy/kubernetes/) against the official schemas, offline:

- `values.yaml` against the Dagster Helm chart's `values.schema.json` (vendored unmodified,
  deploy/kubernetes/chart/README.md), its Kubernetes references resolved against the Kubernetes 1.33
  definitions kubernetes-validate ships. The values are an override file that Helm merges over the
  chart's defaults, so the schema's `required` is not applied; everything the file does set must
  match it (names, types, enums, no unknown keys where the chart forbids them).
- the plain manifests (gateway, settings, namespace) against the Kubernetes 1.33 schemas, strictly
  (unknown fields are errors), with kubernetes-validate.
- the instance the chart renders from the values agrees with instance/kubernetes/dagster.yaml, and
  the settings given to the pods are settings the code location knows.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from importlib import resources
from typing import Any

import jsonschema
import jsonschema.validators
import kubernetes_validate.utils as kv
import pytest
import referencing
import referencing.jsonschema
import yaml

from tests.support.instance import PROJECT_ROOT

KUBERNETES = PROJECT_ROOT / "deploy" / "kubernetes"
CHART = KUBERNETES / "chart"
K8S_VERSION = "1.33.0"  # a version AKS supports; kubernetes-validate ships its schemas
K8S_REFS = "https://kubernetesjsonschema.dev/v1.18.0/_definitions.json"


def vendored_schema() -> dict[str, Any]:
    data = (CHART / "values.schema.json").read_bytes()
    recorded = re.search(
        r"`values\.schema\.json` \| .* \| `([0-9a-f]{64})` \|", (CHART / "README.md").read_text()
    )
    assert recorded, "deploy/kubernetes/chart/README.md records the sha256 of values.schema.json"
    assert hashlib.sha256(data).hexdigest() == recorded.group(1), "values.schema.json was modified"
    return json.loads(data)


def values_validator() -> jsonschema.Draft7Validator:
    schema = vendored_schema()
    defs_file = resources.files("kubernetes_validate").joinpath(
        f"kubernetes-json-schema/v{K8S_VERSION}-local-strict/_definitions.json"
    )
    k8s_defs = json.loads(defs_file.read_text())["$defs"]
    # The chart's schema points into `#/definitions/...` of the old kubernetesjsonschema.dev layout;
    # kubernetes-validate's file names the same definitions `$defs` (and refers to them so).
    k8s = referencing.jsonschema.DRAFT202012.create_resource({"definitions": k8s_defs, "$defs": k8s_defs})
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(K8S_REFS, k8s)
    # Helm merges the file over the chart's defaults: what it sets must be right, not complete. The
    # chart's own definitions (each has a title) drop `required`; the Kubernetes ones keep it.
    kubernetes_required = jsonschema.Draft7Validator.VALIDATORS["required"]

    def required(validator: Any, names: Any, instance: Any, schema: dict[str, Any]) -> Any:
        return () if "title" in schema else kubernetes_required(validator, names, instance, schema)

    overrides = jsonschema.validators.extend(jsonschema.Draft7Validator, {"required": required})
    return overrides(schema, registry=registry)


def snake(camel: dict[str, Any]) -> dict[str, Any]:
    """The chart's camelCase keys as the instance's snake_case ones (dagster.yaml)."""
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower(): value for key, value in camel.items()}


def values() -> dict[str, Any]:
    return yaml.safe_load((KUBERNETES / "values.yaml").read_text())


def errors_of(document: dict[str, Any]) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in values_validator().iter_errors(document)
    ]


def test_values_match_the_charts_schema() -> None:
    assert errors_of(values()) == []


@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        (("runLauncher", "config", "k8sRunLauncher", "imagePullPolicyy"), "Always", "imagePullPolicyy"),
        (("runLauncher", "type"), "K8sRunLaunch", "K8sRunLaunch"),
        (("dagsterWebserver", "resources", "requests", "cpu"), ["1"], "cpu"),  # a Kubernetes type
    ],
)
def test_the_values_check_bites(path: tuple[str, ...], value: object, says: str) -> None:
    broken = copy.deepcopy(values())
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert any(says in error for error in errors_of(broken)), errors_of(broken)


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((KUBERNETES / "manifests").glob("*.yaml")):
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


@pytest.mark.parametrize(
    ("name", "resource"), manifests(), ids=lambda v: v if isinstance(v, str) else kv.kn(v)
)
def test_manifest_is_valid_kubernetes(name: str, resource: dict[str, Any]) -> None:
    kv.validate(resource, K8S_VERSION, strict=True)


def test_manifest_check_bites() -> None:
    deployment = next(r for _, r in manifests() if r["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, K8S_VERSION, strict=True)


def test_the_chart_renders_the_kubernetes_instance() -> None:
    """What the values configure is what instance/kubernetes/dagster.yaml (tested against Dagster's
    schemas in test_deploy_instances.py) says, for each setting the chart turns into the instance."""
    v = values()
    instance = yaml.safe_load((PROJECT_ROOT / "instance" / "kubernetes" / "dagster.yaml").read_text())
    daemon = v["dagsterDaemon"]
    assert daemon["runCoordinator"]["config"]["customRunCoordinator"] == {
        k: instance["run_coordinator"][k] for k in ("module", "class", "config")
    }
    launcher = v["runLauncher"]["config"]["k8sRunLauncher"]
    rendered = instance["run_launcher"]["config"]
    assert instance["run_launcher"]["class"] == "K8sRunLauncher" == v["runLauncher"]["type"]
    assert launcher["resources"] == rendered["resources"]
    assert launcher["failPodOnRunFailure"] == rendered["fail_pod_on_run_failure"]
    assert [m["name"] for m in launcher["envConfigMaps"]] == rendered["env_config_maps"]
    run_k8s = launcher["runK8sConfig"]
    assert run_k8s["podTemplateSpecMetadata"] == rendered["run_k8s_config"]["pod_template_spec_metadata"]
    assert snake(run_k8s["jobSpecConfig"]) == rendered["run_k8s_config"]["job_spec_config"]
    assert v["global"]["postgresqlSecretName"] == rendered["postgres_password_secret"]
    assert v["serviceAccount"]["name"] == rendered["service_account_name"]
    assert snake(daemon["runMonitoring"]) == instance["run_monitoring"]
    assert snake(daemon["runRetries"]) == instance["run_retries"]
    assert snake(daemon["sensors"]) == instance["sensors"]
    assert snake(daemon["schedules"]) == instance["schedules"]
    assert v["retention"]["sensor"]["purgeAfterDays"] == instance["retention"]["sensor"]["purge_after_days"]
    logs = v["computeLogManager"]["config"]["azureBlobComputeLogManager"]
    assert logs["container"] == instance["compute_logs"]["config"]["container"]
    assert logs["uploadInterval"] == instance["compute_logs"]["config"]["upload_interval"]
    pg = v["postgresql"]
    assert pg["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]
    assert pg["postgresqlParams"] == instance["storage"]["postgres"]["postgres_db"]["params"]
    assert v["telemetry"] == instance["telemetry"]
    assert v["additionalInstanceConfig"]["concurrency"] == instance["concurrency"]


def test_pods_get_known_settings_and_workload_identity() -> None:
    settings = next(
        r for _, r in manifests() if r["kind"] == "ConfigMap" and r["metadata"]["name"] == "mnist-settings"
    )
    known = set(
        re.findall(r"^\| `([A-Z0-9_]+)` \|", (PROJECT_ROOT / "docs" / "configuration.md").read_text(), re.M)
    )
    assert set(settings["data"]) <= known, set(settings["data"]) - known
    assert settings["data"]["MNIST_SENSOR_MODE"] == "events"
    v = values()
    users = v["dagster-user-deployments"]["deployments"]
    for pods in (v["dagsterWebserver"], v["dagsterDaemon"], *users):
        assert pods["labels"]["azure.workload.identity/use"] == "true"
        assert {"name": "mnist-settings"} in pods["envConfigMaps"]
    assert "azure.workload.identity/client-id" in v["serviceAccount"]["annotations"]
