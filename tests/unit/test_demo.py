"""The main command's words to its user: offline, and after a run with settings from the shell."""

import os
import socket
from pathlib import Path

import pytest

import workload.ingest
from commands import demo


def test_offline_demo_ends_in_one_line_naming_the_failure_and_the_mirror_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MNIST_", "AZURE_"))}
    clean.update(
        MNIST_ENV_FILE="",
        MNIST_DATA_DIR=str(tmp_path / "storage"),
        MNIST_WORK_DIR=str(tmp_path / "work"),
        DAGSTER_HOME=str(tmp_path / "home"),
    )
    monkeypatch.setattr(os, "environ", clean)

    def offline(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    monkeypatch.setattr(workload.ingest.time, "sleep", lambda _seconds: None)  # no backoff between attempts

    code = demo.main()

    out = capsys.readouterr()
    assert code != 0
    assert "Traceback" not in out.err + out.out
    (line,) = [line for line in out.err.splitlines() if line.strip()]
    assert line.startswith("error: fetching t10k-images-idx3-ubyte.gz from https://ossci-datasets")
    assert "Temporary failure in name resolution" in line
    assert "MNIST_SOURCE=/path/to/mnist-mirror ./run demo" in line


def test_settings_from_the_shell_only_come_with_how_to_keep_them(tmp_path: Path) -> None:
    env_file = demo.PROJECT_ROOT / ".env"
    environ = {
        "MNIST_SOURCE": "/srv/my mirror",  # from the shell
        "MNIST_MIN_ACCURACY": "0.9",  # from .env: already kept
        "AZURE_STORAGE_KEY": "c2VjcmV0",  # a secret: never shown
        "HOME": str(tmp_path),
    }
    hint = demo.keep_hint(environ, {"MNIST_MIN_ACCURACY": "0.9"}, env_file)

    assert "echo 'MNIST_SOURCE=/srv/my mirror' >> " + str(env_file) in hint
    assert "echo 'AZURE_STORAGE_KEY=<its value>'" in hint and "c2VjcmV0" not in hint
    assert "MNIST_MIN_ACCURACY" not in hint
    assert demo.keep_hint({"HOME": str(tmp_path)}, {}, env_file) == "", "nothing to say with defaults only"
