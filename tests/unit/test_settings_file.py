"""The user's settings file: `.env` in the project root, read by the code location and by the gateway."""

import os
from pathlib import Path

import pytest

from adf_bridge.gateway import settings as gateway_settings
from adf_bridge.gateway.settings import GatewaySettings
from orchestration.settings import Settings, SettingsError
from orchestration.settings.base import PROJECT_ROOT

MIRROR = "/srv/mnist-mirror"


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A process environment of our own (reading the settings file writes into it), without MNIST_* or AZURE_*."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MNIST_", "AZURE_"))}
    monkeypatch.setattr(os, "environ", clean)
    return clean


def test_the_settings_file_is_dot_env_beside_workspace_yaml() -> None:
    from orchestration.settings.env_file import DEFAULT_ENV_FILE, env_file_path

    assert (PROJECT_ROOT / "workspace.yaml").is_file() and DEFAULT_ENV_FILE == PROJECT_ROOT / ".env"
    assert env_file_path({}) == DEFAULT_ENV_FILE
    assert gateway_settings.env_file_path({}) == DEFAULT_ENV_FILE, "the gateway reads the same file"


def test_a_setting_in_the_file_holds_and_the_environment_wins(
    environ: dict[str, str], tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"# kept for every command\nMNIST_SOURCE={MIRROR}\nMNIST_MIN_ACCURACY=0.5\n")
    environ["MNIST_ENV_FILE"] = str(env_file)
    environ["MNIST_MIN_ACCURACY"] = "0.9"

    settings = Settings.from_env()

    assert settings.source.location == MIRROR
    assert settings.quality.min_accuracy == 0.9, "a variable set in the environment wins over the file"
    assert environ["MNIST_SOURCE"] == MIRROR, "put into the environment, where runs resolve secrets"


def test_a_secret_in_the_file_reaches_the_environment_not_the_settings(
    environ: dict[str, str], tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MNIST_STORAGE=azure_blob\nAZURE_STORAGE_CONNECTION_STRING='AccountKey=c2VjcmV0'\n")
    environ["MNIST_ENV_FILE"] = str(env_file)

    settings = Settings.from_env()

    assert "c2VjcmV0" not in repr(settings)
    assert environ["AZURE_STORAGE_CONNECTION_STRING"] == "AccountKey=c2VjcmV0"


def test_the_file_can_be_turned_off_and_a_missing_one_is_named(
    environ: dict[str, str], tmp_path: Path
) -> None:
    environ["MNIST_ENV_FILE"] = ""
    assert Settings.from_env().source.location.startswith("https://")

    environ["MNIST_ENV_FILE"] = str(tmp_path / "nowhere.env")
    with pytest.raises(
        SettingsError, match=r"MNIST_ENV_FILE: expected a settings file, found '.*nowhere.env'"
    ):
        Settings.from_env()


def test_a_bad_setting_in_the_file_is_refused_naming_the_file(
    environ: dict[str, str], tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MNIST_SOURC=/typo\nMNIST_MIN_ACCURACY=high\n")
    environ["MNIST_ENV_FILE"] = str(env_file)
    with pytest.raises(
        SettingsError, match=rf"unknown setting\(s\) MNIST_SOURC \(set in {env_file}\); the known"
    ):
        Settings.from_env()

    env_file.write_text("MNIST_MIN_ACCURACY=high\n")
    for name in ("MNIST_SOURC", "MNIST_MIN_ACCURACY"):  # put into the environment by the first attempt
        del environ[name]
    with pytest.raises(SettingsError, match=rf"MNIST_MIN_ACCURACY: expected .*'high' \(set in {env_file}\)"):
        Settings.from_env()


def test_the_gateway_reads_the_same_file(environ: dict[str, str], tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    token = "t" * 40
    env_file.write_text(
        f"MNIST_GATEWAY_AUTH=static\nMNIST_GATEWAY_STATIC_TOKEN={token}\nMNIST_GATEWAY_PORT=9000\n"
    )
    environ["MNIST_ENV_FILE"] = str(env_file)
    environ["MNIST_GATEWAY_PORT"] = "9100"

    settings = GatewaySettings.from_env()

    assert settings.auth == "static" and settings.static_token is not None
    assert settings.static_token.get_secret_value() == token
    assert settings.port == 9100, "a variable set in the environment wins over the file"
