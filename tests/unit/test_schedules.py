"""Scheduled retraining: the schedule the settings describe, and the run request its ticks make."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from orchestration.definitions import build_definitions
from orchestration.schedules import RETRAIN_SCHEDULE
from orchestration.settings import Settings, SettingsError


def schedule(env: dict[str, str]) -> dg.ScheduleDefinition:
    defs = build_definitions(Settings.from_env(env))
    [found] = [s for s in defs.schedules or [] if s.name == RETRAIN_SCHEDULE]
    assert isinstance(found, dg.ScheduleDefinition)
    return found


def evaluate(definition: dg.ScheduleDefinition) -> dg.RunRequest:
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 12, 7, 3, tzinfo=dt.UTC))
    result = definition.evaluate_tick(context)
    assert result.skip_message is None
    [request] = result.run_requests or []
    return request


def test_by_default_the_schedule_is_visible_stopped_and_does_not_force_retraining() -> None:
    retrain = schedule({})
    assert retrain.job_name == "train_model"
    assert retrain.default_status == dg.DefaultScheduleStatus.STOPPED
    assert (retrain.cron_schedule, retrain.execution_timezone) == ("0 3 * * 1", "UTC")
    request = evaluate(retrain)
    assert request.run_config == {"ops": {"mnist_model": {"config": {"force_retrain": False}}}}
    assert request.tags["mnist/trigger"] == "schedule" and request.tags["mnist/force_retrain"] == "false"
    assert "reuses the identical model" in (retrain.description or "")


def test_settings_choose_the_cron_the_time_zone_running_and_forcing() -> None:
    retrain = schedule(
        {
            "MNIST_RETRAIN_CRON": "30 2 * * *",
            "MNIST_RETRAIN_TIMEZONE": "Europe/Amsterdam",
            "MNIST_RETRAIN_SCHEDULE": "running",
            "MNIST_RETRAIN_FORCE": "true",
        }
    )
    assert retrain.default_status == dg.DefaultScheduleStatus.RUNNING
    assert (retrain.cron_schedule, retrain.execution_timezone) == ("30 2 * * *", "Europe/Amsterdam")
    request = evaluate(retrain)
    assert request.run_config == {"ops": {"mnist_model": {"config": {"force_retrain": True}}}}
    assert request.tags["mnist/force_retrain"] == "true"


def test_the_run_config_is_valid_for_train_model() -> None:
    """What the schedule asks for is accepted by the job itself (not only shaped like it)."""
    retrain = schedule({"MNIST_RETRAIN_FORCE": "true"})
    job = build_definitions(Settings.from_env({})).resolve_job_def("train_model")
    plan = dg.validate_run_config(job, evaluate(retrain).run_config)
    assert plan["ops"]["mnist_model"]["config"]["force_retrain"] is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MNIST_RETRAIN_CRON": "nightly"}, "MNIST_RETRAIN_CRON: expected a cron expression"),
        ({"MNIST_RETRAIN_TIMEZONE": "Mars/Olympus"}, "MNIST_RETRAIN_TIMEZONE: expected an IANA time zone"),
        ({"MNIST_RETRAIN_SCHEDULE": "on"}, "MNIST_RETRAIN_SCHEDULE: expected one of stopped, running"),
    ],
)
def test_bad_schedule_settings_are_refused_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)
