"""Where alerts go: Teams, Slack and a plain webhook, each a Dagster resource with one `send(alert)`.

Teams and Slack are dagster-msteams' and dagster-slack's own resources (`MSTeamsResource`,
`SlackResource`) with the message built as their run-failure sensors build it; Slack gains the API base
URL (their resource always talks to slack.com). Secrets (webhook URLs, the Slack token) reach these
resources as `dg.EnvVar`, resolved when a tick uses them. An error never shows a secret: a failed
delivery is reported by channel and variable name, without the URL or token.
"""

from __future__ import annotations

from abc import abstractmethod
from urllib.parse import urlparse

import dagster as dg
import requests
from dagster_msteams import Card, MSTeamsResource
from dagster_msteams.adaptive_card import AdaptiveCard
from dagster_msteams.utils import MSTeamsHyperlink, build_message_with_link
from dagster_slack import SlackResource
from pydantic import Field
from slack_sdk.errors import SlackApiError
from slack_sdk.web.client import WebClient

from orchestration.alerts.messages import Alert
from orchestration.settings.alerts import SLACK_API_URL


class AlertDeliveryError(Exception):
    """A channel did not take an alert. The message names the channel and its variable, never a secret."""


class AlertSender(dg.ConfigurableResource):
    """A channel an alert can be sent to."""

    @abstractmethod
    def send(self, alert: Alert) -> None: ...


class TeamsAlerts(MSTeamsResource, AlertSender):
    """Microsoft Teams: an adaptive card (Workflows webhooks) or a legacy card (Office connector webhooks)."""

    def send(self, alert: Alert) -> None:
        if not urlparse(self.hook_url).hostname:  # TeamsClient would put the URL in its error
            raise AlertDeliveryError("Teams: MNIST_ALERTS_TEAMS_WEBHOOK_URL is not a URL with a host name")
        client = self.get_client()
        legacy = client.is_legacy_webhook()
        card = Card() if legacy else AdaptiveCard()
        card.add_attachment(
            build_message_with_link(
                legacy, text=alert.text(), link=MSTeamsHyperlink(text=alert.link_text, url=alert.link)
            )
        )
        try:
            client.post_message(card.payload)
        except requests.RequestException as exc:
            raise AlertDeliveryError(
                f"Teams did not accept the alert ({_describe(exc)}); check MNIST_ALERTS_TEAMS_WEBHOOK_URL"
            ) from None


class SlackAlerts(SlackResource, AlertSender):
    """Slack: `chat.postMessage` with the text and a button to the UI, as dagster-slack's failure sensor posts."""

    channel: str = Field(description="Slack channel to post in, e.g. #mnist-alerts")
    api_url: str = Field(default=SLACK_API_URL, description="base URL of the Slack Web API")

    def get_client(self) -> WebClient:
        return WebClient(token=self.token, base_url=self.api_url, timeout=30)

    def send(self, alert: Alert) -> None:
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{alert.headline}*"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": alert.text()}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": alert.link_text},
                        "url": alert.link,
                    }
                ],
            },
        ]
        try:
            self.get_client().chat_postMessage(channel=self.channel, text=alert.text(), blocks=blocks)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            raise AlertDeliveryError(
                f"Slack refused the alert ({error or 'no error given'}); check MNIST_ALERTS_SLACK_TOKEN and "
                f"MNIST_ALERTS_SLACK_CHANNEL"
            ) from None
        except OSError as exc:
            raise AlertDeliveryError(
                f"Slack did not answer ({type(exc).__name__}); check MNIST_ALERTS_SLACK_API_URL"
            ) from None


class WebhookAlerts(AlertSender):
    """A plain webhook: each alert POSTed as one JSON object (see `Alert.as_json`)."""

    url: str = Field(description="URL each alert is POSTed to")
    timeout_seconds: float = Field(default=30, description="how long to wait for the webhook to answer")

    def send(self, alert: Alert) -> None:
        try:
            response = requests.post(self.url, json=alert.as_json(), timeout=self.timeout_seconds)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise AlertDeliveryError(
                f"the webhook did not accept the alert ({_describe(exc)}); check MNIST_ALERTS_WEBHOOK_URL"
            ) from None


def _describe(exc: requests.RequestException) -> str:
    """The kind of failure and the HTTP status, without the URL (requests' own messages include it)."""
    if exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    if exc.request is None:  # raised by TeamsClient with the service's answer, which holds no URL
        return f"answer: {str(exc)[:200]}"
    return type(exc).__name__
