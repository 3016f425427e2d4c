"""What every settings model shares: each field is one environment variable, read once, explained when wrong.

A settings model is a pydantic-settings `BaseSettings` whose fields are declared with `variable(...)`:
the field's validation alias is the variable's full name (every name the project reads is spelled out
once, in this package), its description says what it means, and its metadata whether it is a secret.
`Model.read(environ)` is the one way in from the environment. Building a model directly takes explicit
values only (tests, benchmarks), so nothing is picked up from the process environment by accident.

Secrets are never read as values: a secret field holds a `dg.EnvVar` naming its variable when the
variable is set, and Dagster resolves it only when a run uses the resource.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, Union, get_args, get_origin

import dagster as dg
from annotated_types import Ge, Gt, Le
from pydantic import AfterValidator, Field, InstanceOf, JsonValue, SecretBytes, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from orchestration.settings.errors import SettingsError

PROJECT_ROOT = Path(__file__).resolve().parents[2]

_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
# A variable handed to resources by name (`dg.EnvVar`): its value is resolved when a run starts.
EnvReference = InstanceOf[dg.EnvVar] | None
# A directory on this machine; `~` is expanded.
Directory = Annotated[Path, AfterValidator(Path.expanduser)]


def variable(
    name: str,
    default: Any,
    description: str,
    *,
    expected: str | None = None,
    secret: bool = False,
    reference: bool = False,
) -> Any:
    """A field read from the environment variable `name` (unset or empty: `default`).

    `expected` says in words what a valid value is (derived from the field's type when omitted).
    A `secret` is never read: the field holds a `dg.EnvVar` naming the variable. A `reference` is
    handed to resources the same way without being a secret (e.g. a client id).
    """
    extra: dict[str, JsonValue] = {"secret": secret, "reference": secret or reference}
    if expected is not None:
        extra["expected"] = expected
    return Field(default, validation_alias=name, description=description, json_schema_extra=extra)


def _extra(field: FieldInfo) -> Mapping[str, Any]:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


def _unwrap(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """The type under `X | None` and `Annotated[X, ...]`, with the constraints met on the way."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0], metadata)
    if get_origin(annotation) is Annotated:
        base, *more = get_args(annotation)
        return _unwrap(base, [*metadata, *more])
    return annotation, metadata


@dataclass(frozen=True)
class Variable:
    """One environment variable a settings model reads, and the field it fills."""

    name: str
    field_name: str
    field: FieldInfo

    @property
    def description(self) -> str:
        return self.field.description or ""

    @property
    def secret(self) -> bool:
        """A secret: never read as a value, never shown."""
        if _extra(self.field).get("secret"):
            return True
        annotation, _ = _unwrap(self.field.annotation, [])
        return annotation in (SecretStr, SecretBytes)

    @property
    def reference(self) -> bool:
        """Handed to resources as `dg.EnvVar`, resolved when a run starts."""
        return bool(_extra(self.field).get("reference"))

    @property
    def expected(self) -> str:
        """What a valid value is, in words (error messages and the configuration reference)."""
        given = _extra(self.field).get("expected")
        if isinstance(given, str):
            return given
        annotation, metadata = _unwrap(self.field.annotation, list(self.field.metadata))
        if get_origin(annotation) is Literal:
            return "one of " + ", ".join(str(a) for a in get_args(annotation))
        if self.reference:
            return "any value (read when a run starts)"
        if annotation in (SecretStr, SecretBytes):
            return "text (never shown)"
        if annotation in (int, float):
            kind = annotation.__name__
            positive = any(isinstance(m, Gt) and m.gt == 0 for m in metadata)
            low = next((m.ge for m in metadata if isinstance(m, Ge)), None)
            high = next((m.le for m in metadata if isinstance(m, Le)), None)
            if positive:
                return f"a positive {kind}"
            if low is not None and high is not None:
                return f"a number between {low:g} and {high:g}"
            return "a whole number" if kind == "int" else "a number"
        if annotation is bool:
            return "true or false"
        if annotation is Path:
            return "a directory"
        if annotation is str:
            return "text"
        if get_origin(annotation) in (list, tuple, set, frozenset):
            return "a list"
        if get_origin(annotation) is dict:
            return "a mapping"
        return getattr(annotation, "__name__", str(annotation))


def variables(model: type[BaseSettings]) -> list[Variable]:
    """The variables `model` reads, in declaration order.

    A field's string validation alias names its variable; a field without one follows pydantic-settings'
    own convention (the model's `env_prefix` + the field name), for models not declared with `variable`.
    """
    prefix = str(model.model_config.get("env_prefix") or "")
    upper = not model.model_config.get("case_sensitive", False)
    found = []
    for field_name, field in model.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        name = alias or (f"{prefix}{field_name}".upper() if upper else f"{prefix}{field_name}")
        found.append(Variable(name=name, field_name=field_name, field=field))
    return found


class EnvironmentSource(PydanticBaseSettingsSource):
    """Each field from the variable its validation alias names, in a given mapping of variables.

    An empty variable counts as unset. A secret or reference field gets a `dg.EnvVar` naming the
    variable: whether it is set is all that is looked at.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ
        self._variables = {v.field_name: v for v in variables(settings_cls)}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        var = self._variables[field_name]
        if not self._environ.get(var.name):
            return None, var.name, False
        if var.reference or var.secret:
            return dg.EnvVar(var.name), var.name, False
        return self._environ[var.name], var.name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, field_name)
            if value is not None:
                values[key] = value
        return values


class EnvironmentSettings(BaseSettings):
    """A settings model of one concern. `read` fills it from the environment and explains bad values."""

    model_config: ClassVar[SettingsConfigDict] = SettingsConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
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
        # Built directly, a model takes the values it is given and nothing else; `read` brings the environment.
        return (init_settings,)

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The settings from `environ` (default: the process environment). Raises SettingsError."""
        values = EnvironmentSource(cls, os.environ if environ is None else environ)()
        # pydantic would read "5.0" as 5; a whole-number setting takes whole numbers only.
        fractional = [
            f"{var.name}: expected {var.expected}, found {values[var.name]!r}"
            for var in variables(cls)
            if isinstance(values.get(var.name), str)
            and _unwrap(var.field.annotation, [])[0] is int
            and not _WHOLE_NUMBER.fullmatch(values[var.name].strip())
        ]
        if fractional:
            raise SettingsError("; ".join(fractional))
        try:
            return cls(**values)
        except ValidationError as exc:
            raise SettingsError(explain(cls, exc)) from None


def explain(model: type[BaseSettings], error: ValidationError) -> str:
    """One line per problem: the variable, what was expected and what was found (unless it is a secret)."""
    by_key: dict[str, Variable] = {}
    for var in variables(model):
        by_key[var.name] = by_key[var.field_name] = var
    problems = []
    for problem in error.errors(include_url=False):
        var = by_key.get(str(problem["loc"][0])) if problem["loc"] else None
        if var is None:
            problems.append(str(problem["msg"]).removeprefix("Value error, "))
        elif var.secret:
            problems.append(f"{var.name}: expected {var.expected}")
        else:
            problems.append(f"{var.name}: expected {var.expected}, found {problem['input']!r}")
    return "; ".join(problems)
