"""The image (deploy/image/), without building it (tests/integration/test_image_build.py builds it
where a container engine is present; tests/integration/test_dockerfile_lint.py runs hadolint):

- the Dockerfile installs exactly the locks (pip, then requirements/image.txt, hashes required, wheels
  only) in its build stage, and the final stage installs nothing, runs as a non-root user, has a
  health check and the entrypoint;
- the build context (Dockerfile.dockerignore) holds every package of the project and what the
  entrypoint and the instance need;
- every role of the entrypoint runs a command that exists in the locked environment, with options
  that command has; the health check knows every long-running role.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import re
import shlex
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import click
import pytest

from deploy.image.healthcheck import check_for
from tests.support.instance import PROJECT_ROOT

IMAGE = PROJECT_ROOT / "deploy" / "image"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (IMAGE / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        found[-1].append(instruction)
    return found


def test_build_stage_installs_the_locks_and_only_them() -> None:
    build, final = stages()
    assert build[0][1].startswith("python:3.11-slim") and build[0][1].endswith(" AS build")
    assert final[0][1].startswith("python:3.11-slim"), "the final stage is the same slim base"
    copies = " ".join(args for op, args in build if op == "COPY")
    assert "requirements/pip.txt" in copies and "requirements/image.txt" in copies
    installs = [args for op, args in build if op == "RUN" and "pip install" in args]
    assert len(installs) == 1
    steps = [s.strip() for s in installs[0].split("&&")]
    pip_steps = [s for s in steps if "pip install" in s]
    assert pip_steps == [
        "/opt/venv/bin/python -m pip install --require-hashes -r /tmp/pip.txt",
        "/opt/venv/bin/python -m pip install --no-deps --require-hashes --only-binary=:all: -r /tmp/image.txt",
    ]
    # The final stage builds nothing: it copies the venv and the source, and installs no package.
    assert not [args for op, args in final if op == "RUN" and ("pip" in args or "apt" in args)]
    assert ("COPY", "--from=build /opt/venv /opt/venv") in final


def test_final_stage_runs_unprivileged_with_a_health_check_and_the_entrypoint() -> None:
    final = dict(stages()[1])
    assert final["USER"].split(":")[0] not in ("0", "root")
    assert "deploy/image/healthcheck.py" in final["HEALTHCHECK"]
    assert final["ENTRYPOINT"] == '["/app/deploy/image/entrypoint.sh"]'
    assert (IMAGE / "entrypoint.sh").stat().st_mode & 0o111, "the entrypoint is executable"
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in final["ENV"]


def in_context(relative: str) -> bool:
    """Whether Dockerfile.dockerignore lets `relative` into the build context (last match wins)."""
    included = True
    for line in (IMAGE / "Dockerfile.dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
        if (
            pattern == "**"
            or fnmatch.fnmatch(relative, pattern)
            or relative.startswith(pattern + "/")
            or (pattern.startswith("**/") and fnmatch.fnmatch(Path(relative).name, pattern[3:]))
        ):
            included = negate
    return included


def test_build_context_holds_the_project_and_nothing_else() -> None:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    for package in packages:
        if package == "deploy":
            continue  # deploy/azureml publishes to AzureML from a workstation; the image has no use for it
        assert in_context(f"{package}/__init__.py"), package
    needed = [
        "requirements/pip.txt", "requirements/image.txt", "workspace.yaml", "adf/jobs.json",
        "instance/production/dagster.yaml", "deploy/image/entrypoint.sh", "deploy/image/healthcheck.py",
        "workload/requirements.txt",
    ]  # fmt: skip
    for path in needed:
        assert (PROJECT_ROOT / path).exists() and in_context(path), path
    for path in (
        ".venv/bin/python",
        ".env",
        "tests/conftest.py",
        "node_modules/x",
        "orchestration/__pycache__/a.pyc",
    ):
        assert not in_context(path), path


def roles() -> dict[str, list[str]]:
    """Each role of entrypoint.sh and the command it execs (shell variables given their defaults)."""
    text = (IMAGE / "entrypoint.sh").read_text()
    text = re.sub(r'"\$\{[A-Z_]+:-([^}]*)\}"', r"\1", text).replace('"$workspace"', "/app/workspace.yaml")
    found = {}
    for role, body in re.findall(r"^  ([a-z-]+)\)\n(.*?);;", text, re.M | re.S):
        command = re.search(r"exec (.*)", body.replace("\\\n", " "))
        assert command, role
        found[role] = [a for a in shlex.split(command.group(1)) if a != '"$@"' and a != "$@"]
    return found


CONSOLE_SCRIPTS = {ep.name: ep for ep in entry_points(group="console_scripts")}


def resolve(argv: list[str]) -> tuple[click.Command, list[str]]:
    """The click command an argv runs (console script, then subcommands) and the options it passes."""
    script = CONSOLE_SCRIPTS[argv[0]]
    script.load()  # the console script's function exists; its click command is the module's `cli`
    command = importlib.import_module(script.module).cli
    assert isinstance(command, click.Command), argv[0]
    rest = argv[1:]
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        assert sub is not None, f"{argv}: no subcommand {rest[0]!r}"
        command, rest = sub, rest[1:]
    return command, [a for a in rest if a.startswith("-")]


def test_every_role_runs_a_real_command() -> None:
    found = roles()
    assert set(found) == {"webserver", "daemon", "code-server", "gateway", "run-worker"}
    for role, argv in found.items():
        if argv[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(f"{argv[2]}.__main__") is not None, role
            continue
        command, options = resolve(argv)
        known = {opt for param in command.params for opt in param.opts}
        assert set(options) <= known, f"{role}: {set(options) - known} are not options of {argv[:3]}"
    assert found["run-worker"][:3] == ["dagster", "api", "execute_run"]
    assert "orchestration.definitions" in found["code-server"]


@pytest.mark.parametrize(
    ("argv", "check"),
    [
        (["dagster-webserver", "-h", "0.0.0.0", "-p", "3000"], "http://127.0.0.1:3000/server_info"),
        (["python", "-m", "adf_bridge.gateway"], "http://127.0.0.1:8080/healthz"),
        (["dagster-daemon", "run", "-w", "x"], ["dagster-daemon", "liveness-check"]),
        (
            ["dagster", "code-server", "start", "-p", "3030"],
            ["dagster", "api", "grpc-health-check", "-p", "3030"],
        ),
        (["dagster", "api", "grpc", "-p", "4000"], ["dagster", "api", "grpc-health-check", "-p", "4000"]),
        (["dagster", "api", "execute_run", "{}"], None),
    ],
)
def test_health_check_knows_each_role(argv: list[str], check: object) -> None:
    assert check_for(argv, {}) == check


def test_health_check_commands_exist() -> None:
    for argv in (["dagster-daemon", "liveness-check"], ["dagster", "api", "grpc-health-check", "-p", "1"]):
        command, options = resolve(argv)
        assert set(options) <= {opt for param in command.params for opt in param.opts}
