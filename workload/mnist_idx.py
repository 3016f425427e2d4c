"""Read and validate MNIST IDX files (gzip'd or plain).

Pure numpy, no Dagster: this module ships to remote compute with the workload and is also
used by the orchestration side to validate downloads before they are stored.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
ROWS = COLS = 28


class IdxFormatError(ValueError):
    """An IDX file is not what was expected. The message names the file, the expectation and the finding."""

    def __init__(self, source: str, expected: str, found: str) -> None:
        self.source = source
        self.expected = expected
        self.found = found
        super().__init__(f"{source}: expected {expected}, found {found}")


@dataclass(frozen=True)
class IdxArray:
    source: str
    data: np.ndarray


def _decompress(raw: bytes, source: str) -> bytes:
    if raw[:2] != b"\x1f\x8b":
        return raw  # plain IDX
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxFormatError(
            source, "a complete gzip stream", f"a damaged or truncated one ({exc})"
        ) from None


def parse_idx(raw: bytes, source: str, *, expected_magic: int | None = None) -> IdxArray:
    """Parse one IDX file (gzip'd or plain) into an array; strict about size and header."""
    payload = _decompress(raw, source)
    if len(payload) < 4:
        raise IdxFormatError(source, "an IDX header of at least 4 bytes", f"{len(payload)} bytes")
    zero, dtype_code, ndim = struct.unpack(">HBB", payload[:4])
    magic = struct.unpack(">I", payload[:4])[0]
    if zero != 0 or dtype_code != 0x08 or ndim == 0:
        raise IdxFormatError(source, "an unsigned-byte IDX magic number (0x0000080N)", f"0x{magic:08x}")
    if expected_magic is not None and magic != expected_magic:
        raise IdxFormatError(source, f"magic number 0x{expected_magic:08x}", f"0x{magic:08x}")
    header_len = 4 + 4 * ndim
    if len(payload) < header_len:
        raise IdxFormatError(source, f"a {header_len}-byte header", f"{len(payload)} bytes")
    dims = struct.unpack(f">{ndim}I", payload[4:header_len])
    expected_len = header_len + int(np.prod(dims, dtype=np.int64))
    if len(payload) != expected_len:
        raise IdxFormatError(
            source, f"{expected_len} bytes for dimensions {'x'.join(map(str, dims))}", f"{len(payload)} bytes"
        )
    data = np.frombuffer(payload, dtype=np.uint8, offset=header_len).reshape(dims)
    return IdxArray(source, data)


def parse_images(raw: bytes, source: str) -> np.ndarray:
    """MNIST-shaped images: N x 28 x 28 unsigned bytes."""
    arr = parse_idx(raw, source, expected_magic=IMAGES_MAGIC).data
    if arr.shape[1:] != (ROWS, COLS):
        raise IdxFormatError(source, f"{ROWS}x{COLS} images", "x".join(map(str, arr.shape[1:])) + " images")
    if arr.shape[0] == 0:
        raise IdxFormatError(source, "at least one image", "none")
    return arr


def parse_labels(raw: bytes, source: str) -> np.ndarray:
    """MNIST labels: N unsigned bytes, each 0-9."""
    arr = parse_idx(raw, source, expected_magic=LABELS_MAGIC).data
    if arr.size and int(arr.max()) > 9:
        bad = int(np.argmax(arr > 9))
        raise IdxFormatError(source, "labels 0-9", f"label {int(arr[bad])} at index {bad}")
    return arr


def parse_split(
    images_raw: bytes, images_source: str, labels_raw: bytes, labels_source: str
) -> tuple[np.ndarray, np.ndarray]:
    images = parse_images(images_raw, images_source)
    labels = parse_labels(labels_raw, labels_source)
    if len(images) != len(labels):
        raise IdxFormatError(
            labels_source, f"{len(images)} labels (one per image in {images_source})", f"{len(labels)}"
        )
    return images, labels


def encode_idx(data: np.ndarray, *, gzip_level: int | None = 6) -> bytes:
    """Encode an unsigned-byte array as IDX (gzip'd unless gzip_level is None)."""
    arr = np.ascontiguousarray(data, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + arr.tobytes()
    if gzip_level is None:
        return payload
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=gzip_level, mtime=0) as gz:
        gz.write(payload)
    return buf.getvalue()
