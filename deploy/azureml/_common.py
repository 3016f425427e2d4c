"""What the AzureML deploy scripts share: the command-line options that name the workspace."""

from __future__ import annotations

import argparse
from collections.abc import Mapping


def add_workspace_arguments(parser: argparse.ArgumentParser, defaults: Mapping[str, str]) -> None:
    """--subscription, --resource-group, --workspace and --datastore, defaulting to the project's AzureML
    settings (`defaults`); the first three are required where the settings do not name them."""
    parser.add_argument(
        "--subscription", default=defaults.get("subscription_id"), required="subscription_id" not in defaults
    )
    parser.add_argument(
        "--resource-group", default=defaults.get("resource_group"), required="resource_group" not in defaults
    )
    parser.add_argument(
        "--workspace", default=defaults.get("workspace_name"), required="workspace_name" not in defaults
    )
    parser.add_argument("--datastore", default=defaults.get("datastore", "workspaceblobstore"))
