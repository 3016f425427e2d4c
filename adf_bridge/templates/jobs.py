"""What the code location says about its jobs: the one part of the template generator that loads it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adf_bridge.jobs_manifest import JobsManifest, ManifestJob


@dataclass(frozen=True)
class JobInfo:
    """What a template needs to know about one Dagster job."""

    name: str
    description: str
    run_config: Mapping[str, Any]  # the job's op config with every default filled in
    partitioned: bool
    dynamic_partitions: str | None = None  # name of its DynamicPartitionsDefinition, if it has one


def jobs_of_code_location() -> list[JobInfo]:
    """Job names, descriptions, run-config defaults and partitioning, read from the loaded Definitions."""
    # Imported here: the rest of adf_bridge (the gateway above all) must load without Dagster's code
    # location, its settings or its imports.
    import dagster as dg
    from dagster._config.post_process import resolve_defaults

    from orchestration.definitions import defs

    infos: list[JobInfo] = []
    for job in sorted(defs.get_repository_def().get_all_jobs(), key=lambda j: j.name):
        if job.name.startswith("__"):  # Dagster's implicit asset job
            continue
        resolved = resolve_defaults(job.run_config_schema.config_type, {})
        if not resolved.success:
            raise ValueError(f"job {job.name!r}: its run config has required fields without defaults")
        # Sorted: Dagster's resolved config has no stable op order, the checked-in files must.
        ops = {
            op: _sorted(v)
            for op, v in sorted((resolved.value or {}).get("ops", {}).items())
            if v.get("config")
        }
        infos.append(
            JobInfo(
                name=job.name,
                description=job.description or "",
                run_config={"ops": ops} if ops else {},
                partitioned=job.partitions_def is not None,
                dynamic_partitions=(
                    job.partitions_def.name
                    if isinstance(job.partitions_def, dg.DynamicPartitionsDefinition)
                    else None
                ),
            )
        )
    return infos


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    return value


def jobs_manifest(jobs: Sequence[JobInfo]) -> JobsManifest:
    """The jobs manifest (`adf/jobs.json`) for these jobs: what the gateway reads instead of the code location."""
    return JobsManifest.of(
        [
            ManifestJob(
                name=job.name,
                description=job.description,
                partitioned=job.partitioned,
                dynamic_partitions=job.dynamic_partitions,
            )
            for job in jobs
        ]
    )
