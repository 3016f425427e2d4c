"""The code location: assets, checks and jobs, wired to resources chosen by the settings."""

from __future__ import annotations

import dagster as dg

from assets.model import mnist_model
from assets.predictions import mnist_predictions
from assets.raw_mnist import raw_mnist
from assets.serving import mnist_model_serving
from orchestration.alerts import alert_definitions
from orchestration.drift_retrain import drift_retrain_sensor
from orchestration.jobs import EXECUTOR, build_jobs
from orchestration.rescoring import rescore_sensor
from orchestration.rollout import rollout_sensor
from orchestration.schedules import retrain_schedule
from orchestration.sensors import build_sensors
from orchestration.settings import Settings
from orchestration.step_policies import with_step_policies


def build_definitions(settings: Settings) -> dg.Definitions:
    workflow = dg.Definitions(
        # Retry policy and concurrency pool from the settings (orchestration/step_policies.py).
        assets=with_step_policies([raw_mnist, mnist_model, mnist_predictions, mnist_model_serving], settings),
        jobs=build_jobs(settings.timeouts),
        sensors=build_sensors(settings.sensors, container=settings.storage.container),
        resources=settings.resources(),
        # Also for the UI's Materialize (Dagster's implicit asset job): one process per run, not per step.
        executor=EXECUTOR,
    )
    upkeep: list[dg.SensorDefinition] = [rollout_sensor()]  # the rest only when their settings ask
    if settings.rescoring.recent:
        upkeep.append(rescore_sensor(settings.rescoring.recent))
    if settings.prediction_checks.drift_retrain_after:
        upkeep.append(
            drift_retrain_sensor(
                settings.prediction_checks.drift_retrain_after, settings.sensors.interval_seconds
            )
        )
    automation = dg.Definitions(schedules=[retrain_schedule(settings.retrain_schedule)], sensors=upkeep)
    return dg.Definitions.merge(workflow, automation, alert_definitions(settings.alerts))


defs = build_definitions(Settings.from_env())
