"""Scheduled retraining: `retrain_schedule` launches train_model on the cron of the settings.

Always defined, so the UI lists it and can switch it on or off; it starts stopped unless the settings
say running. A scheduled run retrains only when something changed: mnist_model reuses an identical
model (same raw MNIST, training code and hyperparameters) and records `training: reused` in the run's
metadata, unless the settings force retraining (`force_retrain`).
"""

from __future__ import annotations

import dagster as dg

from orchestration.jobs import TRAIN_JOB
from orchestration.settings.schedules import RetrainScheduleSettings

RETRAIN_SCHEDULE = "retrain_schedule"


def retrain_run_config(force: bool) -> dict[str, object]:
    """train_model's run config for a scheduled run: only whether to train even when nothing changed."""
    return {"ops": {"mnist_model": {"config": {"force_retrain": force}}}}


def retrain_schedule(settings: RetrainScheduleSettings) -> dg.ScheduleDefinition:
    """The schedule of train_model, as the settings describe it."""
    return dg.ScheduleDefinition(
        name=RETRAIN_SCHEDULE,
        job_name=TRAIN_JOB,
        cron_schedule=settings.cron,
        execution_timezone=settings.timezone,
        run_config=retrain_run_config(settings.force),
        tags={"mnist/trigger": "schedule", "mnist/force_retrain": str(settings.force).lower()},
        default_status=(
            dg.DefaultScheduleStatus.RUNNING
            if settings.status == "running"
            else dg.DefaultScheduleStatus.STOPPED
        ),
        description=(
            f"Retrains on '{settings.cron}' ({settings.timezone}) "
            + (
                "always (MNIST_RETRAIN_FORCE=true)."
                if settings.force
                else "only when raw MNIST, the training code or the hyperparameters changed; otherwise the run "
                "reuses the identical model and its metadata says `training: reused`."
            )
            + " Set by MNIST_RETRAIN_CRON, MNIST_RETRAIN_TIMEZONE, MNIST_RETRAIN_SCHEDULE and MNIST_RETRAIN_FORCE."
        ),
    )
