"""Create what v2 training (`MNIST_AZUREML_TRAINING=command_job`) runs on: the compute cluster and the environment.

    python -m deploy.azureml.training_environment [--compute cpu-cluster] [--environment mnist-workload:1]
        [--vm-size Standard_DS3_v2] [--max-nodes 2] [--dry-run]

1. the compute cluster (AmlCompute, scaling to 0 nodes when idle), created if missing;
2. the environment `name:version`: an AzureML base image with a conda file whose pip section installs
   workload/requirements.txt (what the command job's `python -m workload train` imports). An
   environment version is immutable: after workload/requirements.txt changes, register a new version
   and point MNIST_AZUREML_TRAINING_ENVIRONMENT at it.

The workload code itself is not part of the environment: the backend uploads it to the datastore per
content hash and mounts it into each job. Defaults come from the same settings as the backend
(MNIST_AZUREML_COMPUTE_CLUSTER, MNIST_AZUREML_TRAINING_ENVIRONMENT). Needs the `azureml` extra. Not
exercised against a live workspace; --dry-run prints the plan without contacting Azure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from deploy.azureml._common import add_workspace_arguments

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04"


def conda_spec() -> dict[str, Any]:
    """The environment's conda file: Python and the workload's requirements."""
    lines = (PROJECT_ROOT / "workload" / "requirements.txt").read_text().splitlines()
    requirements = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    return {"name": "mnist-workload", "dependencies": ["python=3.11", "pip", {"pip": requirements}]}


def plan(args: argparse.Namespace) -> dict[str, Any]:
    name, _, version = args.environment.partition(":")
    return {
        "workspace": f"{args.subscription}/{args.resource_group}/{args.workspace}",
        "compute": {
            "name": args.compute,
            "size": args.vm_size,
            "min_instances": 0,
            "max_instances": args.max_nodes,
        },
        "environment": {"name": name, "version": version, "image": BASE_IMAGE, "conda": conda_spec()},
    }


def create(args: argparse.Namespace) -> str:
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import AmlCompute, Environment
    from azure.core.exceptions import ResourceNotFoundError
    from azure.identity import DefaultAzureCredential

    ml = MLClient(DefaultAzureCredential(), args.subscription, args.resource_group, args.workspace)
    try:
        ml.compute.get(args.compute)
        compute = f"compute {args.compute} exists"
    except ResourceNotFoundError:
        cluster = AmlCompute(
            name=args.compute, size=args.vm_size, min_instances=0, max_instances=args.max_nodes
        )
        ml.compute.begin_create_or_update(cluster).result()
        compute = f"created compute {args.compute}"
    name, _, version = args.environment.partition(":")
    with tempfile.TemporaryDirectory() as tmp:
        conda_file = Path(tmp) / "conda.yaml"
        conda_file.write_text(json.dumps(conda_spec()))  # JSON is valid YAML
        env = ml.environments.create_or_update(
            Environment(name=name, version=version, image=BASE_IMAGE, conda_file=str(conda_file))
        )
    return f"{compute}; environment {env.name}:{env.version} registered"


def main(argv: list[str] | None = None) -> int:
    from orchestration.settings import Settings

    d = Settings.from_env().azureml.model_dump(exclude_unset=True)
    parser = argparse.ArgumentParser(
        prog="python -m deploy.azureml.training_environment", description=(__doc__ or "").split("\n\n")[0]
    )
    add_workspace_arguments(parser, d)
    parser.add_argument("--compute", default=d.get("compute_cluster", "cpu-cluster"))
    parser.add_argument("--environment", default=d.get("training_environment", "mnist-workload:1"))
    parser.add_argument("--vm-size", default="Standard_DS3_v2")
    parser.add_argument("--max-nodes", type=int, default=2)
    parser.add_argument("--dry-run", action="store_true", help="print what would be created and stop")
    args = parser.parse_args(argv)
    if not args.environment.partition(":")[2]:
        parser.error("--environment is name:version")
    if args.dry_run:
        print(json.dumps(plan(args), indent=2))
        return 0
    print(create(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
