"""The jobs manifest, `adf/jobs.json`: what the ADF-facing side needs to know about the code location's jobs.

The template generator (`python -m adf_bridge.templates`) writes it from the loaded Definitions, next to
the pipelines it generates, and `--check` (and a test) fails when it is stale. The gateway reads it at
start-up instead of loading the code location, so it needs neither the code location's settings nor its
imports, and cannot drift from the jobs the templates launch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ADF_DIR = PROJECT_ROOT / "adf"  # where the template generator writes, the manifest among its files
FILE_NAME = "jobs.json"
DEFAULT_PATH = ADF_DIR / FILE_NAME
GENERATOR = "python -m adf_bridge.templates"


class JobsManifestError(ValueError):
    """The manifest is missing or not what the generator writes (the message says how to fix it)."""


class ManifestJob(BaseModel):
    """One Dagster job of the code location."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="the job's name, as ADF launches it")
    description: str = Field(description="the job's description in the code location")
    partitioned: bool = Field(description="whether a run needs a partition key (`dagster/partition`)")
    dynamic_partitions: str | None = Field(
        default=None,
        description="name of the job's DynamicPartitionsDefinition (the partitions `addDynamicPartition` "
        "may add for a caller allowed to launch the job), if it has one",
    )


class JobsManifest(BaseModel):
    """Every job of the code location (Dagster's implicit asset job aside), sorted by name."""

    model_config = ConfigDict(frozen=True)

    generated_by: str = Field(default=GENERATOR, description="the command that writes this file")
    jobs: tuple[ManifestJob, ...]

    def dynamic_partitions(self) -> dict[str, str]:
        """Job name -> its dynamic partitions definition, for the jobs that have one."""
        return {job.name: job.dynamic_partitions for job in self.jobs if job.dynamic_partitions}

    @classmethod
    def of(cls, jobs: Sequence[ManifestJob]) -> JobsManifest:
        return cls(jobs=tuple(sorted(jobs, key=lambda job: job.name)))

    @classmethod
    def read(cls, path: Path = DEFAULT_PATH) -> JobsManifest:
        fix = f"generate it with `{GENERATOR}` (./run adf-templates)"
        try:
            text = path.read_text()
        except OSError as error:
            raise JobsManifestError(
                f"cannot read the jobs manifest {path} ({error.strerror}); {fix}"
            ) from None
        try:
            return cls.model_validate_json(text)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in problem['loc']) or 'the file'}: {problem['msg']}"
                for problem in error.errors(include_url=False, include_input=False)
            )
            raise JobsManifestError(f"the jobs manifest {path} is not valid ({problems}); {fix}") from None
