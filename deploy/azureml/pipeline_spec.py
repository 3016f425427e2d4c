"""The v1 training pipeline's interface, in one place: its parameters and how the step is called.

`publish_pipeline.py` publishes exactly this (with azureml-pipeline-core); the AzureML backend
submits to it (`AzureMLPipelineBackend.datapath_parameters`); the tests' contract fake runs it.
No SDK import here.
"""

from __future__ import annotations

STEP_NAME = "train"
STEP_SCRIPT = "deploy/azureml/train_step.py"  # relative to the snapshot (the project root)
# DataPath pipeline parameters: the raw MNIST folder (input) and the model version folder (output).
RAW_DATA = "raw_data"
MODEL_OUTPUT = "model_output"
DATAPATH_PARAMETERS = (RAW_DATA, MODEL_OUTPUT)
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


def step_arguments() -> list[str]:
    """The step's command-line arguments; `{name}` stands for the pipeline parameter `name`."""
    args = ["--raw-data", "{" + RAW_DATA + "}", "--model-output", "{" + MODEL_OUTPUT + "}"]
    for name in HYPERPARAMETERS:
        args += ["--hyperparameter", name, "{" + name + "}"]
    return [*args, "--dagster-pipes", "{" + PIPES_PARAMETER + "}"]
