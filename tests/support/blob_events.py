"""Publish blob events the way Event Grid does to a storage queue (Event Grid schema, base64 JSON)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient


def blob_created_event(container: ContainerClient, name: str, etag: str, size: int) -> dict[str, object]:
    return {
        "topic": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
        f"Microsoft.Storage/storageAccounts/{container.account_name}",
        "subject": f"/blobServices/default/containers/{container.container_name}/blobs/{name}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "id": str(uuid.uuid4()),
        "eventTime": datetime.now(UTC).isoformat(),
        "data": {
            "api": "PutBlob",
            "clientRequestId": str(uuid.uuid4()),
            "requestId": str(uuid.uuid4()),
            "eTag": etag,
            "contentType": "application/octet-stream",
            "contentLength": size,
            "blobType": "BlockBlob",
            "url": f"{container.url}/{name}",
            "sequencer": "00000000000004420000000000028963",
            "storageDiagnostics": {"batchId": str(uuid.uuid4())},
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


def upload_and_notify(
    container: ContainerClient, queue: QueueClient, name: str, data: bytes, times: int = 1
) -> str:
    """Upload a blob, then deliver its BlobCreated event `times` times (Event Grid is at-least-once)."""
    result = container.get_blob_client(name).upload_blob(data, overwrite=True)
    event = blob_created_event(container, name, result["etag"], len(data))
    for _ in range(times):
        queue.send_message(base64.b64encode(json.dumps(event).encode()).decode())
    return result["etag"]
