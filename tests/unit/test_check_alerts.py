"""Failed asset checks reach the alert channels: a run that succeeded with a failed (non-blocking, WARN)
check is posted with the asset, partition, each check's own description and a link; a run whose checks
passed posts nothing. Real runs on an in-process instance, the webhook on a local HTTP receiver."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest

from orchestration.alerts.channels import WebhookAlerts
from orchestration.alerts.sensors import check_warning_sensor
from tests.support.receiver import Received, Receiver, receiver

UI = "https://dagster.example.com"
partitions = dg.StaticPartitionsDefinition(["batch-7"])
DRIFT = "predicted_digits_match_training_distribution"


def checked_asset(passed: bool) -> dg.AssetsDefinition:
    @dg.asset(
        name="mnist_predictions",
        partitions_def=partitions,
        check_specs=[dg.AssetCheckSpec(DRIFT, asset="mnist_predictions", blocking=False)],
    )
    def predictions() -> dg.MaterializeResult:
        return dg.MaterializeResult(
            check_results=[
                dg.AssetCheckResult(
                    check_name=DRIFT,
                    passed=passed,
                    severity=dg.AssetCheckSeverity.WARN,
                    description="PSI 3.120 > 0.25 over 200 predictions"
                    if not passed
                    else "PSI 0.010 <= 0.25",
                )
            ]
        )

    return predictions


@pytest.fixture
def local() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


def tick_after_run(local: Receiver, passed: bool) -> tuple[dg.DagsterRun, list[Received]]:
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([checked_asset(passed)], instance=instance, partition_key="batch-7")
    assert result.success, "a failed non-blocking check does not fail the run"
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    [record] = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS).records
    event = record.event_log_entry.dagster_event
    assert event is not None
    context = dg.build_run_status_sensor_context(
        sensor_name="webhook_on_check_warning",
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=run,
        resources={"alerts_webhook": WebhookAlerts(url=f"{local.url}/hook")},
    )
    check_warning_sensor("webhook", "alerts_webhook", UI, 30)(context)
    return run, list(local.received("/hook"))


def test_a_run_with_a_failed_warn_check_is_posted_with_the_checks_own_description(local: Receiver) -> None:
    run, received = tick_after_run(local, passed=False)
    [request] = received
    body = request.json()
    assert body["kind"] == "check_warning"
    assert body["headline"] == (
        f"Dagster check(s) failed on mnist_predictions for partition batch-7 in a run of {run.job_name}"
    )
    assert (body["partition"], body["asset"], body["checks"]) == ("batch-7", "mnist_predictions", DRIFT)
    assert body["message"] == f"{DRIFT} (WARN): PSI 3.120 > 0.25 over 200 predictions"
    assert body["url"] == f"{UI}/runs/{run.run_id}"
    assert f"Warning: {body['message']}" in body["text"]


def test_a_run_whose_checks_passed_posts_nothing(local: Receiver) -> None:
    _, received = tick_after_run(local, passed=True)
    assert received == []
