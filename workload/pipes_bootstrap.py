"""The Dagster Pipes bootstrap as one command-line argument that no service can rewrite.

The bootstrap is the set of environment variables Dagster's Pipes context injector hands the
remote process (DAGSTER_PIPES_CONTEXT, DAGSTER_PIPES_MESSAGES, ...). Services that pass it through
a step's arguments rewrite some characters (AzureML v1 backslash-escapes semicolons), so it travels
as URL-safe base64 of its JSON without padding: only [A-Za-z0-9_-]. No Dagster here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping

_ALPHABET = re.compile(r"^[A-Za-z0-9_-]*$")


def encode_bootstrap(env: Mapping[str, str]) -> str:
    """The variables as one argument of letters, digits, '-' and '_' ('' for no variables)."""
    if not env:
        return ""
    raw = json.dumps({str(k): str(v) for k, v in env.items()}, sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_bootstrap(argument: str) -> dict[str, str]:
    """The variables `encode_bootstrap` wrote; {} for an empty argument.

    Raises ValueError naming what is wrong (a character outside the alphabet means the argument
    was rewritten on the way), never echoing the argument, which holds the Pipes channel's address.
    """
    text = argument.strip()
    if not text:
        return {}
    if not _ALPHABET.match(text):
        bad = sorted({c for c in text if not _ALPHABET.match(c)})
        raise ValueError(
            f"the Pipes bootstrap argument holds {bad!r}, outside URL-safe base64: it was rewritten on the way"
        )
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"the Pipes bootstrap argument is not an encoded bootstrap: {err}") from None
    if not isinstance(data, dict):
        raise ValueError("the Pipes bootstrap argument does not hold a mapping of variables")
    return {str(k): str(v) for k, v in data.items()}
