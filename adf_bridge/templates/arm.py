"""A pipeline as ADF Studio's "Import pipeline template" and an ARM deployment take it: an ARM template
with a `factoryName` parameter, and the template gallery's `manifest.json` beside it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _arm_escape(value: Any) -> Any:
    """ARM evaluates strings in [brackets] as its own expressions; `[[` makes them literal."""
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        return "[" + value
    if isinstance(value, dict):
        return {k: _arm_escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_arm_escape(v) for v in value]
    return value


def build_arm_template(pipeline: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline as an ARM template for a factory (what ADF's template import and ARM deploy take)."""
    return {
        "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"factoryName": {"type": "string", "metadata": "Data Factory name"}},
        "variables": {"factoryId": "[concat('Microsoft.DataFactory/factories/', parameters('factoryName'))]"},
        "resources": [
            {
                "name": f"[concat(parameters('factoryName'), '/{pipeline['name']}')]",
                "type": "Microsoft.DataFactory/factories/pipelines",
                "apiVersion": "2018-06-01",
                "properties": _arm_escape(pipeline["properties"]),
                "dependsOn": [],
            }
        ],
    }


def build_template_manifest(pipeline: Mapping[str, Any]) -> dict[str, Any]:
    """The template gallery's `manifest.json`: how ADF Studio lists the template."""
    return {
        "name": pipeline["name"],
        "description": pipeline["properties"]["description"],
        "icons": ["WebActivity", "IfCondition", "Until", "Fail"],
        "requires": {},
        "contributorType": "Community",
        "author": "mnist-orchestration",
        "annotations": ["Dagster", "GraphQL"],
        "services": ["Dagster"],
        "categories": ["Orchestration"],
    }
