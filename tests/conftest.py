from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from resources.storage import AzureBlobObjectStore, LocalObjectStore, ObjectStore
from tests.support.azurite import AZURITE, run_azurite
from tests.support.synthetic import write_source


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
