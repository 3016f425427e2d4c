"""How Batch nodes reach Blob storage: container SAS URLs, made from the store's own credential.

A node has no credential of its own, so every URL handed to it (resource files, output files, the Pipes
container) carries a container-scoped SAS: signed with the account key when the store has one, the
store's SAS token when that is all it has, else a user delegation key (Entra ID).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from resources.storage import AzureBlobObjectStore


def container_sas_url(store: AzureBlobObjectStore, container: str, permission: str, hours: float) -> str:
    """`<container url>?<sas>` that a Batch node can use without any other credential."""
    from azure.storage.blob import generate_container_sas

    service = store.service_client()
    url = f"{service.url.rstrip('/')}/{container}"
    if store.sas_token and not store.connection_string and not store.account_key:
        return f"{url}?{store.sas_token.lstrip('?')}"
    account = service.account_name or ""
    now = datetime.now(UTC)
    expiry = now + timedelta(hours=hours)
    key = getattr(service.credential, "account_key", None)
    if key:
        sas = generate_container_sas(
            account, container, account_key=key, permission=permission, expiry=expiry
        )
    else:
        delegation = service.get_user_delegation_key(now - timedelta(minutes=5), expiry)
        sas = generate_container_sas(
            account,
            container,
            user_delegation_key=delegation,
            permission=permission,
            expiry=expiry,
        )
    return f"{url}?{sas}"
