"""The gateway's own settings, the `MNIST_GATEWAY_*` variables: one pydantic-settings model.

The gateway owns this prefix (the code location ignores it) and reads nothing else: no code-location
setting, no import of the code location. `GatewaySettings.from_env` is the one reader of the environment,
completed from the user's settings file as every command's is: `.env` in the project root, or the file
`MNIST_ENV_FILE` names (none when it is set empty); a variable set in the environment wins over the file
(the rule of `orchestration.settings.env_file`, which this program must not import).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from adf_bridge.jobs_manifest import DEFAULT_PATH as DEFAULT_JOBS_MANIFEST
from adf_bridge.jobs_manifest import PROJECT_ROOT

ENV_FILE_VARIABLE = "MNIST_ENV_FILE"
DEFAULT_ENV_FILE = PROJECT_ROOT / ".env"

PREFIX = "MNIST_GATEWAY_"
# Settings that only one authentication mode reads; the other mode ignores them (they are not checked).
ENTRA_ONLY = ("tenant_id", "audience", "jwks_url", "identities")
STATIC_ONLY = ("static_token", "static_jobs")
NO_IDENTITIES = "MNIST_GATEWAY_IDENTITIES: expected the identities allowed to call (JSON or a file path)"


class GatewaySettingsError(ValueError):
    """A setting is unknown, missing or malformed; the message names the variable and never a secret."""


@dataclass(frozen=True)
class IdentityRule:
    """One caller the gateway knows: an Entra object id and/or app (client) id, and the jobs it may launch.
    With both ids given, both must match."""

    name: str
    jobs: frozenset[str]
    object_id: str | None = None
    app_id: str | None = None

    def matches(self, object_id: str | None, app_id: str | None) -> bool:
        if self.object_id is not None and self.object_id.lower() != (object_id or "").lower():
            return False
        return self.app_id is None or self.app_id.lower() == (app_id or "").lower()


class GatewaySettings(BaseSettings):
    """The gateway's configuration: each field is the variable `MNIST_GATEWAY_<FIELD>`.

    Read it with `from_env`. Constructing it directly takes the given values only (tests do); the
    environment is read in one place, which also refuses unknown `MNIST_GATEWAY_*` variables."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="forbid")

    upstream: str = Field(
        default="http://127.0.0.1:3000/graphql", description="the internal webserver's GraphQL URL"
    )
    host: str = Field(
        default="127.0.0.1",
        description="address to listen on (a loopback address with auth=static)",
    )
    port: int = Field(default=8080, description="port to listen on")
    auth: Literal["entra", "static"] = Field(
        default="entra",
        description="'entra' (Entra ID bearer tokens) or 'static' (one shared token, for local use)",
    )
    tenant_id: str | None = Field(
        default=None,
        description="entra: the Entra tenant id (GUID); tokens must be issued by it (v1 or v2 issuer). "
        "Required with auth=entra",
    )
    audience: tuple[str, ...] = Field(
        default=(),
        description="entra: accepted token audience(s), comma-separated (the app id URI and/or the client "
        "id ADF requests tokens for). Required with auth=entra",
    )
    jwks_url: str | None = Field(
        default=None, description="entra: signing keys URL (default: the tenant's discovery/v2.0/keys)"
    )
    identities: tuple[IdentityRule, ...] = Field(
        default=(),
        description="entra: the callers allowed and the jobs each may launch: JSON, or the path of a "
        "YAML/JSON file, holding a list of {name, object_id and/or app_id, jobs} (or {identities: [...]}). "
        "Required with auth=entra",
    )
    static_token: SecretStr | None = Field(
        default=None,
        description="static: the shared token, a secret of at least 32 characters. Required with auth=static",
    )
    static_jobs: frozenset[str] = Field(
        default=frozenset(), description="static: jobs the token may launch, comma-separated"
    )
    location: str = Field(default="mnist", description="code location whose jobs may be launched")
    upstream_timeout: float = Field(
        default=120.0,
        description="seconds for one answer of the webserver (waiting for a launch slot does not count; "
        "ADF waits 1 min by default, up to 10)",
    )
    max_launches: int = Field(
        default=2,
        description="launches forwarded to the webserver at once (the webserver creates runs one after "
        "another anyway; queueing the rest here keeps its threads free for status reads during a burst)",
    )
    jobs_manifest: Path | None = Field(
        default=None,
        json_schema_extra={"expected": "a file path"},
        description="the jobs manifest written by `python -m adf_bridge.templates`, read at start-up for "
        "each job's dynamic partitions (default: adf/jobs.json in the project)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Values come only from the constructor: `from_env` reads exactly the mapping it is given (tests
        # pass their own), and no .env or secrets directory is read behind its back.
        return (init_settings,)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Field name -> its environment variable, in declaration order."""
        return {name: PREFIX + name.upper() for name in cls.model_fields}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewaySettings:
        """The settings in `env` (default: the process environment).

        An empty variable counts as unset, but `MNIST_GATEWAY_AUTH`, when set, must name a mode. Raises
        `GatewaySettingsError` for an unknown `MNIST_GATEWAY_*` variable (listing the known ones) and for
        any value that is missing or malformed."""
        env = {**env_file_values(os.environ), **os.environ} if env is None else env
        variables = cls.variables()
        known = set(variables.values())
        unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in known)
        if unknown:
            raise GatewaySettingsError(
                f"unknown setting(s) {', '.join(unknown)}; the known ones are: {', '.join(variables.values())}"
            )
        values = {
            name: env[variable]
            for name, variable in variables.items()
            if variable in env and (env[variable] or name == "auth")
        }
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise GatewaySettingsError(_describe(error, variables)) from None

    @property
    def audiences(self) -> tuple[str, ...]:
        """The token audiences accepted (`MNIST_GATEWAY_AUDIENCE`)."""
        return self.audience

    @property
    def issuers(self) -> tuple[str, ...]:
        """Entra issues v1 (sts.windows.net) or v2 (login.microsoftonline.com) tokens depending on the API's
        `accessTokenAcceptedVersion`; managed-identity tokens are usually v1. Both name the tenant."""
        tenant = self.tenant_id
        return (f"https://login.microsoftonline.com/{tenant}/v2.0", f"https://sts.windows.net/{tenant}/")

    @property
    def keys_url(self) -> str:
        return self.jwks_url or f"https://login.microsoftonline.com/{self.tenant_id}/discovery/v2.0/keys"

    @property
    def jobs_manifest_path(self) -> Path:
        return self.jobs_manifest or DEFAULT_JOBS_MANIFEST

    # ---- checks, each naming its variable (see `_describe`) ---------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _ignore_the_other_modes_settings(cls, data: Any) -> Any:
        if isinstance(data, dict):
            auth = data.get("auth", "entra")
            ignored = STATIC_ONLY if auth == "entra" else ENTRA_ONLY if auth == "static" else ()
            data = {k: v for k, v in data.items() if k not in ignored}
        return data

    @field_validator("upstream", mode="before")
    @classmethod
    def _graphql_url(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected the webserver's GraphQL URL, found {value!r}")
        return value

    @field_validator("port", mode="before")
    @classmethod
    def _tcp_port(cls, value: Any) -> int:
        text = str(value)
        if not text.isdigit() or not 0 <= int(text) < 65536:
            raise ValueError(f"expected a TCP port, found {value!r}")
        return int(text)

    @field_validator("upstream_timeout", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected seconds, found {value!r}") from None

    @field_validator("max_launches", mode="before")
    @classmethod
    def _positive(cls, value: Any) -> int:
        text = str(value)
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"expected a positive whole number, found {value!r}")
        return int(text)

    @field_validator("auth", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        if value not in ("entra", "static"):
            raise ValueError(f"expected 'entra' or 'static', found {value!r}")
        return value

    @field_validator("audience", "static_jobs", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("identities", mode="before")
    @classmethod
    def _identity_rules(cls, value: Any) -> Any:
        return parse_identities(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _complete_for_its_mode(self) -> Self:
        if self.auth == "static":
            token = self.static_token.get_secret_value() if self.static_token is not None else ""
            if len(token) < 32:
                raise ValueError(
                    "MNIST_GATEWAY_AUTH=static needs MNIST_GATEWAY_STATIC_TOKEN, a secret of at least 32 characters"
                )
            if not is_loopback(self.host):
                raise ValueError(
                    "MNIST_GATEWAY_AUTH=static is for local use: MNIST_GATEWAY_HOST must be a loopback address"
                )
        else:
            if not self.tenant_id:
                raise ValueError("MNIST_GATEWAY_AUTH=entra needs MNIST_GATEWAY_TENANT_ID (the tenant's GUID)")
            if not self.audience:
                raise ValueError(
                    "MNIST_GATEWAY_AUDIENCE: expected the audience(s) ADF requests tokens for, e.g. "
                    "api://dagster-gateway or the app's client id"
                )
            if not self.identities:
                raise ValueError(NO_IDENTITIES)
        return self


def env_file_path(environ: Mapping[str, str]) -> Path | None:
    """The user's settings file: `MNIST_ENV_FILE` when set (None when set empty), else `.env` in the project root."""
    given = environ.get(ENV_FILE_VARIABLE)
    if given is None:
        return DEFAULT_ENV_FILE
    return Path(given).expanduser() if given.strip() else None


def env_file_values(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables the user's settings file sets (none when there is no file)."""
    path = env_file_path(environ)
    if path is None or (path == DEFAULT_ENV_FILE and not path.is_file()):
        return {}
    if not path.is_file():
        raise GatewaySettingsError(
            f"{ENV_FILE_VARIABLE}: expected a settings file, found {str(path)!r}: no such file"
        )
    return {name: value for name, value in dotenv_values(path).items() if value is not None}


def _describe(error: ValidationError, variables: Mapping[str, str]) -> str:
    """Our own words for each problem, prefixed with its variable; never the value (it may be a secret)."""
    messages: list[str] = []
    for problem in error.errors(include_url=False, include_input=False):
        cause = (problem.get("ctx") or {}).get("error")
        text = str(cause) if isinstance(cause, ValueError) else problem["msg"]
        loc = problem["loc"]
        variable = variables.get(str(loc[0])) if loc else None
        if variable and not text.startswith(variable):
            text = f"{variable}: {text}"
        messages.append(text)
    return "; ".join(messages)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_identities(raw: str) -> tuple[IdentityRule, ...]:
    """`MNIST_GATEWAY_IDENTITIES`: JSON, or the path of a YAML/JSON file, holding a list of
    `{name, object_id and/or app_id, jobs: [...]}` (or `{identities: [...]}`)."""
    where = "MNIST_GATEWAY_IDENTITIES"
    text = raw.strip()
    if not text:
        raise GatewaySettingsError(NO_IDENTITIES)
    if not text.startswith(("[", "{")):
        path = Path(text).expanduser()
        if not path.is_file():
            raise GatewaySettingsError(f"{where}: {text!r} is neither JSON nor an existing file")
        where, text = f"{where} ({path})", path.read_text()
    try:
        data = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as error:
        raise GatewaySettingsError(f"{where}: not valid JSON/YAML: {error}") from None
    if isinstance(data, dict) and set(data) == {"identities"}:
        data = data["identities"]
    if not isinstance(data, list) or not data:
        raise GatewaySettingsError(f"{where}: expected a non-empty list of identities")
    rules = []
    for n, entry in enumerate(data):
        at = f"{where}[{n}]"
        if not isinstance(entry, dict) or not set(entry) <= {"name", "object_id", "app_id", "jobs"}:
            raise GatewaySettingsError(f"{at}: expected an object with name, object_id and/or app_id, jobs")
        object_id, app_id = entry.get("object_id"), entry.get("app_id")
        if not object_id and not app_id:
            raise GatewaySettingsError(f"{at}: give object_id (oid) and/or app_id (appid/azp)")
        jobs = entry.get("jobs")
        if not isinstance(jobs, list) or not all(isinstance(j, str) and j for j in jobs):
            raise GatewaySettingsError(f"{at}: 'jobs' must be a list of job names")
        name = str(entry.get("name") or object_id or app_id)
        object_id = str(object_id) if object_id else None
        app_id = str(app_id) if app_id else None
        rules.append(IdentityRule(name=name, jobs=frozenset(jobs), object_id=object_id, app_id=app_id))
    return tuple(rules)
