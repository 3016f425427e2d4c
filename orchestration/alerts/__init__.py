"""Alerts: failed runs, failed sensor/schedule ticks and failed asset checks (warnings), posted to Teams,
Slack and/or a webhook.

`alert_definitions(settings)` gives the alert sensors and their channel resources for the channels
MNIST_ALERTS names, and nothing at all when it names none (no sensor, no resource, no import of the
channels' client libraries).
"""

from __future__ import annotations

import dagster as dg

from orchestration.settings.alerts import AlertSettings

# Resource key of each channel's sender.
RESOURCE_KEYS = {"teams": "alerts_teams", "slack": "alerts_slack", "webhook": "alerts_webhook"}


def alert_definitions(settings: AlertSettings) -> dg.Definitions:
    """The alert sensors (three per channel, running from the start) and the channels' resources."""
    if not settings.enabled:
        return dg.Definitions()
    from orchestration.alerts.channels import AlertSender, SlackAlerts, TeamsAlerts, WebhookAlerts
    from orchestration.alerts.sensors import check_warning_sensor, run_failure_sensor, tick_failure_sensor

    # AlertSettings.check made sure of the UI URL and of each chosen channel's own settings; the secrets
    # are `dg.EnvVar`s, resolved when an alert sensor ticks.
    assert settings.ui_url is not None
    senders: dict[str, AlertSender] = {}
    if "teams" in settings.channels:
        assert settings.teams_webhook_url is not None
        senders["teams"] = TeamsAlerts(hook_url=settings.teams_webhook_url)
    if "slack" in settings.channels:
        assert settings.slack_token is not None and settings.slack_channel is not None
        senders["slack"] = SlackAlerts(
            token=settings.slack_token, channel=settings.slack_channel, api_url=settings.slack_api_url
        )
    if "webhook" in settings.channels:
        assert settings.webhook_url is not None
        senders["webhook"] = WebhookAlerts(url=settings.webhook_url)
    sensors: list[dg.SensorDefinition] = []
    for channel in senders:
        key = RESOURCE_KEYS[channel]
        sensors.append(run_failure_sensor(channel, key, settings.ui_url, settings.interval_seconds))
        sensors.append(tick_failure_sensor(channel, key, settings.ui_url, settings.interval_seconds))
        sensors.append(check_warning_sensor(channel, key, settings.ui_url, settings.interval_seconds))
    return dg.Definitions(sensors=sensors, resources={RESOURCE_KEYS[c]: s for c, s in senders.items()})


__all__ = ["RESOURCE_KEYS", "alert_definitions"]
