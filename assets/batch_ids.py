"""What a valid inference batch id is: the name of one folder under `inference/`, which is also the batch's
Dagster partition key (of `inference_batches`) and part of the `predictions/<batch>/` prefix.

One rule set for everyone who accepts a batch id: the blob sensors (a folder that lands), the gateway
(`addDynamicPartition` from ADF) and the `mnist_predictions` asset (the partition it is asked to score),
so a name refused by one is refused by all, with the same words. Pure Python, no Dagster import: the
gateway (adf_bridge/gateway) uses it and must not import Dagster.
"""

from __future__ import annotations

import unicodedata

# Long enough for any dated or GUID-based folder name; short enough for the storage prefix
# (`predictions/<batch>/...` within 1,024 characters), run keys and the UI.
MAX_BATCH_ID_LENGTH = 200
# Dagster refuses these substrings in partition keys (dagster._core.definitions.partitions INVALID_PARTITION_SUBSTRINGS).
DAGSTER_FORBIDDEN_IN_KEYS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")
EXPECTED = (
    f"expected a single folder name under inference/ (at most {MAX_BATCH_ID_LENGTH} characters, "
    "no '/', backslash, '..' or control character), e.g. '2026-11-22-batch-1'"
)


def batch_id_problem(batch_id: str) -> str | None:
    """What is wrong with `batch_id` as an inference batch id / partition key, or None when it is valid.

    The message names the id (shortened), what is wrong and what is expected."""
    problem = _problem(batch_id)
    if problem is None:
        return None
    shown = batch_id if len(batch_id) <= 80 else batch_id[:77] + "..."
    return f"inference batch id {shown!r} is not valid: {problem}; {EXPECTED}"


def _problem(batch_id: str) -> str | None:
    if not batch_id.strip():
        return "it is empty"
    if len(batch_id) > MAX_BATCH_ID_LENGTH:
        return f"it has {len(batch_id)} characters, more than {MAX_BATCH_ID_LENGTH}"
    if "/" in batch_id or "\\" in batch_id:
        return "it contains '/' or a backslash (a path, not one folder name)"
    if ".." in batch_id:
        # '..' alone escapes the folder; '...' anywhere is refused by Dagster.
        return "it contains '..'"
    if any(s in batch_id for s in DAGSTER_FORBIDDEN_IN_KEYS) or any(
        unicodedata.category(ch) == "Cc" for ch in batch_id
    ):
        return "it contains a control character"
    if batch_id == ".":
        return "it is '.'"
    return None
