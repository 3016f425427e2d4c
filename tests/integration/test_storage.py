"""One contract, two implementations: every case runs on a local directory and on Azurite."""

import io
from pathlib import Path

import pytest

from resources.storage import AzureBlobObjectStore, InvalidObjectName, ObjectNotFound, ObjectStore
from resources.storage.local import LocalObjectStore


def test_put_get_info(store: ObjectStore) -> None:
    info = store.put_bytes("raw/a.bin", b"hello")
    assert info.size == 5 and info.etag
    assert store.get_bytes("raw/a.bin") == b"hello"
    got = store.info("raw/a.bin")
    assert got is not None and got.size == 5 and got.etag == info.etag
    assert store.info("raw/missing") is None
    with pytest.raises(ObjectNotFound, match="raw/missing"):
        store.get_bytes("raw/missing")


def test_rewrite_changes_etag(store: ObjectStore) -> None:
    first = store.put_bytes("x/y", b"1")
    second = store.put_bytes("x/y", b"2")
    assert first.etag != second.etag
    assert store.get_bytes("x/y") == b"2"


def test_list_by_prefix_with_metadata(store: ObjectStore) -> None:
    for name in [
        "inference/b1/a.idx",
        "inference/b1/_SUCCESS",
        "inference/b2/c.idx",
        "inference-x/d",
        "other/e",
    ]:
        store.put_bytes(name, b"data" if not name.endswith("_SUCCESS") else b"")
    listed = list(store.list("inference/"))
    assert [o.name for o in listed] == ["inference/b1/_SUCCESS", "inference/b1/a.idx", "inference/b2/c.idx"]
    assert [o.size for o in listed] == [0, 4, 4]
    assert all(o.etag and o.last_modified.tzinfo is not None for o in listed)
    assert [o.name for o in store.list("inference")] == ["inference-x/d", *(o.name for o in listed)]
    assert [o.name for o in store.list("inference/b1/a")] == ["inference/b1/a.idx"]
    assert list(store.list_dirs("inference")) == ["inference/b1/", "inference/b2/"]
    assert list(store.list_dirs("")) == ["inference-x/", "inference/", "other/"]


def test_unicode_and_spaces(store: ObjectStore) -> None:
    name = "inference/batch ü 1/ßpace ✓.idx"
    store.put_bytes(name, b"z")
    assert [o.name for o in store.list("inference/")] == [name]
    assert store.get_bytes(name) == b"z"


def test_escaping_names_refused(store: ObjectStore) -> None:
    for bad in ["../outside", "/etc/passwd", "a\\..\\b", "a/../../b"]:
        with pytest.raises(InvalidObjectName):
            store.put_bytes(bad, b"x")
        with pytest.raises(InvalidObjectName):
            store.get_bytes(bad)


def test_delete(store: ObjectStore) -> None:
    store.put_bytes("d/x", b"1")
    store.delete("d/x")
    store.delete("d/x")  # idempotent
    assert store.info("d/x") is None
    assert list(store.list("d/")) == []


def test_json_and_dirs(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "metrics.json").write_text("{}")
    (src / "sub" / "model.pkl").write_bytes(b"m")
    uploaded = store.upload_dir(src, "models/v1", last=("metrics.json",))
    assert [o.name for o in uploaded] == ["models/v1/sub/model.pkl", "models/v1/metrics.json"]
    out = tmp_path / "out"
    store.download_prefix("models/v1", out)
    assert (out / "sub" / "model.pkl").read_bytes() == b"m"
    store.put_json("p.json", {"a": 1})
    assert store.get_json("p.json") == {"a": 1}


class _Exploding(io.RawIOBase):
    """A stream that fails halfway, like a network drop during an upload."""

    def __init__(self) -> None:
        self.sent = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        if self.sent > 3 * 1024 * 1024:
            raise OSError("connection dropped")
        n = len(b)
        b[:n] = b"x" * n
        self.sent += n
        return n


def test_failed_write_leaves_previous_object(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes("m/current", b"good")
    if isinstance(store, LocalObjectStore):

        def explode(tmp: Path) -> None:
            tmp.write_bytes(b"partial")
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            store._commit("m/current", explode)
        assert not any(Path(store.root, ".staging").iterdir())
    else:
        from azure.storage.blob import BlobClient

        # Small blocks force a staged (Put Block ... Put Block List) upload that dies mid-way.
        assert isinstance(store, AzureBlobObjectStore) and store.connection_string
        blob = BlobClient.from_connection_string(
            store.connection_string,
            store.container,
            "m/current",
            max_single_put_size=1 << 20,
            max_block_size=1 << 20,
        )
        with pytest.raises(OSError, match="connection dropped"):
            blob.upload_blob(_Exploding(), overwrite=True)
    assert store.get_bytes("m/current") == b"good"
    assert [o.name for o in store.list("m/")] == ["m/current"]
