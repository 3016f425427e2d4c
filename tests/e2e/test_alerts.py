"""Alerts end to end: a real dagster-webserver + dagster-daemon, the alert sensors of all three channels
running, and a local HTTP receiver standing in for Teams, Slack and the webhook.

One site for every check (starting the services costs most of the time): after the alert sensors have
ticked once, an inference batch lands and the inference sensor starts a score_batch run that fails (no
model has been promoted yet: a `dg.Failure`), and the training sensor gets a cursor it refuses, so each
of its ticks fails. Each channel must then get exactly one message for the run and one for the sensor
(its later failed ticks belong to the same streak), well formed, with the facts and the link, and no
secret may appear in the services' log. The retrain schedule is visible and stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import wait_for
from tests.support.instance import instance_yaml
from tests.support.receiver import Received, Receiver, receiver
from tests.support.webserver import DagsterServices, dagster_services, graphql

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

UI = "https://dagster.example.com"
TEAMS_PATH = "/teams/workflows/s3cr3t-signature"
SLACK_TOKEN = "xoxb-e2e-s3cr3t"
BATCH = "batch-7"
SELECTOR = {"repositoryLocationName": "mnist", "repositoryName": "__repository__"}
CHANNELS = ("teams", "slack", "webhook")
ALERT_SENSORS = [f"{c}_on_{w}_failure" for c in CHANNELS for w in ("run", "tick")]

SENSOR = """query Sensor($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  __typename ... on Sensor { sensorState { status ticks(limit: 20) { status error { message cause { message } } } } } } }"""
START_SENSOR = """mutation Start($selector: SensorSelector!) { startSensor(sensorSelector: $selector) {
  __typename ... on Sensor { sensorState { status } } ... on PythonError { message } } }"""
SET_CURSOR = """mutation Cursor($selector: SensorSelector!, $cursor: String) {
  setSensorCursor(sensorSelector: $selector, cursor: $cursor) { __typename ... on PythonError { message } } }"""
SCHEDULE = """query Schedule($selector: ScheduleSelector!) { scheduleOrError(scheduleSelector: $selector) {
  __typename ... on Schedule { cronSchedule executionTimezone pipelineName scheduleState { status } } } }"""
RUNS = """{ runsOrError { ... on Runs { results { runId jobName status tags { key value } } } } }"""


@dataclass
class Site:
    services: DagsterServices
    receiver: Receiver

    def sensor(self, name: str) -> dict[str, Any]:
        answer = graphql(self.services.graphql_url, SENSOR, {"selector": {**SELECTOR, "sensorName": name}})
        return answer["sensorOrError"]

    def ticks(self, name: str) -> list[dict[str, Any]]:
        return self.sensor(name)["sensorState"]["ticks"]

    def runs(self) -> list[dict[str, Any]]:
        return graphql(self.services.graphql_url, RUNS)["runsOrError"]["results"]

    def messages(self) -> dict[str, list[Received]]:
        return {
            "teams": self.receiver.received(TEAMS_PATH),
            "slack": self.receiver.received("/slack/api/chat.postMessage"),
            "webhook": self.receiver.received("/hook"),
        }


def alert_text(channel: str, request: Received) -> str:
    """The text a person reads, from each channel's own message format."""
    body = request.json()
    if channel == "teams":
        [attachment] = body["attachments"]
        return "\n".join(block["text"] for block in attachment["content"]["body"])
    return body["text"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("alerts")
    with receiver() as local, instance_yaml(tmp / "home") as _instance:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "MNIST_", "DAGSTER_"))}
        env.update(
            MNIST_DATA_DIR=str(tmp / "storage"),
            MNIST_WORK_DIR=str(tmp / "compute"),
            MNIST_ALERTS="teams,slack,webhook",
            MNIST_ALERTS_UI_URL=UI,
            MNIST_ALERTS_TEAMS_WEBHOOK_URL=f"{local.url}{TEAMS_PATH}",
            MNIST_ALERTS_SLACK_TOKEN=SLACK_TOKEN,
            MNIST_ALERTS_SLACK_CHANNEL="#mnist-alerts",
            MNIST_ALERTS_SLACK_API_URL=f"{local.url}/slack/api/",
            MNIST_ALERTS_WEBHOOK_URL=f"{local.url}/hook",
            MNIST_ALERTS_INTERVAL="2",
        )
        with dagster_services(tmp / "home", env) as services:
            site = Site(services, local)
            # The run-failure sensors report runs that fail after their first tick, the tick watchers ticks
            # after they started: let every alert sensor tick once before anything fails.
            wait_for(
                lambda: all(any(t["status"] != "STARTED" for t in site.ticks(n)) for n in ALERT_SENSORS),
                90, "a first tick of every alert sensor", services.log,
            )  # fmt: skip
            batch = tmp / "storage" / "inference" / BATCH
            batch.mkdir(parents=True)
            (batch / "digits.idx3-ubyte").write_bytes(b"\x00\x00\x08\x03")
            (batch / "_SUCCESS").write_bytes(b"")
            training = {**SELECTOR, "sensorName": "training_data_sensor"}
            answer = graphql(services.graphql_url, SET_CURSOR, {"selector": training, "cursor": '{"v": 99}'})
            assert answer["setSensorCursor"]["__typename"] != "PythonError", answer
            for name in ("inference_batch_sensor", "training_data_sensor"):
                started = graphql(
                    services.graphql_url, START_SENSOR, {"selector": {**SELECTOR, "sensorName": name}}
                )
                assert started["startSensor"]["__typename"] == "Sensor", started
            wait_for(
                lambda: all(len(found) >= 2 for found in site.messages().values()),
                120, "a run alert and a tick alert on every channel", services.log,
            )  # fmt: skip

            # Let the training sensor fail another tick, and the watchers read it: no further alert.
            def failed_ticks() -> int:
                return sum(t["status"] == "FAILURE" for t in site.ticks("training_data_sensor"))

            seen = failed_ticks()
            wait_for(lambda: failed_ticks() > seen, 60, "another failed tick of training_data_sensor")
            time.sleep(5)  # more than two alert intervals
            yield site
            wait_for(
                lambda: all(r["status"] not in ("QUEUED", "STARTING", "STARTED") for r in site.runs()),
                60, "no run left running",
            )  # fmt: skip


