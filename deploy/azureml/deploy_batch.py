"""Register the promoted MLflow model and deploy it to the scoring batch endpoint (azure-ai-ml).

    python -m deploy.azureml.deploy_batch --compute cpu-cluster [--model-path models/mnist/<v>/model]
        [--deployment blue] [--dry-run]

Without --model-path it deploys the promoted model (`models/mnist/current.json` in the project's
object store, read through the same settings as the code location). Steps:
1. register the model folder, in place on the datastore, as `mnist` (MLflow model; tags carry the
   Dagster model version and path);
2. create the batch endpoint if missing;
3. create or update the deployment: the registered model + deploy/azureml/batch_score.py (the
   workload's scoring task), `output_action=summary_only` and a mini-batch larger than any inference
   batch, so the job writes `predictions.csv` and `summary.json` exactly as the local backend does;
4. make it the endpoint's default deployment.

The scoring backend checks, before each invocation, that the deployment serves the promoted model
(same datastore folder) and fails with this command in its message otherwise: re-run it after a new
model is promoted. Needs the `azureml` extra. Not exercised against a live workspace by the tests;
--dry-run prints the plan without contacting Azure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from deploy.azureml._common import add_workspace_arguments
from deploy.azureml.publish_pipeline import PROJECT_ROOT, stage_snapshot

MINI_BATCH_FILES = 1000  # more files than any inference batch: one run() sees the whole batch
# A failed run() fails the job (the service's default, -1, ignores every failure: the job would complete
# without outputs and the workload's failure record would never reach the orchestrator).
ERROR_THRESHOLD = 0


def _settings() -> Any:
    from orchestration.settings import Settings

    return Settings.from_env()


def promoted_model_path() -> tuple[str, str]:
    """(model folder, model version) of the promoted model in the project's object store."""
    current = _settings().object_store().get_json("models/mnist/current.json")
    return str(current["model"]), str(current["version"])


def plan(args: argparse.Namespace, model_path: str, version: str) -> dict[str, Any]:
    return {
        "workspace": f"{args.subscription}/{args.resource_group}/{args.workspace}",
        "model": {
            "name": args.model_name,
            "path": f"azureml://datastores/{args.datastore}/paths/{model_path}",
            "dagster_version": version,
        },
        "endpoint": args.endpoint,
        "deployment": args.deployment,
        "compute": args.compute,
        "scoring_script": "deploy/azureml/batch_score.py",
        "settings": {
            "mini_batch_size": MINI_BATCH_FILES,
            "output_action": "summary_only",
            "instance_count": 1,
            "error_threshold": ERROR_THRESHOLD,
        },
    }


def deploy(args: argparse.Namespace, model_path: str, version: str) -> str:
    from azure.ai.ml import MLClient
    from azure.ai.ml.constants import AssetTypes, BatchDeploymentOutputAction
    from azure.ai.ml.entities import (
        BatchEndpoint,
        CodeConfiguration,
        Environment,
        Model,
        ModelBatchDeployment,
        ModelBatchDeploymentSettings,
    )
    from azure.core.exceptions import ResourceNotFoundError
    from azure.identity import DefaultAzureCredential

    ml = MLClient(DefaultAzureCredential(), args.subscription, args.resource_group, args.workspace)
    model = ml.models.create_or_update(
        Model(
            name=args.model_name,
            path=f"azureml://datastores/{args.datastore}/paths/{model_path}",
            type=AssetTypes.MLFLOW_MODEL,
            description="MNIST classifier promoted by Dagster",
            tags={"dagster.model_version": version, "dagster.model_path": model_path},
        )
    )
    try:
        ml.batch_endpoints.get(args.endpoint)
    except ResourceNotFoundError:
        ml.batch_endpoints.begin_create_or_update(BatchEndpoint(name=args.endpoint)).result()
    requirements = (PROJECT_ROOT / "workload" / "requirements.txt").read_text().split()
    conda = {"name": "mnist-workload", "dependencies": ["python=3.11", "pip", {"pip": requirements}]}
    with tempfile.TemporaryDirectory() as tmp:
        conda_file = Path(tmp) / "conda.yaml"
        conda_file.write_text(json.dumps(conda))  # JSON is valid YAML
        code = stage_snapshot(Path(tmp) / "code")
        deployment = ModelBatchDeployment(
            name=args.deployment,
            endpoint_name=args.endpoint,
            model=model,
            environment=Environment(
                image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04", conda_file=str(conda_file)
            ),
            code_configuration=CodeConfiguration(
                code=str(code), scoring_script="deploy/azureml/batch_score.py"
            ),
            compute=args.compute,
            settings=ModelBatchDeploymentSettings(
                mini_batch_size=MINI_BATCH_FILES,
                instance_count=1,
                max_concurrency_per_instance=1,
                output_action=BatchDeploymentOutputAction.SUMMARY_ONLY,
                error_threshold=ERROR_THRESHOLD,
            ),
        )
        ml.batch_deployments.begin_create_or_update(deployment).result()
    endpoint = BatchEndpoint(name=args.endpoint, defaults={"deployment_name": args.deployment})
    ml.batch_endpoints.begin_create_or_update(endpoint).result()
    return (
        f"deployed {model.name}:{model.version} ({model_path}) as {args.endpoint}/{args.deployment} (default)"
    )


def main(argv: list[str] | None = None) -> int:
    d = _settings().azureml.model_dump(exclude_unset=True)
    parser = argparse.ArgumentParser(
        prog="python -m deploy.azureml.deploy_batch", description=(__doc__ or "").split("\n\n")[0]
    )
    add_workspace_arguments(parser, d)
    parser.add_argument("--endpoint", default=d.get("batch_endpoint", "mnist-batch"))
    parser.add_argument("--deployment", default=d.get("batch_deployment", "blue"))
    parser.add_argument("--model-name", default="mnist")
    parser.add_argument(
        "--model-path", help="datastore folder of the MLflow model (default: the promoted model)"
    )
    parser.add_argument("--compute", required=True, help="an AzureML compute cluster name")
    parser.add_argument("--dry-run", action="store_true", help="print what would be deployed and stop")
    args = parser.parse_args(argv)
    model_path, version = (args.model_path.strip("/"), "given") if args.model_path else promoted_model_path()
    if args.dry_run:
        print(json.dumps(plan(args, model_path, version), indent=2))
        return 0
    print(deploy(args, model_path, version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
