"""The files under `adf/`: writing them all from the jobs, and telling how the checked-in ones differ."""

from __future__ import annotations

import difflib
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adf_bridge.jobs_manifest import ADF_DIR, FILE_NAME
from adf_bridge.templates.arm import build_arm_template, build_template_manifest
from adf_bridge.templates.jobs import JobInfo, jobs_manifest, jobs_of_code_location
from adf_bridge.templates.pipeline import build_pipeline

OUTPUT_DIR = ADF_DIR
GENERATED_FOLDERS = ("pipelines", "templates")  # replaced as a whole: a job that is gone leaves nothing


def render(value: Any) -> str:
    """A file's text: indented JSON, as checked in."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def generate(out: Path, jobs: Sequence[JobInfo] | None = None) -> list[Path]:
    """Write every file under `out` (replacing what was there); returns the paths written."""
    jobs = jobs_of_code_location() if jobs is None else jobs
    for sub in GENERATED_FOLDERS:
        shutil.rmtree(out / sub, ignore_errors=True)
    files: dict[Path, Any] = {}
    for job in jobs:
        pipeline = build_pipeline(job)
        name = pipeline["name"]
        files[out / "pipelines" / f"{job.name}.json"] = pipeline
        files[out / "templates" / name / f"{name}.json"] = build_arm_template(pipeline)
        files[out / "templates" / name / "manifest.json"] = build_template_manifest(pipeline)
    files[out / FILE_NAME] = jobs_manifest(jobs).model_dump(mode="json")
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(content))
    return list(files)


def _generated_files(root: Path) -> set[Path]:
    """The files under `root` that the generator owns, relative to it."""
    found = {p.relative_to(root) for sub in GENERATED_FOLDERS for p in (root / sub).rglob("*.json")}
    if (root / FILE_NAME).is_file():
        found.add(Path(FILE_NAME))
    return found


def stale_files(checked_in: Path, jobs: Sequence[JobInfo] | None = None) -> list[str]:
    """Differences between `checked_in` and freshly generated files, as readable lines (none: up to date)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh, jobs)
        problems: list[str] = []
        wanted = _generated_files(fresh)
        present = _generated_files(checked_in)
        for rel in sorted(present - wanted):
            problems.append(f"{checked_in / rel}: no job generates it any more (delete it)")
        for rel in sorted(wanted):
            target = checked_in / rel
            if rel not in present:
                problems.append(f"{target}: missing")
                continue
            new, old = (fresh / rel).read_text(), target.read_text()
            if new != old:
                diff = difflib.unified_diff(
                    old.splitlines(),
                    new.splitlines(),
                    f"{target} (checked in)",
                    "(generated)",
                    lineterm="",
                    n=1,
                )
                problems.append(f"{target}: differs from the code location\n" + "\n".join(list(diff)[:40]))
        return problems


def write_zips(templates: Path, dest: Path) -> list[Path]:
    """One zip per template folder, as ADF Studio's "Import pipeline template" expects."""
    dest.mkdir(parents=True, exist_ok=True)
    return [
        Path(shutil.make_archive(str(dest / folder.name), "zip", folder))
        for folder in sorted(p for p in templates.iterdir() if p.is_dir())
    ]