def test_every_channel_gets_exactly_one_run_alert_and_one_tick_alert(site: Site) -> None:
    for channel, received in site.messages().items():
        texts = [alert_text(channel, r) for r in received]
        run_alerts = [t for t in texts if "run of score_batch failed" in t]
        tick_alerts = [t for t in texts if "sensor training_data_sensor failed its tick" in t]
        assert (len(run_alerts), len(tick_alerts), len(texts)) == (1, 1, 2), (channel, texts)


def test_the_run_alert_says_job_partition_step_the_failure_and_links_the_run(site: Site) -> None:
    [run] = [r for r in site.runs() if r["jobName"] == "score_batch"]
    assert run["status"] == "FAILURE"
    assert {"key": "dagster/partition", "value": BATCH} in run["tags"]
    link = f"{UI}/runs/{run['runId']}"
    for channel, received in site.messages().items():
        [text] = [
            alert_text(channel, r) for r in received if "run of score_batch failed" in alert_text(channel, r)
        ]
        for fact in ("Job: score_batch", f"Partition: {BATCH}", "Step: mnist_predictions", link):
            assert fact in text, (channel, fact, text)
        assert "No model has passed the accuracy check yet" in text, (channel, text)
        assert "Traceback" not in text and 'File "' not in text, (channel, text)
    [webhook] = [r.json() for r in site.messages()["webhook"] if r.json()["kind"] == "run_failure"]
    assert (webhook["job"], webhook["partition"], webhook["step"], webhook["url"]) == (
        "score_batch", BATCH, "mnist_predictions", link,
    )  # fmt: skip


def test_the_tick_alert_names_the_sensor_its_error_and_links_it(site: Site) -> None:
    # Dagster wraps the sensor's exception; the cause is the sensor's own message, which the alert carries.
    [cause] = {
        t["error"]["cause"]["message"] for t in site.ticks("training_data_sensor") if t["status"] == "FAILURE"
    }
    assert "cursor" in cause
    for channel, received in site.messages().items():
        [text] = [alert_text(channel, r) for r in received if "failed its tick" in alert_text(channel, r)]
        assert "Sensor: training_data_sensor" in text and "Code location: mnist" in text, (channel, text)
        assert f"{UI}/locations/__repository__@mnist/sensors/training_data_sensor" in text, (channel, text)
        assert cause.strip() in text and "Traceback" not in text, (channel, text)


def test_each_channel_gets_its_own_well_formed_request(site: Site) -> None:
    messages = site.messages()
    for request in messages["teams"]:
        [attachment] = request.json()["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert attachment["content"]["type"] == "AdaptiveCard"
    for request in messages["slack"]:
        assert request.headers["authorization"] == f"Bearer {SLACK_TOKEN}"
        body = request.json()
        assert body["channel"] == "#mnist-alerts"
        assert body["blocks"][-1]["elements"][0]["url"].startswith(UI + "/")
    for request in messages["webhook"]:
        assert request.headers["content-type"] == "application/json"
        assert {"kind", "headline", "message", "url", "text"} <= set(request.json())


def test_no_secret_reaches_the_logs(site: Site) -> None:
    log = Path(site.services.log).read_text(errors="replace")
    assert SLACK_TOKEN not in log and "s3cr3t" not in log


def test_the_retrain_schedule_is_visible_and_stopped_by_default(site: Site) -> None:
    selector = {**SELECTOR, "scheduleName": "retrain_schedule"}
    schedule = graphql(site.services.graphql_url, SCHEDULE, {"selector": selector})["scheduleOrError"]
    assert schedule["__typename"] == "Schedule", schedule
    assert (schedule["pipelineName"], schedule["cronSchedule"], schedule["executionTimezone"]) == (
        "train_model", "0 3 * * 1", "UTC",
    )  # fmt: skip
    assert schedule["scheduleState"]["status"] == "STOPPED"
