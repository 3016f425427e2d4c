"""Object storage in an Azure Blob container (also what the Azurite emulator serves)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr

from resources.azure.credentials import blob_service_client

from .base import ObjectInfo, ObjectNotFound, ObjectStore
from .names import validate_name, validate_prefix

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient, ContainerClient


class AzureBlobObjectStore(ObjectStore):
    """Objects are block blobs in one container.

    Credentials, most specific first: a connection string; an account key; a SAS token;
    otherwise `DefaultAzureCredential` (see `resources.azure.credentials`).
    Secret fields are meant to be filled from the environment with `dg.EnvVar`.
    A single Put Blob / Put Block List is atomic, so uploads never expose partial objects.
    """

    container: str
    account_url: str | None = None
    connection_string: str | None = None
    account_key: str | None = None
    sas_token: str | None = None
    create_container: bool = True

    _service: Any = PrivateAttr(default=None)
    _client: Any = PrivateAttr(default=None)

    def describe(self) -> str:
        where = self.account_url or "the account in the connection string"
        return f"Azure Blob container {self.container!r} at {where}"

    def uri(self, name: str) -> str:
        return f"{self._container().url.rstrip('/')}/{validate_name(name)}"

    def service_client(self) -> BlobServiceClient:
        """The Blob service client of the store's account (Batch also uses it: SAS for its nodes, Pipes)."""
        if self._service is None:
            self._service = blob_service_client(
                account_url=self.account_url,
                connection_string=self.connection_string,
                account_key=self.account_key,
                sas_token=self.sas_token,
            )
        return self._service

    def _container(self) -> ContainerClient:
        if self._client is not None:
            return self._client
        from azure.core.exceptions import ResourceExistsError

        client = self.service_client().get_container_client(self.container)
        if self.create_container:
            with contextlib.suppress(ResourceExistsError):
                client.create_container()
        self._client = client
        return client

    def _info(self, props: Any) -> ObjectInfo:
        return ObjectInfo(props.name, props.size, props.etag, props.last_modified)

    def put_bytes(self, name: str, data: bytes) -> ObjectInfo:
        blob = self._container().get_blob_client(validate_name(name))
        result = blob.upload_blob(data, overwrite=True)
        return ObjectInfo(name, len(data), result["etag"], result["last_modified"])

    def put_file(self, name: str, path: Path) -> ObjectInfo:
        blob = self._container().get_blob_client(validate_name(name))
        with path.open("rb") as fh:
            result = blob.upload_blob(fh, overwrite=True)
        return ObjectInfo(name, path.stat().st_size, result["etag"], result["last_modified"])

    def get_bytes(self, name: str) -> bytes:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self._container().download_blob(validate_name(name)).readall()
        except ResourceNotFoundError:
            raise ObjectNotFound(self.describe(), name) from None

    def download_file(self, name: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.get_bytes(name))

    def info(self, name: str) -> ObjectInfo | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            props = self._container().get_blob_client(validate_name(name)).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return self._info(props)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for props in self._container().list_blobs(name_starts_with=validate_prefix(prefix) or None):
            yield self._info(props)

    def list_dirs(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        for item in self._container().walk_blobs(name_starts_with=base or None, delimiter="/"):
            if item.name.endswith("/"):
                yield item.name

    def delete(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            self._container().delete_blob(validate_name(name))
