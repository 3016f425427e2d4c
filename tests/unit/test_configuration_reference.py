"""docs/configuration.md is the settings models, rendered; it must not go stale."""

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestration.settings import known_variables
from orchestration.settings.reference import COMMAND, REFERENCE, documented_models, render


def test_checked_in_reference_is_up_to_date() -> None:
    assert REFERENCE.exists(), f"{REFERENCE.name} is missing: run {COMMAND}"
    assert REFERENCE.read_text() == render(documented_models()), (
        f"{REFERENCE.name} is stale: run {COMMAND} (./run config-docs)"
    )


def test_every_variable_is_listed_with_its_default_and_whether_it_is_secret() -> None:
    rows = {
        line.split("|")[1].strip(" `"): [cell.strip() for cell in line.split("|")[2:-1]]
        for line in render(documented_models()).splitlines()
        if line.startswith("| `")
    }
    assert {v.name for v in known_variables()} <= set(rows)
    assert rows["MNIST_STORAGE"][:3] == ["one of local, azure_blob", "`local`", "no"]
    assert rows["MNIST_DATA_DIR"][1] == "`./data/storage`", "paths relative to the project, not this checkout"
    assert rows["AZURE_STORAGE_KEY"][2] == "yes" and rows["AZURE_BATCH_ACCOUNT_KEY"][2] == "yes"
    assert rows["MNIST_MIN_ACCURACY"][:2] == ["a number between 0 and 1", "`0.97`"]


def test_models_of_other_programs_render_by_their_env_prefix() -> None:
    """A plain pydantic-settings model (as the gateway's) is documented the same way."""

    class Other(BaseSettings):
        """Other program: what it does."""

        model_config = SettingsConfigDict(env_prefix="MNIST_OTHER_")
        port: int = Field(8080, description="port to listen on")
        auth: Literal["entra", "static"] = Field("entra", description="how callers authenticate")
        token: SecretStr | None = Field(None, description="shared token")

    text = render([Other])
    assert "## Other program\n\nWhat it does." in text
    assert "| `MNIST_OTHER_PORT` | a whole number | `8080` | no | port to listen on |" in text
    assert "| `MNIST_OTHER_AUTH` | one of entra, static | `entra` | no |" in text
    assert "| `MNIST_OTHER_TOKEN` | text (never shown) | unset | yes | shared token |" in text
