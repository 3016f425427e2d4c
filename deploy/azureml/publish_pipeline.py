"""Publish the v1 training pipeline and make it the PipelineEndpoint's new default version.

    python -m deploy.azureml.publish_pipeline --compute cpu-cluster [--allow-reuse] [--dry-run]

The workspace, datastore and endpoint name come from the same settings as the backend
(MNIST_AZUREML_SUBSCRIPTION, _RESOURCE_GROUP, _WORKSPACE, _DATASTORE, _PIPELINE_ENDPOINT), or from
the flags. Authentication: the Azure CLI login (`az login`), else interactive.

The pipeline (see pipeline_spec.py): one PythonScriptStep, `train`, running
deploy/azureml/train_step.py from a snapshot of `workload/` + `deploy/azureml/`, with
- the DataPath pipeline parameter `raw_data` (the raw MNIST folder, mounted as an input: read-only);
- the output `model_output` (OutputFileDatasetConfig, upload mode): the step writes `model/` then
  `metrics.json` into a local folder, which AzureML uploads to
  `<datastore>/_azureml_outputs/<step run id>/model_output/` when the step ends; the backend copies
  it into the model version folder (an output destination cannot take a pipeline parameter);
- string pipeline parameters for the hyperparameters and `dagster_pipes` (Pipes bootstrap, or empty);
- `allow_reuse` off by default: Dagster already skips training when data, code and hyperparameters
  are unchanged, and a reused step would write nothing where the backend looks. With --allow-reuse,
  the backend reports reused steps as such (never as fresh training).

Needs the `azureml` extra (azureml-core, azureml-pipeline-core) plus `pip install
azureml-pipeline-steps==1.62.0` in the environment you publish from (kept out of the project's
extras: it pins azure-identity 1.17 and pulls azureml-dataprep). Not exercised against a live
workspace by the tests; --dry-run prints what would be published without contacting Azure.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from deploy.azureml import pipeline_spec
from deploy.azureml._common import add_workspace_arguments

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _settings_defaults() -> dict[str, str]:
    from orchestration.settings import Settings

    return Settings.from_env().azureml.model_dump(exclude_unset=True)


def stage_snapshot(target: Path) -> Path:
    """The code AzureML snapshots for the step: the workload and the step script, nothing else."""
    shutil.copytree(
        PROJECT_ROOT / "workload", target / "workload", ignore=shutil.ignore_patterns("__pycache__")
    )
    (target / "deploy" / "azureml").mkdir(parents=True)
    for name in ("__init__.py", "train_step.py", "batch_score.py"):
        shutil.copy(PROJECT_ROOT / "deploy" / "azureml" / name, target / "deploy" / "azureml" / name)
    (target / "deploy" / "__init__.py").touch()
    return target


def plan(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "workspace": f"{args.subscription}/{args.resource_group}/{args.workspace}",
        "endpoint": args.endpoint,
        "datastore": args.datastore,
        "compute": args.compute,
        "step": pipeline_spec.STEP_NAME,
        "script": pipeline_spec.STEP_SCRIPT,
        "arguments": pipeline_spec.step_arguments(),
        "datapath_parameters": list(pipeline_spec.DATAPATH_PARAMETERS),
        "outputs": {
            name: f"{args.datastore}/{pipeline_spec.OUTPUT_DESTINATION}" for name in pipeline_spec.OUTPUTS
        },
        "parameters": pipeline_spec.PARAMETERS,
        "allow_reuse": args.allow_reuse,
    }


def publish(args: argparse.Namespace) -> str:
    from azureml.core import Datastore, Environment, Workspace
    from azureml.core.authentication import AzureCliAuthentication, InteractiveLoginAuthentication
    from azureml.core.runconfig import RunConfiguration
    from azureml.data import OutputFileDatasetConfig
    from azureml.data.datapath import DataPath, DataPathComputeBinding
    from azureml.pipeline.core import Pipeline, PipelineEndpoint, PipelineParameter

    # azureml-pipeline-steps is not in the project's extras: it pins azure-identity 1.17 (the project
    # needs >= 1.27) and pulls azureml-dataprep. Install it in the environment you publish from.
    from azureml.pipeline.steps import PythonScriptStep  # pyright: ignore[reportMissingImports]

    try:
        auth: Any = AzureCliAuthentication()
    except Exception:  # no az CLI login: fall back to a browser login
        auth = InteractiveLoginAuthentication()
    ws = Workspace(args.subscription, args.resource_group, args.workspace, auth=auth)
    datastore = Datastore.get(ws, args.datastore)
    bound: dict[str, Any] = {}
    inputs = []
    for name in pipeline_spec.DATAPATH_PARAMETERS:
        param = PipelineParameter(name=name, default_value=DataPath(datastore, f"_unset/{name}"))
        bound[name] = (param, DataPathComputeBinding(mode="mount"))
        inputs.append(bound[name])
    for name, default in pipeline_spec.PARAMETERS.items():
        bound[name] = PipelineParameter(name=name, default_value=default)
    for name in pipeline_spec.OUTPUTS:
        # An output binding, not a DataPath input: inputs may be mounted read-only.
        bound[name] = OutputFileDatasetConfig(
            name=name, destination=(datastore, pipeline_spec.OUTPUT_DESTINATION)
        ).as_upload()
    arguments = [bound[a[1:-1]] if a.startswith("{") else a for a in pipeline_spec.step_arguments()]

    runconfig = RunConfiguration()
    runconfig.environment = Environment.from_pip_requirements(  # pyright: ignore[reportAttributeAccessIssue]
        "mnist-workload", str(PROJECT_ROOT / "workload" / "requirements.txt")
    )
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = stage_snapshot(Path(tmp))
        step = PythonScriptStep(
            name=pipeline_spec.STEP_NAME,
            script_name=pipeline_spec.STEP_SCRIPT,
            source_directory=str(snapshot),
            arguments=arguments,
            inputs=inputs,
            compute_target=args.compute,
            runconfig=runconfig,
            allow_reuse=args.allow_reuse,
        )
        pipeline = Pipeline(workspace=ws, steps=[step])
        published = pipeline.publish(name=f"{args.endpoint}-pipeline", description="MNIST training (Dagster)")
    try:
        endpoint = PipelineEndpoint.get(workspace=ws, name=args.endpoint)
        endpoint.add_default(published)
    except Exception as err:  # the SDK raises a generic error when the endpoint does not exist
        if "not found" not in str(err).lower():
            raise
        endpoint = PipelineEndpoint.publish(
            workspace=ws, name=args.endpoint, pipeline=published, description="MNIST training (Dagster)"
        )
    return f"published pipeline {published.id} as the default version of endpoint {args.endpoint!r} ({endpoint.id})"


def main(argv: list[str] | None = None) -> int:
    d = _settings_defaults()
    parser = argparse.ArgumentParser(
        prog="python -m deploy.azureml.publish_pipeline", description=(__doc__ or "").split("\n\n")[0]
    )
    add_workspace_arguments(parser, d)
    parser.add_argument("--endpoint", default=d.get("pipeline_endpoint", "mnist-training"))
    parser.add_argument("--compute", required=True, help="an AzureML compute cluster name")
    parser.add_argument("--allow-reuse", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="print what would be published and stop")
    args = parser.parse_args(argv)
    if args.dry_run:
        import json

        print(json.dumps(plan(args), indent=2))
        return 0
    print(publish(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
