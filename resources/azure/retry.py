"""How Azure calls are retried: azure-core's `RetryPolicy` for requests, `Backoff` for the waits around them.

Every request goes through an azure-core pipeline (the AzureML REST clients and the Azure Batch SDK alike),
and the pipeline's `RetryPolicy` retries what is transient: 408, 429 and 5xx (honouring Retry-After),
connection resets and timeouts, with exponential backoff. `retry_policy` builds it the same way for
every client. By default azure-core does not repeat a POST whose response was lost; `EVERY_METHOD`
allows it for calls that are safe to repeat (queries, cancellations, and creates whose "already
exists" answer the caller counts as success): per call, or for a whole client (`every_method=True`).

What is not a single request has its own small loop built on `Backoff`:
- `submit_once`: a submission that must take effect at most once is sent once; after a transient
  failure, the caller's `find` looks for it (the response may have been lost) before sending again;
- `wait_until`: polling for a state the service reaches on its own (a pool finishing its deletion or
  its resize).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import TransientAzureError

if TYPE_CHECKING:
    from azure.core.pipeline.policies import RetryPolicy

T = TypeVar("T")

# Per-call `retry_on_methods`: repeat any request, POST included (see the module docstring).
EVERY_METHOD = frozenset({"GET", "HEAD", "PUT", "DELETE", "POST", "PATCH", "OPTIONS"})


def retry_policy(
    *,
    retries: int,
    backoff_seconds: float,
    backoff_max_seconds: float,
    read_timeout: float,
    every_method: bool = False,
    per_kind: int | None = None,
) -> RetryPolicy:
    """azure-core's retry policy: up to `retries` retries in all, and up to `per_kind` (default:
    azure-core's own, 3) of each kind (status, connection, read). azure-core retries the first time at
    once, then waits `backoff_seconds` x 2^(n-1), at most `backoff_max_seconds`; a Retry-After from the
    service is honoured as given.

    `every_method`: repeat POSTs too by default, for a client whose every call is safe to repeat (its
    creates count "already exists" as success); others opt in per call with `retry_on_methods`.
    """
    from azure.core.pipeline.policies import RetryPolicy

    class EveryMethodRetryPolicy(RetryPolicy):
        def configure_retries(self, options: dict[str, Any]) -> dict[str, Any]:
            options.setdefault("retry_on_methods", EVERY_METHOD)
            return super().configure_retries(options)

    return (EveryMethodRetryPolicy if every_method else RetryPolicy)(
        retry_total=retries,
        **(
            {}
            if per_kind is None
            else {"retry_connect": per_kind, "retry_read": per_kind, "retry_status": per_kind}
        ),
        retry_backoff_factor=backoff_seconds,
        retry_backoff_max=backoff_max_seconds,
        # The whole call, retries included, gives up after this many seconds.
        timeout=max(300.0, read_timeout * (retries + 1)),
    )


@dataclass
class Backoff:
    """Capped exponential waits: `first`, then doubling up to `maximum`, for at most `attempts` waits
    and `seconds` in all (None: no limit)."""

    first: float
    maximum: float = 30.0
    attempts: int | None = None
    seconds: float | None = None
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def waits(self) -> Iterator[float]:
        """Sleeps, and yields after each one; ends when the attempts or the time are used up."""
        deadline = None if self.seconds is None else time.monotonic() + self.seconds
        delay, count = self.first, 0
        while self.attempts is None or count < self.attempts:
            if deadline is not None and time.monotonic() >= deadline:
                return
            wait = delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic()))
            self.sleep(wait)
            count += 1
            yield wait
            delay = min(self.maximum, delay * 2)


def submit_once(send: Callable[[], T], find: Callable[[], T | None], backoff: Backoff) -> T:
    """Send a non-idempotent request (a job submission) so that it takes effect at most once.

    A transient failure may hide a submission that did land (the response was lost). So before
    sending again, `find` looks for it (by the idempotency key the submission carries); only if it
    is not there is the request sent again. The last transient error is raised once `backoff` runs out.
    """
    waits = backoff.waits()
    while True:
        try:
            return send()
        except TransientAzureError:
            if next(waits, None) is None:
                raise
            found = find()
            if found is not None:
                return found


def wait_until(check: Callable[[], T | None], backoff: Backoff) -> T | None:
    """Call `check` until it returns something (not None), waiting between calls; None when `backoff`
    runs out first."""
    waits = backoff.waits()
    while (result := check()) is None:
        if next(waits, None) is None:
            return None
    return result
