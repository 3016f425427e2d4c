"""Object-name rules shared by every object store.

Names are '/'-separated relative paths. Anything that could escape the storage root on a
filesystem, or that Azure Blob would silently rewrite, is refused up front.
"""

from __future__ import annotations

import unicodedata

MAX_NAME_LENGTH = 1024  # Azure Blob's limit on a blob name
STAGING_DIR = ".staging"  # reserved: where the local store stages atomic writes


class InvalidObjectName(ValueError):
    def __init__(self, name: str, problem: str) -> None:
        shown = name if len(name) <= 120 else name[:117] + "..."
        super().__init__(
            f"object name {shown!r} is not allowed: {problem}; expected a relative path like 'raw/mnist/x.gz'"
        )


def validate_name(name: str) -> str:
    """Return `name` if it is a safe object name, else raise InvalidObjectName."""
    if not name:
        raise InvalidObjectName(name, "it is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidObjectName(name, f"it has {len(name)} characters, more than {MAX_NAME_LENGTH}")
    if "\\" in name:
        raise InvalidObjectName(name, "it contains a backslash")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise InvalidObjectName(name, "it is an absolute path")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidObjectName(name, "it contains a control character")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidObjectName(name, "it has an empty, '.' or '..' path segment")
    if parts[0] == STAGING_DIR:
        raise InvalidObjectName(name, f"'{STAGING_DIR}/' is reserved for in-flight writes")
    return name


def validate_prefix(prefix: str) -> str:
    """A listing prefix: '' (everything) or a safe name, optionally ending in '/'."""
    if prefix == "":
        return prefix
    validate_name(prefix.rstrip("/") or "/")
    return prefix
