"""The deployment scripts parse: `bash -n` on deploy/azure/*.sh and `sh -n` on the image's
entrypoint (POSIX sh: the slim image's /bin/sh is dash). Their az commands are checked against
azure-cli's option table in tests/unit/test_azure_commands.py; nothing here talks to Azure."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.instance import PROJECT_ROOT

SCRIPTS = sorted((PROJECT_ROOT / "deploy" / "azure").glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_entrypoint_is_posix_sh() -> None:
    entrypoint = PROJECT_ROOT / "deploy" / "image" / "entrypoint.sh"
    assert entrypoint.read_text().startswith("#!/bin/sh\n")
    shell = "dash" if Path("/bin/dash").exists() else "sh"
    result = subprocess.run([shell, "-n", str(entrypoint)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
