"""Alerts: the settings, what a message says, each channel's request, and the tick watcher's streaks.

Runs and ticks are real Dagster records on an in-process SQLite instance; the channels post to a local
HTTP receiver (tests/support/receiver.py). The daemon-driven path is tests/e2e/test_alerts.py.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteInstigatorOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    TickData,
    TickStatus,
)
from dagster._utils.error import serializable_error_info_from_exc_info
from dagster_shared.error import SerializableErrorInfo

from orchestration.alerts.channels import AlertDeliveryError, SlackAlerts, TeamsAlerts, WebhookAlerts
from orchestration.alerts.messages import Alert, run_failure_alert
from orchestration.alerts.sensors import run_failure_sensor, tick_failure_sensor
from orchestration.alerts.tick_history import TickCursor
from orchestration.definitions import build_definitions
from orchestration.settings import AlertSettings, Settings, SettingsError
from tests.support.receiver import Receiver, receiver

UI = "https://dagster.example.com"
SECRET_PATH = "/teams/workflows/s3cr3t-signature"
ALL_CHANNELS = {
    "MNIST_ALERTS": "teams,slack,webhook",
    "MNIST_ALERTS_UI_URL": UI + "/",
    "MNIST_ALERTS_TEAMS_WEBHOOK_URL": "https://prod.example.com" + SECRET_PATH,
    "MNIST_ALERTS_SLACK_TOKEN": "xoxb-secret-token",
    "MNIST_ALERTS_SLACK_CHANNEL": "#mnist-alerts",
    "MNIST_ALERTS_WEBHOOK_URL": "https://hooks.example.com/h/secret",
}


@pytest.fixture
def local() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


@pytest.fixture(scope="module")
def instance() -> dg.DagsterInstance:
    """In memory: runs execute in this process, and no compute-log process is started (unit tests start none)."""
    return dg.DagsterInstance.ephemeral()


# ---- settings ---------------------------------------------------------------------------------------


def test_nothing_configured_defines_no_alert_sensor_and_no_channel_resource() -> None:
    defs = build_definitions(Settings.from_env({}))
    assert sorted(s.name for s in defs.sensors or []) == [
        "inference_batch_sensor",
        "model_rollout_sensor",
        "training_data_sensor",
    ]
    assert not any(key.startswith("alerts_") for key in defs.resources or {})


def test_every_channel_gets_a_running_pair_of_sensors_and_secrets_stay_references() -> None:
    settings = Settings.from_env(ALL_CHANNELS)
    assert settings.alerts.ui_url == UI  # trailing slash dropped: links are <base>/runs/<id>
    defs = build_definitions(settings)
    alert_sensors = {
        s.name: s for s in defs.sensors or [] if s.name.endswith(("_on_run_failure", "_on_tick_failure"))
    }
    assert sorted(alert_sensors) == [
        f"{c}_on_{w}_failure" for c in ("slack", "teams", "webhook") for w in ("run", "tick")
    ]
    assert {s.default_status for s in alert_sensors.values()} == {dg.DefaultSensorStatus.RUNNING}
    resources: dict[str, Any] = dict(defs.resources or {})
    # The secrets are the variables' names, resolved by Dagster when a tick uses the resource.
    assert resources["alerts_teams"].hook_url == dg.EnvVar("MNIST_ALERTS_TEAMS_WEBHOOK_URL")
    assert resources["alerts_slack"].token == dg.EnvVar("MNIST_ALERTS_SLACK_TOKEN")
    assert resources["alerts_webhook"].url == dg.EnvVar("MNIST_ALERTS_WEBHOOK_URL")
    assert "s3cr3t" not in repr(settings) and "xoxb" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MNIST_ALERTS": "slack", "MNIST_ALERTS_SLACK_CHANNEL": "#a"}, ["MNIST_ALERTS_SLACK_TOKEN"]),
        ({"MNIST_ALERTS": "slack", "MNIST_ALERTS_SLACK_TOKEN": "x"}, ["MNIST_ALERTS_SLACK_CHANNEL"]),
        ({"MNIST_ALERTS": "teams"}, ["MNIST_ALERTS_TEAMS_WEBHOOK_URL"]),
        ({"MNIST_ALERTS": "webhook"}, ["MNIST_ALERTS_WEBHOOK_URL"]),
        ({"MNIST_ALERTS_WEBHOOK_URL": "https://x"}, ["MNIST_ALERTS_WEBHOOK_URL", "does not name webhook"]),
        ({"MNIST_ALERTS_SLACK_TOKEN": "xoxb-1"}, ["MNIST_ALERTS_SLACK_TOKEN", "does not name slack"]),
    ],
)
def test_contradictory_settings_are_refused_naming_the_variables(
    env: dict[str, str], named: list[str]
) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"MNIST_ALERTS_UI_URL": UI, **env})
    for text in named:
        assert text in str(raised.value)
    assert "xoxb-1" not in str(raised.value) and "https://x" not in str(raised.value)


def test_a_channel_without_the_ui_url_and_an_unknown_channel_are_refused() -> None:
    with pytest.raises(SettingsError, match="MNIST_ALERTS needs MNIST_ALERTS_UI_URL"):
        Settings.from_env({"MNIST_ALERTS": "webhook", "MNIST_ALERTS_WEBHOOK_URL": "https://x"})
    with pytest.raises(SettingsError, match="MNIST_ALERTS: expected a comma-separated list of teams, slack"):
        Settings.from_env({"MNIST_ALERTS": "email"})
    with pytest.raises(SettingsError, match="MNIST_ALERTS_UI_URL: expected an http"):
        AlertSettings.read({"MNIST_ALERTS_UI_URL": "dagster.example.com"})


# ---- what a message says ------------------------------------------------------------------------------


partitions = dg.StaticPartitionsDefinition(["batch-7"])


@dg.asset(partitions_def=partitions)
def scored() -> None:
    raise dg.Failure(description="No model has passed the accuracy check yet: materialize mnist_model first.")


@dg.asset
def crashing() -> None:
    raise ValueError("these are not MNIST images")


def failed_run(instance: dg.DagsterInstance, asset: dg.AssetsDefinition, **kwargs: Any) -> dg.DagsterRun:
    result = dg.materialize([asset], instance=instance, raise_on_error=False, **kwargs)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    return run


def failure_context(
    instance: dg.DagsterInstance, run: dg.DagsterRun, resources: dict[str, object]
) -> dg.RunStatusSensorContext:
    [record] = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    event = record.event_log_entry.dagster_event
    assert event is not None
    return dg.build_run_status_sensor_context(
        sensor_name="webhook_on_run_failure",
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=run,
        resources=resources,
    )


def test_a_run_failure_alert_names_job_partition_step_the_failure_description_and_links_the_run(
    instance: dg.DagsterInstance, local: Receiver
) -> None:
    run = failed_run(instance, scored, partition_key="batch-7")
    sensor = run_failure_sensor("webhook", "alerts_webhook", UI, 30)
    context = failure_context(instance, run, {"alerts_webhook": WebhookAlerts(url=f"{local.url}/hook")})
    sensor(context)
    [request] = local.received("/hook")
    body = request.json()
    assert request.headers["content-type"] == "application/json"
    assert body["kind"] == "run_failure"
    assert (body["job"], body["partition"], body["step"]) == (run.job_name, "batch-7", "scored")
    assert body["message"] == "No model has passed the accuracy check yet: materialize mnist_model first."
    assert body["url"] == f"{UI}/runs/{run.run_id}"
    assert body["message"] in body["text"] and body["url"] in body["text"]
    assert "Traceback" not in body["text"] and 'File "' not in body["text"]


def test_an_exception_is_reported_by_its_own_one_line_message(instance: dg.DagsterInstance) -> None:
    run = failed_run(instance, crashing)
    [record] = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    steps = [
        r.event_log_entry.dagster_event
        for r in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    ]
    assert record.event_log_entry.dagster_event is not None
    alert = run_failure_alert(run, record.event_log_entry.dagster_event, [e for e in steps if e], UI)
    assert alert.message == "ValueError: these are not MNIST images"
    assert alert.facts["Partition"] == "(none)" and alert.facts["Step"] == "crashing"


# ---- channels ----------------------------------------------------------------------------------------

ALERT = Alert(
    kind="run_failure",
    headline="Dagster run of score_batch failed for partition batch-7",
    facts={"Job": "score_batch", "Partition": "batch-7", "Step": "mnist_predictions", "Run": "r1"},
    message="No model has passed the accuracy check yet.",
    link=f"{UI}/runs/r1",
)


def test_teams_gets_an_adaptive_card_with_the_text_and_the_link(local: Receiver) -> None:
    TeamsAlerts(hook_url=f"{local.url}/teams/hook").send(ALERT)
    [request] = local.received("/teams/hook")
    [attachment] = request.json()["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    [block] = attachment["content"]["body"]
    assert block["type"] == "TextBlock" and ALERT.message in block["text"]
    assert f"[View in Dagster UI]({UI}/runs/r1)" in block["text"]


def test_slack_gets_chat_post_message_with_the_token_channel_text_and_a_button(local: Receiver) -> None:
    settings = AlertSettings.read({"MNIST_ALERTS_SLACK_API_URL": f"{local.url}/slack/api"})
    SlackAlerts(token="xoxb-test", channel="#mnist-alerts", api_url=settings.slack_api_url).send(ALERT)
    [request] = local.received("/slack/api/chat.postMessage")
    assert request.headers["authorization"] == "Bearer xoxb-test"
    body = request.json()
    assert body["channel"] == "#mnist-alerts" and ALERT.message in body["text"]
    assert body["blocks"][-1]["elements"][0]["url"] == f"{UI}/runs/r1"


@pytest.mark.parametrize("channel", ["teams", "slack", "webhook"])
def test_a_refused_delivery_fails_without_showing_the_secret(local: Receiver, channel: str) -> None:
    local.fail_with = 500
    senders = {
        "teams": TeamsAlerts(hook_url=f"{local.url}{SECRET_PATH}"),
        "slack": SlackAlerts(
            token="xoxb-secret-token", channel="#a", api_url=f"{local.url}/s3cr3t-signature/"
        ),
        "webhook": WebhookAlerts(url=f"{local.url}{SECRET_PATH}"),
    }
    with pytest.raises(AlertDeliveryError) as raised:
        senders[channel].send(ALERT)
    assert "s3cr3t" not in str(raised.value) and "xoxb" not in str(raised.value)
    assert "MNIST_ALERTS_" in str(raised.value)
    local.fail_with = None


def test_an_unreachable_webhook_fails_without_showing_the_url() -> None:
    with receiver() as closed:
        url = f"{closed.url}{SECRET_PATH}"
    with pytest.raises(AlertDeliveryError, match="ConnectionError") as raised:
        WebhookAlerts(url=url, timeout_seconds=5).send(ALERT)
    assert "s3cr3t" not in str(raised.value)


# ---- the tick watcher ------------------------------------------------------------------------------------


def watched_sensor(instance: dg.DagsterInstance, name: str) -> InstigatorState:
    repository = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("mnist"), "__repository__")
    state = InstigatorState(
        RemoteInstigatorOrigin(repository, name), InstigatorType.SENSOR, InstigatorStatus.RUNNING
    )
    instance.add_instigator_state(state)
    return state


def add_tick(
    instance: dg.DagsterInstance, state: InstigatorState, status: TickStatus, at: float, text: str = ""
) -> None:
    error = None
    if status == TickStatus.FAILURE:
        try:
            raise ValueError(text)
        except ValueError:
            error = serializable_error_info_from_exc_info(sys.exc_info())
    instance.create_tick(
        TickData(
            instigator_origin_id=state.instigator_origin_id,
            instigator_name=state.instigator_name,
            instigator_type=InstigatorType.SENSOR,
            status=status,
            timestamp=at,
            selector_id=state.selector_id,
            error=error,
            skip_reason="nothing new" if status == TickStatus.SKIPPED else None,
            run_ids=[] if status == TickStatus.SUCCESS else None,
        )
    )


def test_the_tick_watcher_alerts_once_per_failure_streak_and_keeps_its_place(local: Receiver) -> None:
    with dg.instance_for_test() as instance:
        start = time.time() - 100
        state = watched_sensor(instance, "training_data_sensor")
        add_tick(instance, state, TickStatus.FAILURE, start - 50, "before the watcher started")
        for offset, status, text in [
            (1, TickStatus.SKIPPED, ""),
            (2, TickStatus.FAILURE, "sensor cursor version 99 is not 2"),
            (3, TickStatus.FAILURE, "sensor cursor version 99 is not 2"),  # the same streak
            (4, TickStatus.SUCCESS, ""),
            (5, TickStatus.FAILURE, "storage unreachable"),  # a new streak
            (6, TickStatus.STARTED, ""),  # still running: not read past
        ]:
            add_tick(instance, state, status, start + offset, text)
        sensor = tick_failure_sensor("webhook", "alerts_webhook", UI, 30)
        resources = {"alerts_webhook": WebhookAlerts(url=f"{local.url}/hook")}

        def tick(cursor: str | None) -> dg.SensorResult:
            context = dg.build_sensor_context(
                instance=instance,
                cursor=cursor,
                repository_name="__repository__",
                sensor_name="webhook_on_tick_failure",
                resources=resources,
                last_sensor_start_time=start,
            )
            result = sensor(context)
            assert isinstance(result, dg.SensorResult)
            return result

        first = tick(None)
        bodies = [r.json() for r in local.received("/hook")]
        assert [b["message"] for b in bodies] == [
            "ValueError: sensor cursor version 99 is not 2",
            "ValueError: storage unreachable",
        ]
        assert {b["sensor"] for b in bodies} == {"training_data_sensor"}
        assert bodies[0]["url"] == f"{UI}/locations/__repository__@mnist/sensors/training_data_sensor"
        assert first.skip_reason is not None and "sent 2 alert(s)" in str(first.skip_reason.skip_message)
        assert first.cursor is not None
        position = TickCursor.parse(first.cursor, start=0).positions[state.selector_id]
        assert position.failing  # the last finished tick failed: the streak goes on

        # The STARTED tick ends in failure: same streak, no alert. Then it recovers and fails again: one alert.
        [started] = instance.get_ticks(
            state.instigator_origin_id, state.selector_id, statuses=[TickStatus.STARTED]
        )
        instance.update_tick(started.with_status(TickStatus.FAILURE, error=bodies_error()))
        second = tick(first.cursor)
        assert len(local.received("/hook")) == 2
        assert second.skip_reason is not None and "no new failure among 1 sensor(s)" in str(
            second.skip_reason.skip_message
        )
        add_tick(instance, state, TickStatus.SKIPPED, start + 7)
        add_tick(instance, state, TickStatus.FAILURE, start + 8, "back again")
        tick(second.cursor)
        assert [r.json()["message"] for r in local.received("/hook")][2:] == ["ValueError: back again"]


def bodies_error() -> SerializableErrorInfo:
    return SerializableErrorInfo("ValueError: still failing\n", [], "ValueError")
