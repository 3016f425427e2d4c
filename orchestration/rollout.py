"""The automation that rolls a promoted model out: a sensor evaluating mnist_model_serving's condition.

Dagster would add a `default_automation_condition_sensor` for the asset, but it starts stopped; this
one is running from the start, so a model that passed its blocking check is served without anybody
switching anything on. Its runs are ordinary runs (not backfills), so the run-failure alert sensors
(orchestration/alerts) report a failed rollout like any failed run.
"""

from __future__ import annotations

import dagster as dg

from assets.serving import mnist_model_serving

ROLLOUT_SENSOR = "model_rollout_sensor"


def rollout_sensor() -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        ROLLOUT_SENSOR,
        target=dg.AssetSelection.assets(mnist_model_serving),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        emit_backfills=False,
        run_tags={"mnist/trigger": "rollout"},
        description=(
            "Materializes mnist_model_serving after each materialization of mnist_model whose blocking accuracy "
            "check passed: the promoted model is registered and rolled out to the scoring deployment."
        ),
    )
