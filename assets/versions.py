"""Code versions derived from the workload source, so editing the training code makes the model stale."""

from __future__ import annotations

import hashlib
from pathlib import Path

_WORKLOAD = Path(__file__).resolve().parents[1] / "workload"


def _digest(*names: str) -> str:
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode())
        h.update((_WORKLOAD / name).read_bytes())
    return h.hexdigest()[:12]


TRAIN_CODE_VERSION = "train-" + _digest("train.py", "features.py", "mnist_idx.py", "requirements.txt")
SCORE_CODE_VERSION = "score-" + _digest("score.py", "features.py", "mnist_idx.py")
