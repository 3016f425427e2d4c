"""Small MNIST-shaped datasets the tests make themselves (no download, no shared data).

Digits are drawn with Pillow's built-in bitmap font, scaled to 28x28 and jittered, so a model can
learn them well from a few hundred examples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workload.mnist_idx import encode_idx

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "t10k": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _glyphs() -> np.ndarray:
    from PIL import Image, ImageDraw

    glyphs = np.zeros((10, 20, 20), dtype=np.uint8)
    for d in range(10):
        small = Image.new("L", (8, 12), 0)
        ImageDraw.Draw(small).text((1, 0), str(d), fill=255)
        glyphs[d] = np.asarray(
            small.resize((14, 20), Image.Resampling.NEAREST).crop((0, 0, 14, 20)).resize((20, 20))
        )
    return glyphs


def make_digits(n: int, seed: int, digits: Sequence[int] = range(10)) -> tuple[np.ndarray, np.ndarray]:
    """`n` jittered digits drawn evenly at random from `digits` (all ten by default), and their labels."""
    rng = np.random.default_rng(seed)
    glyphs = _glyphs()
    if list(digits) == list(range(10)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)  # the stream every existing test relies on
    else:
        labels = rng.choice(np.asarray(list(digits), dtype=np.uint8), size=n)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        dy, dx = rng.integers(2, 7, size=2)
        images[i, dy : dy + 20, dx : dx + 20] = glyphs[label]
    noise = rng.integers(0, 40, size=images.shape, dtype=np.uint8)
    return np.maximum(images, noise), labels


def write_source(
    directory: Path, n_train: int = 600, n_test: int = 200, md5sums: bool = True
) -> dict[str, str]:
    """Write the four IDX files (and an md5sums file) into `directory`; return the md5s."""
    directory.mkdir(parents=True, exist_ok=True)
    sums: dict[str, str] = {}
    for split, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = make_digits(n, seed)
        for name, data in zip(FILES[split], (encode_idx(images), encode_idx(labels)), strict=True):
            (directory / name).write_bytes(data)
            sums[name] = hashlib.md5(data).hexdigest()
    if md5sums:
        (directory / "md5sums").write_text("".join(f"{md5}  {name}\n" for name, md5 in sums.items()))
    return sums


def write_batch(
    directory: Path,
    n: int = 50,
    seed: int = 3,
    name: str = "images.idx3-ubyte.gz",
    digits: Sequence[int] = range(10),
) -> Path:
    """An inference batch file of `n` images drawn from `digits` (a skewed batch when only some)."""
    images, _ = make_digits(n, seed, digits)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(encode_idx(images))
    return path
