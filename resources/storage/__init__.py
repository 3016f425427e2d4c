from .azure_blob import AzureBlobObjectStore
from .base import ObjectInfo, ObjectNotFound, ObjectStore
from .local import LocalObjectStore
from .names import InvalidObjectName, validate_name

__all__ = [
    "AzureBlobObjectStore",
    "InvalidObjectName",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "validate_name",
]
