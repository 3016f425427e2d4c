"""The Dagster internals the instance plugins rely on still have the shape they rely on.

One test per row of `instance_plugins.dagster_internals.RELIED_UPON` (importable, callable with the
parameters passed, attributes present), so a Dagster upgrade that changes one fails here with the
symbol, what the plugins do with it and the installed version. The other tests keep the table whole:
the plugins import `dagster._*` only through that module, each of its imports has a row, and its
docstring explains each row.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import dagster as dg
import pytest

from instance_plugins import dagster_internals
from instance_plugins.dagster_internals import EXECUTE_RUN_MODULE, RELIED_UPON, Internal

PLUGINS = Path(dagster_internals.__file__).parent
INTERNALS_FILE = Path(dagster_internals.__file__)


def _relied_upon(row: Internal) -> str:
    """What the plugins rely on, in words: the use and the shape."""
    shapes = [f"uses it for {row.use}"]
    if row.args is not None:
        shapes.append(f"calls it with ({', '.join([*row.args, *(f'{k}=...' for k in row.kwargs)])})")
    if row.attrs:
        shapes.append(f"uses its attributes {', '.join(row.attrs)}")
    if row.value_type is not None:
        shapes.append(f"reads it as a {row.value_type.__name__}")
    return ", ".join(shapes)


def _changed(row: Internal, detail: str) -> str:
    return (
        f"Dagster {dg.__version__} changed {row.symbol.replace(':', '.')}: instance_plugins "
        f"{_relied_upon(row)}. {detail} Adapt instance_plugins (and its row in "
        "instance_plugins/dagster_internals.py) to the new shape."
    )


def _resolve(row: Internal) -> tuple[object | None, object]:
    """(the object holding it, the symbol itself)."""
    module_name, _, qualname = row.symbol.partition(":")
    try:
        owner: object | None = None
        found: object = importlib.import_module(module_name)
        for part in qualname.split("."):
            owner, found = found, getattr(found, part)
    except (ImportError, AttributeError) as exc:
        pytest.fail(_changed(row, f"It is gone: {exc}."))
    return owner, found


def _signature(row: Internal, owner: object | None, found: object) -> inspect.Signature:
    name = row.symbol.rpartition(".")[2].rpartition(":")[2]
    call = cast("Callable[..., Any]", found)
    if inspect.isclass(owner) and inspect.isfunction(inspect.getattr_static(owner, name)):
        call = functools.partial(call, None)  # a method: the plugins call it on an instance
    try:
        return inspect.signature(call)
    except (TypeError, ValueError) as exc:
        pytest.fail(_changed(row, f"It is no longer callable: {exc}."))


def _set_in_init(cls: type, attr: str) -> bool:
    """Whether some `__init__` of `cls` assigns `self.<attr>` (an attribute only instances have)."""
    pattern = re.compile(rf"\bself\.{re.escape(attr)}\s*[:=]")
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            source = inspect.getsource(init)
        except (OSError, TypeError):
            continue
        if pattern.search(source):
            return True
    return False


@pytest.mark.parametrize("row", RELIED_UPON, ids=[row.symbol for row in RELIED_UPON])
def test_relied_upon_internal_has_the_shape_we_rely_on(row: Internal) -> None:
    owner, found = _resolve(row)
    if row.args is not None:
        signature = _signature(row, owner, found)
        positional = [
            p.name
            for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if tuple(positional[: len(row.args)]) != row.args:
            pytest.fail(_changed(row, f"Its positional parameters are now ({', '.join(positional)})."))
        missing = [k for k in row.kwargs if k not in signature.parameters]
        if missing:
            pytest.fail(_changed(row, f"It has no parameter {', '.join(missing)}: {signature}."))
        try:
            signature.bind(*(None for _ in row.args), **dict.fromkeys(row.kwargs))
        except TypeError as exc:
            pytest.fail(_changed(row, f"Its signature is now {signature} ({exc})."))
    missing_attrs = [
        a
        for a in row.attrs
        if not hasattr(found, a) and not (inspect.isclass(found) and _set_in_init(found, a))
    ]
    if missing_attrs:
        pytest.fail(_changed(row, f"It has no attribute {', '.join(missing_attrs)}."))
    if row.value_type is not None and not isinstance(found, row.value_type):
        pytest.fail(_changed(row, f"It is now a {type(found).__name__}: {found!r}."))


def _dagster_private_imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, "module:name") of every import of a `dagster._*` module or name in `path`."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if node.module.startswith("dagster._"):
                    yield node.lineno, f"{node.module}:{alias.name}"
                elif node.module == "dagster" and alias.name.startswith("_"):
                    yield node.lineno, f"{full}:"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dagster._"):
                    yield node.lineno, f"{alias.name}:"


def test_plugins_import_dagster_internals_only_through_one_module() -> None:
    offenders = [
        f"{path.relative_to(PLUGINS.parent)}:{line} imports {symbol.rstrip(':')}"
        for path in sorted(PLUGINS.rglob("*.py"))
        if path != INTERNALS_FILE
        for line, symbol in _dagster_private_imports(path)
    ]
    assert not offenders, (
        "Import Dagster internals through instance_plugins/dagster_internals.py (with a row in "
        f"RELIED_UPON): {offenders}"
    )


def test_every_internal_imported_has_a_row() -> None:
    rows = {row.symbol for row in RELIED_UPON}
    unlisted = [
        f"line {line}: {symbol}"
        for line, symbol in _dagster_private_imports(INTERNALS_FILE)
        if symbol not in rows
    ]
    assert not unlisted, f"Add a row to RELIED_UPON for each of: {unlisted}"
    assert any(row.symbol.startswith(f"{EXECUTE_RUN_MODULE}:") for row in RELIED_UPON)


def test_every_row_is_explained_in_the_module_docstring() -> None:
    doc = dagster_internals.__doc__ or ""
    unexplained = [
        row.symbol for row in RELIED_UPON if row.symbol.rpartition(":")[2].split(".")[-1] not in doc
    ]
    assert not unexplained, (
        f"Say in the docstring of instance_plugins/dagster_internals.py what each is for: {unexplained}"
    )
