"""What a Batch node is given to run a workload task: the workload package, the task's files and command.

- The workload package is uploaded to Blob once per content hash (READY written last) and delivered as
  resource files; the node installs its requirements in the pool's start task.
- The step's inputs are resource files (`storageContainerUrl` + `blobPrefix`); its outputs are uploaded by
  Batch `outputFiles` to a per-job staging prefix, published later under the requested prefixes.
- stdout/stderr are uploaded to the staging prefix when the task ends, whatever the outcome, so they
  survive an ephemeral pool.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from resources.compute.base import WorkloadRequest
from resources.storage import ObjectStore

from .config import AzureBatchConfig

PROJECT_ROOT = Path(__file__).resolve().parents[3]
TASK_ID = "workload"  # one task per job; the job id carries the step's identity
STAGING = "_compute/batch"  # per-job staging of outputs and logs, in the data container
WORKLOAD_PREFIX = "_compute/workload"  # workload code, one folder per content hash


def package_dir(config: AzureBatchConfig) -> Path:
    return Path(config.package_dir) if config.package_dir else PROJECT_ROOT / "workload"


def module(config: AzureBatchConfig) -> str:
    """The module the task runs (`python -m <module> <task>`): the package folder's name."""
    return package_dir(config).name


def _package_files(config: AzureBatchConfig) -> list[Path]:
    root = package_dir(config)
    return sorted(
        p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def code_hash(config: AzureBatchConfig) -> str:
    root = package_dir(config)
    digest = hashlib.sha256()
    for path in _package_files(config):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def upload_workload(config: AzureBatchConfig, store: ObjectStore) -> str:
    """Upload the workload package once per content hash (READY last); returns the hash."""
    digest = code_hash(config)
    base = f"{WORKLOAD_PREFIX}/{digest}"
    if store.exists(f"{base}/READY"):
        return digest
    root = package_dir(config)
    for path in _package_files(config):
        store.put_file(f"{base}/{module(config)}/{path.relative_to(root).as_posix()}", path)
    store.put_bytes(f"{base}/READY", b"")
    return digest


def requirements(config: AzureBatchConfig) -> list[str]:
    """The workload's requirement lines (the package's requirements.txt, else the project workload's)."""
    path = package_dir(config) / "requirements.txt"
    if not path.exists():
        path = PROJECT_ROOT / "workload" / "requirements.txt"
    return [
        ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.strip().startswith("#")
    ]


def task_body(
    config: AzureBatchConfig,
    request: WorkloadRequest,
    job_id: str,
    digest: str,
    data_sas: str,
    env: Mapping[str, str],
) -> dict[str, Any]:
    """The Batch task (REST wire form) running `request` with the workload package `digest`.

    `data_sas`: the data container's SAS URL (inputs, outputs, logs); `env`: the task's environment
    (the Pipes bootstrap and how to reach the Pipes container).
    """
    resource_files: list[dict[str, Any]] = [
        {"storageContainerUrl": data_sas, "blobPrefix": f"{WORKLOAD_PREFIX}/{digest}/", "filePath": "code"}
    ]
    args: list[str] = [config.python, "-m", module(config), request.task]
    for name, prefix in request.inputs.items():
        folder = prefix.rstrip("/") + "/"
        resource_files.append(
            {"storageContainerUrl": data_sas, "blobPrefix": folder, "filePath": f"in/{name}"}
        )
        # Batch keeps the blob path under filePath: in/<name>/<prefix>/...
        args += ["--input", f"{name}=in/{name}/{folder.rstrip('/')}"]
    output_files: list[dict[str, Any]] = []
    for name in request.outputs:
        args += ["--output", f"{name}=out/{name}"]
        output_files.append(
            {
                "filePattern": f"out/{name}/**/*",
                "destination": {
                    "container": {"containerUrl": data_sas, "path": f"{STAGING}/{job_id}/outputs/{name}"}
                },
                "uploadOptions": {"uploadCondition": "tasksuccess"},
            }
        )
    for stream in ("stdout", "stderr"):
        # Kept after the task (and after an ephemeral pool is gone): the logs, whatever the outcome.
        output_files.append(
            {
                "filePattern": f"../{stream}.txt",
                "destination": {
                    "container": {"containerUrl": data_sas, "path": f"{STAGING}/{job_id}/logs/{stream}.txt"}
                },
                "uploadOptions": {"uploadCondition": "taskcompletion"},
            }
        )
    args += ["--params", json.dumps(dict(request.params), sort_keys=True)]
    outputs = " ".join(shlex.quote(f"out/{name}") for name in request.outputs)
    script = (
        'cd "$AZ_BATCH_TASK_WORKING_DIR" && '
        + (f"mkdir -p {outputs} && " if outputs else "")
        + f'export PYTHONPATH="$PWD/code/{WORKLOAD_PREFIX}/{digest}" PYTHONUNBUFFERED=1 && '
        + "exec "
        + shlex.join(args)
    )
    return {
        "id": TASK_ID,
        "displayName": f"{request.task} {request.idempotency_key}"[:1024],
        "commandLine": f"/bin/bash -c {shlex.quote(script)}",
        "resourceFiles": resource_files,
        "outputFiles": output_files,
        "environmentSettings": [{"name": k, "value": v} for k, v in env.items()],
        "constraints": {
            "maxWallClockTime": duration(timedelta(hours=config.task_max_wall_clock_hours)),
            # Dagster owns retries (they reattach or resubmit); Batch must not rerun the task behind its back.
            "maxTaskRetryCount": 0,
        },
        "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}},
    }


def duration(delta: timedelta) -> str:
    """ISO 8601 duration as Batch expects it (e.g. PT1440M for a day)."""
    seconds = int(delta.total_seconds())
    return f"PT{seconds}S" if seconds % 60 else f"PT{seconds // 60}M"
