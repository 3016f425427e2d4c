"""Compute: where workload tasks run (a local subprocess, AzureML or Azure Batch), for all roles or per role."""

from __future__ import annotations

from typing import Literal, get_args

from orchestration.settings.base import PROJECT_ROOT, Directory, EnvironmentSettings, variable

# Where workload tasks can run. A new remote backend adds its name here and a case in the wiring.
ComputeChoice = Literal["local", "azureml", "azure_batch"]
COMPUTE_CHOICES: tuple[str, ...] = get_args(ComputeChoice)
# What a workload task does; each role has its own compute resource.
ComputeRole = Literal["training", "scoring", "ingest"]


class ComputeSettings(EnvironmentSettings):
    """Compute: where workload tasks run, for every role (`MNIST_COMPUTE`) or per role."""

    default: ComputeChoice = variable(
        "MNIST_COMPUTE",
        "local",
        "where training and scoring tasks run: 'local' (a subprocess), 'azureml' or 'azure_batch'",
    )
    training: ComputeChoice | None = variable(
        "MNIST_TRAINING_COMPUTE", None, "where training runs, overriding MNIST_COMPUTE for training"
    )
    scoring: ComputeChoice | None = variable(
        "MNIST_SCORING_COMPUTE", None, "where scoring runs, overriding MNIST_COMPUTE for scoring"
    )
    # Ingest stays local unless set: fetching MNIST is cheap and the local demo must stay fast.
    ingest: ComputeChoice = variable(
        "MNIST_INGEST_COMPUTE",
        "local",
        "where raw MNIST is fetched and verified (the ingest task): 'local' or 'azure_batch' "
        "(AzureML runs training and scoring only)",
    )
    work_dir: Directory = variable(
        "MNIST_WORK_DIR", PROJECT_ROOT / "data" / "compute", "scratch directory of the local compute backend"
    )

    def for_role(self, role: ComputeRole) -> ComputeChoice:
        """Where one role's tasks run."""
        match role:
            case "training":
                return self.training or self.default
            case "scoring":
                return self.scoring or self.default
            case "ingest":
                return self.ingest

    def names(self, choice: ComputeChoice) -> bool:
        """Whether any compute variable names `choice` (MNIST_COMPUTE counts even when both overrides are set)."""
        return choice in (self.default, self.training, self.scoring, self.ingest)
