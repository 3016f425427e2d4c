"""Builds the image (deploy/image/Dockerfile) and checks it from the inside: the locked environment
imports Dagster, dagster-k8s and the code location, every role's command answers --help, and the
container runs as a non-root user. Needs a container engine that can pull the python base image;
skipped (with the reason) where `docker info` fails."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.support.instance import PROJECT_ROOT


def engine_problem() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "no container engine: the docker CLI is not installed"
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        return (
            f"no container engine: `docker info` failed ({(info.stderr.strip().splitlines() or ['?'])[-1]})"
        )
    return None


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    problem = engine_problem()
    if problem:
        pytest.skip(problem)
    tag = f"mnist-dagster-test:{uuid.uuid4().hex[:12]}"
    build = subprocess.run(
        ["docker", "build", "-f", "deploy/image/Dockerfile", "-t", tag, "."],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    yield tag
    subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=120)


def run(image: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "run", "--rm", image, *argv], capture_output=True, text=True, timeout=300
    )


@pytest.mark.timeout(2400)
def test_image_imports_the_locked_environment_and_the_code_location(image: str) -> None:
    result = run(
        image, "python", "-c", "import dagster, dagster_k8s, orchestration.definitions, adf_bridge.gateway"
    )
    assert result.returncode == 0, result.stderr
    assert run(image, "id", "-u").stdout.strip() != "0"


@pytest.mark.parametrize("role", ["webserver", "daemon", "code-server", "gateway", "run-worker"])
def test_each_role_starts_its_command(image: str, role: str) -> None:
    if role == "gateway":
        # The gateway has no --help: without its settings it stops at once, naming what is missing.
        result = run(image, role)
        assert "MNIST_GATEWAY" in result.stdout + result.stderr
        return
    result = run(image, role, "--help")
    assert result.returncode == 0, result.stderr
