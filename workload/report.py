"""Progress reporting: through Dagster Pipes when launched by Dagster, else plain stderr lines."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, Protocol


class Reporter(Protocol):
    def info(self, message: str) -> None: ...
    def metric(self, **values: Any) -> None: ...


class _StderrReporter:
    def info(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def metric(self, **values: Any) -> None:
        print("metrics: " + ", ".join(f"{k}={v}" for k, v in values.items()), file=sys.stderr, flush=True)


class _PipesReporter:
    def __init__(self, pipes: Any) -> None:
        self._pipes = pipes

    def info(self, message: str) -> None:
        self._pipes.log.info(message)

    def metric(self, **values: Any) -> None:
        self._pipes.report_custom_message({"metrics": values})
        self._pipes.log.info("metrics: " + ", ".join(f"{k}={v}" for k, v in values.items()))


@contextlib.contextmanager
def reporter() -> Iterator[Reporter]:
    try:
        from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes
    except ImportError:  # remote compute without dagster-pipes installed
        yield _StderrReporter()
        return
    if not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        yield _StderrReporter()
        return
    with open_dagster_pipes() as pipes:
        yield _PipesReporter(pipes)
