"""The user's settings file: `.env` in the project root, so that a setting given once holds for every command.

The project root is the directory holding `workspace.yaml` (and `run`, which runs every command
there). Each line of the file is `NAME=value` (python-dotenv syntax, `#` comments); it may hold any
variable the settings read, secrets included, since it stays on this machine (.gitignore lists it).
A variable set in the environment wins over the file, so `MNIST_SOURCE=... ./run demo` still
overrides it for one command. `MNIST_ENV_FILE` names another file, or, set empty, turns the file off
(`./run test` does, so tests never depend on a developer's settings).

The code location reads it when it reads its settings (`Settings.from_env`) and puts its variables
into the process environment: secrets are resolved from there when a run starts, and the processes
that start runs (code server, warm run launcher, run workers) inherit them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from dotenv import dotenv_values

from orchestration.settings.base import PROJECT_ROOT, EnvironmentSettings, variable
from orchestration.settings.errors import SettingsError

ENV_FILE_VARIABLE = "MNIST_ENV_FILE"
DEFAULT_ENV_FILE = PROJECT_ROOT / ".env"


class SettingsFileSettings(EnvironmentSettings):
    """Settings file: the file of settings kept for every command, read before any other setting.

    Unlike every other setting, `MNIST_ENV_FILE` set empty is not unset: it turns the file off. A variable
    set in the environment wins over the file.
    """

    path: Path = variable(
        ENV_FILE_VARIABLE,
        DEFAULT_ENV_FILE,
        "the file of `NAME=value` lines read by every command (code location, demo, gateway); empty: none",
        expected="a file path, or empty",
    )


def env_file_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The settings file this process reads: `MNIST_ENV_FILE` when set (None when set empty), else `.env`
    in the project root."""
    environ = os.environ if environ is None else environ
    given = environ.get(ENV_FILE_VARIABLE)
    if given is None:
        return DEFAULT_ENV_FILE
    return Path(given).expanduser() if given.strip() else None


def env_file_values(path: Path | None) -> dict[str, str]:
    """The variables `path` sets (none when it is None or, for the default file, absent)."""
    if path is None:
        return {}
    if not path.is_file():
        if path == DEFAULT_ENV_FILE:
            return {}
        raise SettingsError(
            f"{ENV_FILE_VARIABLE}: expected a settings file, found {str(path)!r}: no such file"
        )
    values = dotenv_values(path)
    return {name: value for name, value in values.items() if value is not None and name != ENV_FILE_VARIABLE}


def load_env_file(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Put each variable of the settings file that `environ` (default: the process environment) does not
    set into it; returns those put. A variable already set, even empty, is left as it is."""
    environ = os.environ if environ is None else environ
    added = {
        name: value for name, value in env_file_values(env_file_path(environ)).items() if name not in environ
    }
    environ.update(added)
    return added
