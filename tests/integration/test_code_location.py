"""Loading the code location: no Azure variables, no network, no heavy Azure SDK."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, socket, sys, time
def refuse(*a, **k):
    raise AssertionError(f"network access while loading the code location: {a}")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
t = time.perf_counter()
from orchestration.definitions import defs
seconds = time.perf_counter() - t
repo = defs.get_repository_def()
print(json.dumps({
    "seconds": seconds,
    "jobs": sorted(j.name for j in repo.get_all_jobs()),
    "assets": sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()),
    "heavy": sorted(m for m in sys.modules if m == "azureml" or m.startswith(("azureml.", "azure.ai.ml"))),
    "azure_loaded": sorted(m for m in sys.modules if m.startswith("azure.")),
}))
"""


def test_loads_without_azure_variables_network_or_heavy_sdks(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "MNIST_"))}
    env["HOME"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["heavy"] == []
    assert info["azure_loaded"] == [], "even azure-storage-blob is imported lazily"
    assert info["assets"] == ["mnist_model", "mnist_model_serving", "mnist_predictions", "raw_mnist"]
    assert {"mnist_pipeline", "train_model", "score_batch"} <= set(info["jobs"])


def test_unknown_setting_fails_loading_with_a_clear_message(tmp_path: Path) -> None:
    env = {**os.environ, "MNIST_STORAG": "azure_blob"}
    out = subprocess.run(
        [sys.executable, "-c", "import orchestration.definitions"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "unknown setting(s) MNIST_STORAG" in out.stderr


def test_events_mode_gives_every_sensor_its_queue() -> None:
    from orchestration.definitions import build_definitions
    from orchestration.settings import Settings

    settings = Settings.from_env(
        {
            "MNIST_STORAGE": "azure_blob",
            "AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
            "MNIST_SENSOR_MODE": "events",
        }
    )
    repo = build_definitions(settings).get_repository_def()
    assert {s.name: sorted(s.required_resource_keys) for s in repo.sensor_defs} == {
        "inference_batch_sensor": ["inference_events", "storage"],
        "training_data_sensor": ["storage", "training_events"],
        "model_rollout_sensor": [],  # evaluates automation conditions; its runs use the assets' resources
    }
    # Dagster checks a sensor's resources only when it ticks: check them here.
    provided = set(repo.get_top_level_resources())
    assert all(s.required_resource_keys <= provided for s in repo.sensor_defs)


SOURCE_PROBE = """
import json
from orchestration.definitions import defs
print(json.dumps({"source": defs.resources["mnist_source"].location}))
"""
CODE = ("orchestration", "assets", "resources", "workload", "instance_plugins", "adf_bridge")


def _project_copy(tmp_path: Path) -> Path:
    """The project's code and workspace.yaml under `tmp_path/project`, without its .env."""
    root = tmp_path / "project"
    for package in CODE:
        shutil.copytree(PROJECT_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "workspace.yaml", root / "workspace.yaml")
    return root


def test_code_location_started_as_by_run_ui_reads_the_projects_settings_file(tmp_path: Path) -> None:
    """`MNIST_SOURCE=... ./run demo`, then `./run ui`: the UI's runs must use the same source.

    A copy of the project with a `.env` in its root; the code location is loaded as `./run ui` loads it:
    a fresh interpreter started from $DAGSTER_HOME, with no MNIST_* variable in its environment.
    """
    root = _project_copy(tmp_path)
    (root / ".env").write_text("# written after ./run demo said how\nMNIST_SOURCE=/srv/mnist-mirror\n")
    home = root / ".dagster_home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "MNIST_"))}
    env.update(HOME=str(tmp_path), DAGSTER_HOME=str(home), PYTHONPATH=str(root))
    out = subprocess.run(
        [sys.executable, "-c", SOURCE_PROBE],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"source": "/srv/mnist-mirror"}


def test_warm_process_for_run_workers_reads_the_settings_file_and_restarts_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs from the UI start as forks of the warm process: they must see the settings file too, and
    an edited file must not leave them with the old values."""
    import dagster as dg

    from instance_plugins.warm_process import WarmProcess

    root = _project_copy(tmp_path)
    env_file = root / ".env"
    env_file.write_text("MNIST_SOURCE=/srv/mnist-mirror\n")
    a_while_ago = time.time() - 60  # not "written as the warm process started", which counts as changed
    os.utime(env_file, (a_while_ago, a_while_ago))
    # A second preload module, imported after the code location: what the environment that run workers
    # are forked with holds.
    seen = tmp_path / "seen"
    (root / "probe.py").write_text(f"import os\nopen({str(seen)!r}, 'w').write(os.environ['MNIST_SOURCE'])\n")
    os.utime(root / "probe.py", (a_while_ago, a_while_ago))  # it too is watched for changes
    for name in [k for k in os.environ if k.startswith(("AZURE", "MNIST_"))]:
        monkeypatch.delenv(name)  # the warm process inherits the launcher's (this process's) environment
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        warm = WarmProcess.start(
            (sys.executable, str(root)),
            ["orchestration.definitions", "probe"],
            dg.serialize_value(instance.get_ref()),
            timeout=120,
        )
        try:
            assert warm.modules == {"orchestration.definitions": None, "probe": None}
            assert seen.read_text() == "/srv/mnist-mirror"
            assert warm.stale_reason() is None
            env_file.write_text("MNIST_SOURCE=/srv/another-mirror\n")
            assert warm.stale_reason() == f"{env_file.resolve()} changed"
        finally:
            warm.close()
