"""Every `az` command in deploy/azure/*.sh and in docs/deployment.md and docs/runbook.md exists in
azure-cli and is called with options it has (and its required ones), checked against
deploy/azure/az-commands.json: the option table of azure-cli 2.91.0, written from each command's
`--help` by deploy/azure/az_commands.py. Option values (SKUs, regions, versions) are not checked, and
no command is run against Azure."""

from __future__ import annotations

import json

import pytest

from deploy.azure.az_commands import SOURCES, TABLE, command_of, invocations, problems, shell_text

COMMANDS = json.loads(TABLE.read_text())["commands"]
CALLS = [(source.name, argv) for source in SOURCES for argv in invocations(shell_text(source))]


def test_the_sources_are_read() -> None:
    names = {name for name, _ in CALLS}
    assert {"foundation.sh", "aks.sh", "container-apps.sh", "deployment.md", "runbook.md"} <= names
    assert len(CALLS) > 50


@pytest.mark.parametrize(("source", "argv"), CALLS, ids=[f"{s}:{' '.join(a[1:4])}" for s, a in CALLS])
def test_az_call_matches_azure_cli(source: str, argv: list[str]) -> None:
    assert problems(argv, COMMANDS) == []


def test_the_check_bites() -> None:
    assert problems(["az", "storage", "acount", "create"], COMMANDS)  # no such command
    assert problems(
        ["az", "storage", "account", "create", "-g", "rg", "--name", "x", "--sku-name", "y"], COMMANDS
    )
    assert problems(["az", "storage", "account", "create", "--name", "x"], COMMANDS)  # no resource group
    assert not problems(["az", "storage", "account", "create", "-g", "rg", "-n", "x"], COMMANDS)


def test_command_substitutions_and_continuations_are_found() -> None:
    text = 'X=$(az group show --name "$RG" \\\n  --query id --output tsv)\naz role assignment create --assignee "$(az ad signed-in-user show --query id)" --role R --scope "$X"\n'
    found = [" ".join(a) for a in invocations(text)]
    assert found == [
        "az group show --name $RG --query id --output tsv",
        "az ad signed-in-user show --query id",
        "az role assignment create --assignee $(az ad signed-in-user show --query id) --role R --scope $X",
    ]
    assert command_of(invocations(text)[2], COMMANDS) == "role assignment create"
