"""Blob events: Event Grid `Microsoft.Storage.BlobCreated` events delivered to an Azure Storage Queue.

This is the push mechanism behind ADF's storage event triggers. Delivery is at least once and
unordered, so consumers must tolerate duplicates; messages are deleted only after what they caused
has been recorded (see `orchestration.sensors.folder_scan`).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

import dagster as dg
from pydantic import PrivateAttr

from resources.azure.credentials import queue_client

BLOB_CREATED = "Microsoft.Storage.BlobCreated"


@dataclass(frozen=True)
class QueueMessage:
    id: str
    pop_receipt: str
    content: str
    dequeue_count: int


@dataclass(frozen=True)
class BlobEvent:
    event_type: str
    container: str
    name: str
    etag: str | None
    size: int | None


class MalformedEvent(ValueError):
    pass


def parse_events(content: str) -> list[BlobEvent]:
    """Events in one queue message: Event Grid schema, one event or an array, plain or base64 JSON."""
    text = content.strip()
    if not text.startswith(("{", "[")):
        try:
            text = base64.b64decode(text, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise MalformedEvent("message is neither JSON nor base64-encoded JSON") from None
    try:
        payload: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedEvent(f"message is not valid JSON ({exc})") from None
    events = payload if isinstance(payload, list) else [payload]
    out = []
    for ev in events:
        if not isinstance(ev, dict) or "eventType" not in ev or "subject" not in ev:
            raise MalformedEvent("expected Event Grid events with 'eventType' and 'subject'")
        # subject: /blobServices/default/containers/<container>/blobs/<name>
        subject = str(ev["subject"])
        marker = "/containers/"
        if marker not in subject or "/blobs/" not in subject:
            raise MalformedEvent(f"subject {subject!r} is not a blob subject")
        container, _, name = subject.split(marker, 1)[1].partition("/blobs/")
        data = ev.get("data") or {}
        if not name and data.get("url"):
            name = unquote(urlparse(str(data["url"])).path.split("/", 2)[-1])
        size = data.get("contentLength")
        out.append(
            BlobEvent(
                str(ev["eventType"]),
                container,
                name,
                data.get("eTag"),
                int(size) if size is not None else None,
            )
        )
    return out


class BlobEventQueue(dg.ConfigurableResource):
    """An Azure Storage Queue that an Event Grid subscription fills with blob events.

    Credentials as for the blob store: connection string, account key, SAS, else DefaultAzureCredential.
    """

    queue: str
    account_url: str | None = None  # https://<account>.queue.core.windows.net
    connection_string: str | None = None
    account_key: str | None = None
    sas_token: str | None = None
    visibility_timeout_seconds: int = 300

    _client: Any = PrivateAttr(default=None)

    def describe(self) -> str:
        return f"storage queue {self.queue!r}"

    def _queue(self) -> Any:
        if self._client is not None:
            return self._client
        client = queue_client(
            self.queue,
            account_url=self.account_url,
            connection_string=self.connection_string,
            account_key=self.account_key,
            sas_token=self.sas_token,
        )
        self._client = client
        return client

    def receive(self, max_messages: int) -> list[QueueMessage]:
        msgs = self._queue().receive_messages(
            messages_per_page=min(32, max_messages), visibility_timeout=self.visibility_timeout_seconds,
            max_messages=max_messages,
        )  # fmt: skip
        return [QueueMessage(m.id, m.pop_receipt, m.content, m.dequeue_count) for m in msgs]

    def delete(self, message_id: str, pop_receipt: str) -> bool:
        """Delete an acknowledged message; False if it had already become visible again (it will be deduped)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._queue().delete_message(message_id, pop_receipt)
        except ResourceNotFoundError:
            return False
        return True
