"""What an alert says: built from a failed run's events or a failed tick, the same for every channel.

A message names what failed (job, partition and failing step; or the sensor/schedule), carries the
failure's own message (a `dg.Failure` description, or the exception's one-line message: never a stack
trace) and links to the run or the sensor in the UI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import dagster as dg
from dagster_shared.error import SerializableErrorInfo

PARTITION_TAG = "dagster/partition"
# Longest failure message carried in an alert; the UI has the rest.
MAX_MESSAGE = 1500

AlertKind = Literal["run_failure", "tick_failure", "check_warning"]


@dataclass(frozen=True)
class Alert:
    """One notification: a headline, the facts (name -> value), the failure's own message and a link."""

    kind: AlertKind
    headline: str
    facts: Mapping[str, str]
    message: str
    link: str
    link_text: str = "View in Dagster UI"
    details: Mapping[str, str] = field(default_factory=dict)  # machine-readable extras for the webhook

    def text(self) -> str:
        """Plain text, readable as is in Teams, Slack and a terminal."""
        facts = "\n".join(f"{name}: {value}" for name, value in self.facts.items())
        label = "Warning" if self.kind == "check_warning" else "Error"
        return f"{self.headline}\n{facts}\n{label}: {self.message}\n{self.link}"

    def as_json(self) -> dict[str, Any]:
        """The webhook's JSON body: every fact by name, plus the text as a whole."""
        return {
            "kind": self.kind,
            "headline": self.headline,
            **{name.lower().replace(" ", "_"): value for name, value in self.facts.items()},
            **self.details,
            "message": self.message,
            "url": self.link,
            "text": self.text(),
        }


def error_message(error: SerializableErrorInfo | None) -> str:
    """The innermost cause's one-line message ("ValueError: bad input"), without the stack trace.

    Dagster wraps user errors ("Error occurred while executing op ..."); the cause is what went wrong.
    """
    if error is None:
        return "(no error recorded)"
    innermost: SerializableErrorInfo = error
    while (cause := innermost.cause) is not None:
        innermost = cause
    return _shorten(innermost.message.strip() or innermost.cls_name or "(no message)")


def step_failure_message(event: dg.DagsterEvent) -> str:
    """A STEP_FAILURE event's own message: the `dg.Failure` description when there is one, else the error's."""
    data = event.step_failure_data
    user = data.user_failure_data
    if user is not None and user.description:
        return _shorten(user.description.strip())
    return error_message(data.error)


def run_failure_alert(
    run: dg.DagsterRun,
    failure_event: dg.DagsterEvent,
    step_failures: Sequence[dg.DagsterEvent],
    ui_url: str,
) -> Alert:
    """The alert for a failed run: each failing step with its own message, else the run's failure message."""
    if step_failures:
        steps = [event.step_key or "?" for event in step_failures]
        messages = [step_failure_message(event) for event in step_failures]
        message = (
            messages[0]
            if len(messages) == 1
            else "; ".join(f"{step}: {text}" for step, text in zip(steps, messages, strict=True))
        )
    else:
        steps = []
        data = failure_event.event_specific_data
        error = getattr(data, "error", None)
        message = error_message(error) if error is not None else _shorten(failure_event.message or "")
    partition = run.tags.get(PARTITION_TAG)
    return Alert(
        kind="run_failure",
        headline=f"Dagster run of {run.job_name} failed"
        + (f" for partition {partition}" if partition else ""),
        facts={
            "Job": run.job_name,
            "Partition": partition or "(none)",
            "Step": ", ".join(steps) if steps else "(no step failed: the run itself did)",
            "Run": run.run_id,
        },
        message=message,
        link=f"{ui_url}/runs/{run.run_id}",
        details={"steps": ",".join(steps)},
    )


def tick_failure_alert(
    *,
    kind: Literal["sensor", "schedule"],
    name: str,
    location: str,
    repository: str,
    error: SerializableErrorInfo | None,
    ui_url: str,
) -> Alert:
    """The alert for the first failed tick of a sensor or schedule after ticks that did not fail."""
    address = quote(f"{repository}@{location}", safe="@_")
    return Alert(
        kind="tick_failure",
        headline=f"Dagster {kind} {name} failed its tick (no further alert while it keeps failing)",
        facts={kind.capitalize(): name, "Code location": location},
        message=error_message(error),
        link=f"{ui_url}/locations/{address}/{kind}s/{quote(name)}",
        details={"instigator": name, "instigator_type": kind},
    )


def check_warning_alert(
    run: dg.DagsterRun, evaluations: Sequence[dg.AssetCheckEvaluation], ui_url: str
) -> Alert:
    """The alert for a run that succeeded with failed asset checks (non-blocking checks: warnings): each
    check with its own description, e.g. the drift check's PSI against its threshold."""
    partition = run.tags.get(PARTITION_TAG)
    assets = sorted({e.asset_key.to_user_string() for e in evaluations})
    checks = [e.check_name for e in evaluations]
    message = "; ".join(
        f"{e.check_name} ({e.severity.value}): {e.description or 'failed'}" for e in evaluations
    )
    return Alert(
        kind="check_warning",
        headline=f"Dagster check(s) failed on {', '.join(assets)}"
        + (f" for partition {partition}" if partition else "")
        + f" in a run of {run.job_name}",
        facts={
            "Job": run.job_name,
            "Partition": partition or "(none)",
            "Asset": ", ".join(assets),
            "Checks": ", ".join(checks),
            "Run": run.run_id,
        },
        message=_shorten(message),
        link=f"{ui_url}/runs/{run.run_id}",
        details={"checks": ",".join(checks)},
    )


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"
