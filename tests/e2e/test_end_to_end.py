"""The README's main command (`python -m commands.demo`) end to end, as a user runs it.

Runs in a subprocess with its own DAGSTER_HOME, on synthetic data served from a directory, once with
the embedded local storage and once with Azure Blob storage on Azurite.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.synthetic import write_source

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def run_demo(tmp_path: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    source = tmp_path / "source"
    write_source(source, n_train=600, n_test=300)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "MNIST_", "DAGSTER_"))}
    env.update(
        {
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
            "MNIST_SOURCE": str(source),
            "MNIST_DATA_DIR": str(tmp_path / "storage"),
            "MNIST_WORK_DIR": str(tmp_path / "compute"),
            "MNIST_MIN_ACCURACY": "0.9",
            **extra_env,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "commands.demo"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_main_command_on_local_storage(tmp_path: Path) -> None:
    out = run_demo(tmp_path, {})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mnist_pipeline succeeded" in out.stdout
    predictions = tmp_path / "storage" / "predictions" / "mnist-t10k" / "predictions.csv"
    assert str(predictions) in out.stdout, "the command says where the results are"
    rows = list(csv.DictReader(predictions.open()))
    assert len(rows) == 300
    # The run is recorded in DAGSTER_HOME, so the UI shows it.
    assert any((tmp_path / "dagster_home").rglob("*.db"))

    again = run_demo(tmp_path, {})
    assert again.returncode == 0
    assert "Not retraining: model" in again.stderr
    assert "Not rescoring batch 'mnist-t10k'" in again.stderr


@pytest.mark.slow
def test_main_command_on_azure_blob_storage(tmp_path: Path, azurite: dict[str, str]) -> None:
    from azure.storage.blob import ContainerClient

    out = run_demo(
        tmp_path,
        {
            "MNIST_STORAGE": "azure_blob",
            "AZURE_STORAGE_CONTAINER": "e2e",
            "AZURE_STORAGE_CONNECTION_STRING": azurite["connection_string"],
        },
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert azurite["account_key"] not in out.stdout + out.stderr, "no secret in the output"
    container = ContainerClient.from_connection_string(azurite["connection_string"], "e2e")
    names = set(container.list_blob_names())
    assert "predictions/mnist-t10k/predictions.csv" in names
    assert "models/mnist/current.json" in names
    assert any(n.startswith("raw/mnist/") and n.endswith("train-images-idx3-ubyte.gz") for n in names)
    body = container.download_blob("predictions/mnist-t10k/predictions.csv").readall().decode()
    assert len(body.splitlines()) == 301
