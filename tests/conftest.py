"""Fixtures shared by every layer, and the layer markers.

Each test gets the marker of the folder it lives in (`unit`, `contract`, `integration`, `e2e`), so a
tier is a marker expression: `./run test-fast` runs `-m unit`. A unit test must not start a process
(no Azurite, no Dagster subprocess, no workload): the `_no_processes` guard fails one that tries,
saying where it belongs instead.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from resources.storage import AzureBlobObjectStore, LocalObjectStore, ObjectStore
from tests.support.azurite import AZURITE, run_azurite
from tests.support.synthetic import write_source

LAYERS = ("unit", "contract", "integration", "e2e")
# Tests set the settings they need: a developer's ./.env (orchestration/settings/env_file.py) must not
# change them, also when pytest is run without ./run.
os.environ["MNIST_ENV_FILE"] = ""
TESTS_ROOT = Path(__file__).resolve().parent


def _layer(item: pytest.Item) -> str:
    relative = item.path.resolve().relative_to(TESTS_ROOT)
    layer = relative.parts[0]
    if layer not in LAYERS:
        raise pytest.UsageError(
            f"{relative}: tests live in one of tests/{{{','.join(LAYERS)}}}/, found it in tests/{layer}/"
        )
    return layer


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(_layer(item))
    if hasattr(config, "workerinput"):
        # Spread over pytest-xdist workers (`./run test`): the longest layers first, so that the
        # minutes-long end-to-end files start at once and the short ones fill the other worker.
        items.sort(key=lambda item: -LAYERS.index(_layer(item)))


@pytest.fixture(autouse=True)
def _no_processes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests run in this process only: that is what keeps the fast tier fast."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(self: subprocess.Popen[bytes], args: object, *_: object, **__: object) -> None:
        raise AssertionError(
            f"{request.node.nodeid} starts a process ({args!r}); "
            "unit tests must not: move it to tests/integration/ (or tests/contract/ for Azurite)"
        )

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if not AZURITE.exists():
        pytest.skip("Azurite is not installed (node_modules missing): './run test' installs it")
    with run_azurite(tmp_path_factory.mktemp("azurite")) as info:
        yield info


@pytest.fixture(params=["local", "azurite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """The same object-store contract, on a local directory and on Azurite."""
    if request.param == "local":
        return LocalObjectStore(root=str(tmp_path / "store"))
    info = request.getfixturevalue("azurite")
    return AzureBlobObjectStore(
        container=f"t{uuid.uuid4().hex[:16]}", connection_string=info["connection_string"]
    )


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out like an MNIST mirror (four IDX files + md5sums) with learnable digits."""
    directory = tmp_path_factory.mktemp("mnist-source")
    write_source(directory)
    return directory
