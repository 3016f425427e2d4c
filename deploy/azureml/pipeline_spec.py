"""The v1 training pipeline's interface, in one place: its parameters, its output, how the step is called.

`publish_pipeline.py` publishes exactly this (with azureml-pipeline-core); the AzureML backend
submits to it (`AzureMLPipelineBackend.datapath_parameters` / `output_bindings`); the tests'
contract fake runs it. No SDK import here.
"""

from __future__ import annotations

STEP_NAME = "train"
STEP_SCRIPT = "deploy/azureml/train_step.py"  # relative to the snapshot (the project root)
# DataPath pipeline parameters: the raw MNIST folder. Inputs only: AzureML may mount them read-only.
RAW_DATA = "raw_data"
DATAPATH_PARAMETERS = (RAW_DATA,)
# The model folder is an output binding (OutputFileDatasetConfig, upload mode): the step writes it
# into a local folder and AzureML uploads that folder to the datastore path below when the step ends.
# The path can hold only the placeholders AzureML resolves ({run-id}: the step run's id, and
# {output-name}), not a pipeline parameter: the backend copies it into the model version folder.
MODEL_OUTPUT = "model_output"
OUTPUT_DESTINATION = "_azureml_outputs/{run-id}/{output-name}"
OUTPUTS = (MODEL_OUTPUT,)
# String pipeline parameters with their defaults (the workload's training defaults).
HYPERPARAMETERS: dict[str, str] = {
    "pca_components": "40",
    "kernel_components": "1000",
    "gamma_scale": "1.0",
    "C": "30.0",
    "seed": "0",
}
# The Dagster Pipes bootstrap (workload/pipes_bootstrap.py: URL-safe base64 of its variables);
# empty when the pipeline runs outside Dagster.
PIPES_PARAMETER = "dagster_pipes"
PARAMETERS: dict[str, str] = {**HYPERPARAMETERS, PIPES_PARAMETER: ""}


def output_path(step_run_id: str, output: str = MODEL_OUTPUT) -> str:
    """Where AzureML uploads `output` of the step run `step_run_id` in the datastore."""
    return OUTPUT_DESTINATION.replace("{run-id}", step_run_id).replace("{output-name}", output)


def step_arguments() -> list[str]:
    """The step's command-line arguments; `{name}` stands for the pipeline parameter or output `name`."""
    args = ["--raw-data", "{" + RAW_DATA + "}", "--model-output", "{" + MODEL_OUTPUT + "}"]
    for name in HYPERPARAMETERS:
        args += ["--hyperparameter", name, "{" + name + "}"]
    return [*args, "--dagster-pipes", "{" + PIPES_PARAMETER + "}"]
