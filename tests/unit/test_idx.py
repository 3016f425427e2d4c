import gzip
import struct

import numpy as np
import pytest

from workload.mnist_idx import IdxFormatError, encode_idx, parse_images, parse_labels, parse_split


def images(n: int = 3) -> np.ndarray:
    return np.arange(n * 784, dtype=np.uint32).reshape(n, 28, 28).astype(np.uint8)


@pytest.mark.parametrize("gz", [6, None])
def test_round_trip_gzip_and_plain(gz: int | None) -> None:
    data = images()
    assert np.array_equal(parse_images(encode_idx(data, gzip_level=gz), "x"), data)


def test_split_agrees() -> None:
    imgs, labels = parse_split(encode_idx(images(4)), "i", encode_idx(np.array([0, 1, 9, 3], np.uint8)), "l")
    assert imgs.shape == (4, 28, 28)
    assert labels.tolist() == [0, 1, 9, 3]


def test_truncated_gzip_names_file() -> None:
    raw = encode_idx(images())
    with pytest.raises(IdxFormatError, match=r"train-images.*expected a complete gzip stream"):
        parse_images(raw[: len(raw) // 2], "train-images")


def test_corrupt_gzip() -> None:
    raw = bytearray(encode_idx(images()))
    raw[20:40] = b"\x00" * 20
    with pytest.raises(IdxFormatError, match="gzip"):
        parse_images(bytes(raw), "f")


def test_truncated_payload_reports_sizes() -> None:
    payload = encode_idx(images(), gzip_level=None)
    with pytest.raises(IdxFormatError, match=r"expected 2368 bytes for dimensions 3x28x28, found 2000 bytes"):
        parse_images(payload[:2000], "f")


def test_trailing_garbage_rejected() -> None:
    payload = encode_idx(images(), gzip_level=None) + b"extra"
    with pytest.raises(IdxFormatError, match="found 2373 bytes"):
        parse_images(payload, "f")


def test_wrong_magic() -> None:
    labels = encode_idx(np.zeros(3, np.uint8))
    with pytest.raises(IdxFormatError, match=r"expected magic number 0x00000803, found 0x00000801"):
        parse_images(labels, "labels-as-images")


def test_not_idx_at_all() -> None:
    with pytest.raises(IdxFormatError, match=r"unsigned-byte IDX magic"):
        parse_images(b"PK\x03\x04 this is a zip", "archive.zip")


def test_wrong_image_size() -> None:
    with pytest.raises(IdxFormatError, match=r"expected 28x28 images, found 32x32 images"):
        parse_images(encode_idx(np.zeros((2, 32, 32), np.uint8)), "cifar")


def test_empty_image_set() -> None:
    with pytest.raises(IdxFormatError, match="at least one image"):
        parse_images(encode_idx(np.zeros((0, 28, 28), np.uint8)), "f")


def test_label_out_of_range() -> None:
    with pytest.raises(IdxFormatError, match=r"labels 0-9, found label 12 at index 1"):
        parse_labels(encode_idx(np.array([1, 12, 3], np.uint8)), "f")


def test_count_mismatch() -> None:
    with pytest.raises(IdxFormatError, match=r"labels: expected 4 labels .* found 3"):
        parse_split(encode_idx(images(4)), "images", encode_idx(np.zeros(3, np.uint8)), "labels")


def test_short_header() -> None:
    with pytest.raises(IdxFormatError, match="header"):
        parse_images(gzip.compress(struct.pack(">HBB", 0, 8, 3) + b"\x00\x00"), "f")
