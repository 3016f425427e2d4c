"""Alerts: who is told when a run fails or a sensor tick fails, and where the link in the message points."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BeforeValidator, PositiveInt

from orchestration.settings.base import EnvironmentSettings, EnvReference, variable
from orchestration.settings.errors import SettingsError

# Where alerts can go. A new channel adds its name here and its resource in orchestration.alerts.channels.
AlertChannel = Literal["teams", "slack", "webhook"]
ALERT_CHANNELS: tuple[str, ...] = get_args(AlertChannel)
SLACK_API_URL = "https://slack.com/api/"


def _names(value: object) -> object:
    """'teams, slack' -> ['teams', 'slack'] (a comma-separated list in one variable)."""
    if isinstance(value, str):
        return [name.strip().lower() for name in value.split(",") if name.strip()]
    return value


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("expected an http(s) URL")
    return value.rstrip("/")


def _api_base(value: str) -> str:
    # slack_sdk joins method names onto the base URL: without the trailing slash "/api" would be lost.
    return _http_url(value) + "/"


class AlertSettings(EnvironmentSettings):
    """Alerts: failed runs, failed sensor ticks and failed asset checks are posted to Teams, Slack and/or a webhook.

    Nothing is sent, and no alert sensor is defined, until MNIST_ALERTS names at least one channel. Each
    message says the job, the partition, the failing step, the failure's own message and a link to the
    run (or the sensor) in the UI at MNIST_ALERTS_UI_URL. See docs/operations.md, "Alerts".
    """

    channels: Annotated[tuple[AlertChannel, ...], BeforeValidator(_names)] = variable(
        "MNIST_ALERTS",
        (),
        "where alerts go: a comma-separated list of teams, slack, webhook (unset: no alerts, no alert sensors)",
        expected="a comma-separated list of teams, slack, webhook",
    )
    ui_url: Annotated[str, BeforeValidator(_http_url)] | None = variable(
        "MNIST_ALERTS_UI_URL",
        None,
        "base URL people open the Dagster UI at (e.g. the SSO proxy's https://dagster.example.com); messages "
        "link to <base>/runs/<run-id>; required when MNIST_ALERTS is set",
        expected="an http(s) URL",
    )
    teams_webhook_url: EnvReference = variable(
        "MNIST_ALERTS_TEAMS_WEBHOOK_URL",
        None,
        "teams: the incoming webhook (Workflows or Office connector) URL of the channel",
        expected="a URL (read when an alert is sent)",
        secret=True,
    )
    slack_token: EnvReference = variable(
        "MNIST_ALERTS_SLACK_TOKEN",
        None,
        "slack: a bot token allowed to chat:write in the channel",
        expected="a token (read when an alert is sent)",
        secret=True,
    )
    slack_channel: str | None = variable(
        "MNIST_ALERTS_SLACK_CHANNEL", None, "slack: the channel to post in, e.g. #mnist-alerts"
    )
    slack_api_url: Annotated[str, BeforeValidator(_api_base)] = variable(
        "MNIST_ALERTS_SLACK_API_URL",
        SLACK_API_URL,
        "slack: base URL of the Slack Web API (change it only for a proxy or a test receiver)",
        expected="an http(s) URL",
    )
    webhook_url: EnvReference = variable(
        "MNIST_ALERTS_WEBHOOK_URL",
        None,
        "webhook: the URL each alert is POSTed to as JSON (it may carry its own token, hence secret)",
        expected="a URL (read when an alert is sent)",
        secret=True,
    )
    interval_seconds: PositiveInt = variable(
        "MNIST_ALERTS_INTERVAL", 30, "seconds between ticks of the alert sensors (how soon an alert goes out)"
    )

    @property
    def enabled(self) -> bool:
        return bool(self.channels)

    def check(self) -> None:
        """Refuse settings that contradict each other, naming the variables. Raises SettingsError."""
        problems: list[str] = []
        needs = {
            "teams": [("MNIST_ALERTS_TEAMS_WEBHOOK_URL", self.teams_webhook_url)],
            "slack": [
                ("MNIST_ALERTS_SLACK_TOKEN", self.slack_token),
                ("MNIST_ALERTS_SLACK_CHANNEL", self.slack_channel),
            ],
            "webhook": [("MNIST_ALERTS_WEBHOOK_URL", self.webhook_url)],
        }
        for channel, required in needs.items():
            chosen = channel in self.channels
            for name, value in required:
                if chosen and value is None:
                    problems.append(
                        f"MNIST_ALERTS={','.join(self.channels)} names {channel}, which needs {name}"
                    )
                elif not chosen and value is not None:
                    problems.append(
                        f"{name} is set but MNIST_ALERTS does not name {channel}: add {channel} to MNIST_ALERTS "
                        f"or unset {name}"
                    )
        if self.channels and self.ui_url is None:
            problems.append(
                "MNIST_ALERTS needs MNIST_ALERTS_UI_URL, the address people open the Dagster UI at (the "
                "messages link to the run there)"
            )
        if len(set(self.channels)) != len(self.channels):
            problems.append(f"MNIST_ALERTS names a channel twice: {','.join(self.channels)}")
        if problems:
            raise SettingsError("; ".join(problems))
