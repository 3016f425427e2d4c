"""Scheduled retraining: when train_model runs on its own, whether the schedule starts on, and forcing."""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
from pydantic import AfterValidator

from orchestration.settings.base import EnvironmentSettings, variable


def _cron(value: str) -> str:
    try:  # Dagster's own check, the one the schedule will face
        dg.ScheduleDefinition(name="cron_check", cron_schedule=value, job_name="cron_check")
    except dg.DagsterInvalidDefinitionError:
        raise ValueError("expected a cron expression") from None
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected an IANA time zone") from None
    return value


class RetrainScheduleSettings(EnvironmentSettings):
    """Scheduled retraining: the `retrain_schedule` schedule of the train_model job.

    The schedule is always defined, so the UI shows it and can switch it on or off; it starts stopped
    unless MNIST_RETRAIN_SCHEDULE=running. Each tick launches train_model, which retrains only when raw
    MNIST, the training code or the hyperparameters changed (otherwise it reuses the identical model and
    says so in the run's metadata), unless MNIST_RETRAIN_FORCE=true.
    """

    cron: Annotated[str, AfterValidator(_cron)] = variable(
        "MNIST_RETRAIN_CRON",
        "0 3 * * 1",
        "when retraining is tried, as a cron expression (default: Mondays at 03:00)",
        expected="a cron expression like 0 3 * * 1",
    )
    timezone: Annotated[str, AfterValidator(_timezone)] = variable(
        "MNIST_RETRAIN_TIMEZONE",
        "UTC",
        "the time zone MNIST_RETRAIN_CRON is read in",
        expected="an IANA time zone",
    )
    status: Literal["stopped", "running"] = variable(
        "MNIST_RETRAIN_SCHEDULE",
        "stopped",
        "whether the schedule starts switched on ('running') or off ('stopped'); the UI can switch it either way",
    )
    force: bool = variable(
        "MNIST_RETRAIN_FORCE",
        False,
        "scheduled runs train even when an identical model exists (force_retrain)",
    )
