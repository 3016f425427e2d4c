"""Product code names only settings that exist.

Every `MNIST_*` / `AZURE_*` name in the product sources is a variable of a settings model (the ADF
gateway's included when it has one), a prefix of such variables, or listed below. A misspelt name in a
message or a docstring sends the reader to a setting that does nothing.
"""

import difflib
import re
from pathlib import Path

from orchestration.settings.base import variables
from orchestration.settings.reference import documented_models

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PRODUCT = (
    "orchestration", "resources", "assets", "adf_bridge", "instance_plugins", "commands", "workload", "deploy",
)  # fmt: skip
NAME = re.compile(r"\b(?:MNIST|AZURE)_[A-Z0-9_]+\b")

NOT_PROJECT_SETTINGS = {
    # Python constants that look like variables.
    "MNIST_FILES",  # workload.ingest: the four MNIST file names
    # Read by azure-identity itself (DefaultAzureCredential), not by the project.
    "AZURE_AUTHORITY_HOST",  # sovereign clouds
    "AZURE_FEDERATED_TOKEN_FILE",  # workload identity
    # Read by instance/production/dagster.yaml (where the Container Apps launcher starts runs), set by
    # deploy/azure/container-apps.sh.
    "AZURE_SUBSCRIPTION_ID",
}


def named_in_product() -> dict[str, list[str]]:
    """Each name, and where it appears (path:line)."""
    found: dict[str, list[str]] = {}
    for top in PRODUCT:
        for path in sorted((PROJECT_ROOT / top).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                continue
            for number, line in enumerate(text.splitlines(), 1):
                for name in NAME.findall(line):
                    found.setdefault(name, []).append(f"{path.relative_to(PROJECT_ROOT)}:{number}")
    return found


def test_product_code_names_only_settings_that_exist() -> None:
    known = {var.name for model in documented_models() for var in variables(model)} | NOT_PROJECT_SETTINGS
    problems = []
    for name, places in sorted(named_in_product().items()):
        if name in known or (name.endswith("_") and any(k.startswith(name) for k in known)):
            continue
        close = [] if name.endswith("_") else difflib.get_close_matches(name, known, n=1, cutoff=0.7)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"{name}{hint}: {', '.join(places[:3])}")
    assert not problems, "names that are no setting:\n" + "\n".join(problems)
