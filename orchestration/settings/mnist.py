"""The MNIST source to fetch from, and the quality gate a model must pass to be promoted."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from orchestration.settings.base import EnvironmentSettings, variable
from resources.mnist_source import CANONICAL_URL


class SourceSettings(EnvironmentSettings):
    """MNIST source: where the four MNIST files are fetched from, and how they are verified.

    The canonical mirror is checked against the published md5s; any other source against its own
    `md5sums` file, or against MNIST_SOURCE_CHECKSUMS when given. An unverifiable source is refused.
    """

    location: str = variable(
        "MNIST_SOURCE", CANONICAL_URL, "base URL (http/https/file) or directory of the four MNIST files"
    )
    checksums: str | None = variable(
        "MNIST_SOURCE_CHECKSUMS",
        None,
        "explicit 'file=md5,...' for a source without an md5sums file",
    )


class QualitySettings(EnvironmentSettings):
    """Quality gate: what a model must reach to be promoted and used for scoring."""

    min_accuracy: Annotated[float, Field(ge=0.0, le=1.0)] = variable(
        "MNIST_MIN_ACCURACY", 0.97, "held-out accuracy a model needs to be promoted"
    )
