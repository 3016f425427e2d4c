"""The one error a bad configuration raises."""

from __future__ import annotations


class SettingsError(ValueError):
    """A setting is unknown, malformed or missing. The message names the variable, what was expected and
    what was found (never the value of a secret)."""
