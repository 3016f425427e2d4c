"""The configuration reference, docs/configuration.md, written from the settings models.

    python -m orchestration.settings.reference           # (re)write docs/configuration.md
    python -m orchestration.settings.reference --check   # exit 1 when it is out of date

Every variable of every model: name, what a valid value is, default, whether it is a secret, and what
it means, grouped by concern. The ADF gateway's model (`adf_bridge.gateway.settings.GatewaySettings`)
is included when it exists; any further model goes into `documented_models`.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from orchestration.settings.aggregate import OTHER_PROGRAMS, PREFIX, concerns
from orchestration.settings.base import PROJECT_ROOT, Variable, variables
from orchestration.settings.env_file import SettingsFileSettings

REFERENCE = PROJECT_ROOT / "docs" / "configuration.md"
GATEWAY_MODULE = "adf_bridge.gateway.settings"
COMMAND = "python -m orchestration.settings.reference"  # also: ./run config-docs


def gateway_settings() -> type[BaseSettings] | None:
    """The ADF gateway's settings model, when the gateway has one."""
    try:
        module = importlib.import_module(GATEWAY_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (GATEWAY_MODULE + ".").startswith(exc.name + "."):
            return None
        raise  # the module exists but something it imports does not
    return module.GatewaySettings


def documented_models() -> list[type[BaseSettings]]:
    """Every settings model of the project: the code location's concerns, then the gateway's."""
    models: list[type[BaseSettings]] = [SettingsFileSettings, *concerns().values()]
    if (gateway := gateway_settings()) is not None:
        models.append(gateway)
    return models


def _heading_and_intro(model: type[BaseSettings]) -> tuple[str, str]:
    """A model's docstring reads "Concern: what it covers. ..." -> ("Concern", the rest)."""
    doc = inspect.cleandoc(model.__doc__ or "")
    heading, colon, rest = doc.partition(": ")
    if not colon or "\n" in heading or len(heading) > 40:
        return model.__name__, doc
    return heading, rest[:1].upper() + rest[1:]


def _default(var: Variable) -> str:
    field = var.field
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value: Any = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, Path):
        if value.is_relative_to(PROJECT_ROOT):
            return f"`./{value.relative_to(PROJECT_ROOT).as_posix()}`"
        return f"`{value}`"
    if isinstance(value, str | int):
        return f"`{value}`" if str(value) else "empty"
    if isinstance(value, list | tuple | set | frozenset | dict) and not value:
        return "empty"
    return f"`{value!r}`"


def _cell(text: str) -> str:
    # A word with a <placeholder> goes in backticks, where Markdown does not take it for an HTML tag.
    text = re.sub(r"([^\s(]*<[^>\s]+>[^\s),;]*)", r"`\1`", text)
    return text.replace("|", "\\|").replace("\n", " ")


def _section(model: type[BaseSettings]) -> list[str]:
    heading, intro = _heading_and_intro(model)
    lines = [f"## {heading}", ""]
    if intro:
        lines += [intro, ""]
    lines += ["| Variable | Expected | Default | Secret | Meaning |", "|---|---|---|---|---|"]
    for var in variables(model):
        lines.append(
            f"| `{var.name}` | {_cell(var.expected)} | {_default(var)} | {'yes' if var.secret else 'no'} "
            f"| {_cell(var.description)} |"
        )
    return [*lines, ""]


def render(models: Sequence[type[BaseSettings]]) -> str:
    """The whole reference, for `models` in order."""
    others = ", ".join(f"`{p}*`" for p in OTHER_PROGRAMS)
    lines = [
        "# Configuration",
        "",
        f"<!-- Written by `{COMMAND}` from the settings models: edit those, then run it. -->",
        "",
        "Every setting is an environment variable, read once when the code location loads; an empty "
        f"variable counts as unset. An unknown `{PREFIX}*` variable is an error that lists the known ones "
        f"(a typo must not silently fall back to a default); {others} belong to the ADF gateway, which "
        "checks them itself. A bad value is reported with the variable, what was expected and what was found, "
        "when the code location loads: also the value of a backend that is not chosen, so a mistake shows "
        "at once rather than on the day that backend is switched on.",
        "",
        "Settings kept in `.env` in the project root (the directory holding `workspace.yaml`, where `./run` "
        "runs every command) hold for every command: the code location and the gateway read it, and a variable "
        "set in the environment wins over it (`.env.example` shows the format; `MNIST_ENV_FILE` below).",
        "",
        "Secrets are never read by the code location: resources receive a reference to the variable, "
        "resolved when a run uses the resource, so values never reach logs, metadata or error messages.",
        "",
    ]
    for model in models:
        lines += _section(model)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND, description="Write docs/configuration.md from the settings."
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    text = render(documented_models())
    if args.check:
        if not REFERENCE.exists() or REFERENCE.read_text() != text:
            print(
                f"{REFERENCE.relative_to(PROJECT_ROOT)} is out of date: run {COMMAND} (./run config-docs)",
                file=sys.stderr,
            )
            return 1
        return 0
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_text(text)
    print(f"wrote {REFERENCE.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
