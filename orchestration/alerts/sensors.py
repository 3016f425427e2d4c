"""The alert sensors of one channel: `<channel>_on_run_failure`, `<channel>_on_tick_failure` and
`<channel>_on_check_warning`.

One set per channel, each sensor with its own cursor, so a channel that is down fails its own ticks (which
the other channels' tick watchers report) without holding back or repeating the others' alerts.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import dagster as dg

from orchestration.alerts.messages import check_warning_alert, run_failure_alert, tick_failure_alert
from orchestration.alerts.tick_history import TickCursor, new_failure_streaks, watched_instigators

if TYPE_CHECKING:
    from orchestration.alerts.channels import AlertSender


def run_failure_sensor(channel: str, resource_key: str, ui_url: str, interval: int) -> dg.SensorDefinition:
    """Dagster's run-failure sensor for this code location's jobs, sending one alert per failed run.

    Built as `run_failure_sensor` builds it (a FAILURE `RunStatusSensorDefinition`), declaring the
    channel's resource key, which the decorator only takes from parameter names. dagster-msteams' and
    dagster-slack's own factories are not used: they take the webhook URL or token as a plain string
    when the code location loads (not a `dg.EnvVar`), and Slack's always posts to slack.com.
    """

    def notify(context: dg.RunStatusSensorContext, **_called_with: object) -> None:
        # The sender comes from the context: its key differs by channel, so it cannot be a parameter.
        # (Calling the sensor directly, as tests do, also passes resources as keyword arguments.)
        failure = context.for_run_failure()
        alert = run_failure_alert(
            failure.dagster_run, failure.failure_event, failure.get_step_failure_events(), ui_url
        )
        sender: AlertSender = getattr(context.resources, resource_key)
        sender.send(alert)
        context.log.info(f"sent to {channel}: {alert.headline}")

    return dg.RunStatusSensorDefinition(
        name=f"{channel}_on_run_failure",
        run_status=dg.DagsterRunStatus.FAILURE,
        run_status_sensor_fn=notify,
        minimum_interval_seconds=interval,
        description=(
            f"Posts each failed run of this code location's jobs to {channel}: job, partition, failing step, "
            "the failure's own message and a link to the run. Runs that failed before this sensor was first "
            "switched on are not reported."
        ),
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={resource_key},
    )


def check_warning_sensor(channel: str, resource_key: str, ui_url: str, interval: int) -> dg.SensorDefinition:
    """A run-status sensor on SUCCESS: one alert per run of this code location's jobs that succeeded with failed
    asset checks (the non-blocking checks, whose failures are warnings: e.g. the predictions' drift check).

    The run's check evaluations are read from its event log. A failed run is the run-failure sensor's.
    """

    def notify(context: dg.RunStatusSensorContext, **_called_with: object) -> None:
        run = context.dagster_run
        records = context.instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        evaluations = [r.event_log_entry.asset_check_evaluation for r in records]
        failed = [e for e in evaluations if e is not None and not e.passed]
        if not failed:
            return
        alert = check_warning_alert(run, failed, ui_url)
        sender: AlertSender = getattr(context.resources, resource_key)
        sender.send(alert)
        context.log.info(f"sent to {channel}: {alert.headline}")

    return dg.RunStatusSensorDefinition(
        name=f"{channel}_on_check_warning",
        run_status=dg.DagsterRunStatus.SUCCESS,
        run_status_sensor_fn=notify,
        minimum_interval_seconds=interval,
        description=(
            f"Posts to {channel} each run of this code location's jobs that succeeded with failed asset checks "
            "(warnings such as prediction drift): the asset, partition, each failed check with its own "
            "description, and a link to the run. Runs before this sensor was first switched on are not reported."
        ),
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={resource_key},
    )


def tick_failure_sensor(channel: str, resource_key: str, ui_url: str, interval: int) -> dg.SensorDefinition:
    """Reads the tick history of the other sensors and schedules; one alert per failure streak."""
    name = f"{channel}_on_tick_failure"

    @dg.sensor(
        name=name,
        minimum_interval_seconds=interval,
        description=(
            f"Posts to {channel} when a sensor or schedule of this code location fails a tick after ticks that "
            "did not fail (once per streak of failed ticks), with the error's own message and a link to it."
        ),
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={resource_key},
    )
    def watch(context: dg.SensorEvaluationContext, **_called_with: object) -> dg.SensorResult:
        now = time.time()
        cursor = TickCursor.parse(context.cursor, start=context.last_sensor_start_time or now)
        instigators = watched_instigators(context)
        failed, cursor = new_failure_streaks(context.instance, instigators, cursor, now)
        sender: AlertSender = getattr(context.resources, resource_key)
        for found in failed:
            location = found.state.repository_selector.location_name
            sender.send(
                tick_failure_alert(
                    kind="schedule" if found.kind == "schedule" else "sensor",
                    name=found.state.instigator_name,
                    location=location,
                    repository=found.state.origin.repository_origin.repository_name,
                    error=found.error,
                    ui_url=ui_url,
                )
            )
        names = ", ".join(f"{f.kind} {f.state.instigator_name}" for f in failed)
        return dg.SensorResult(
            cursor=cursor.dump(),
            skip_reason=dg.SkipReason(
                f"sent {len(failed)} alert(s) to {channel}: {names} began failing"
                if failed
                else f"no new failure among {len(instigators)} sensor(s) and schedule(s)"
            ),
        )

    return watch
