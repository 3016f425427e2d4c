import hashlib
import json

import dagster as dg
import numpy as np
from pydantic import Field

from resources.compute import ComputeBackend, WorkloadRequest, idempotency_key
from resources.mnist_source import MNIST_FILES, MnistSource, StoredSetSource
from resources.storage import ObjectStore
from workload.ingest import verify_set

from .layout import CURRENT, RAW_PREFIX, raw_version_prefix
from .pictures import digit_grid, markdown_image, markdown_table

# The concurrency pool of the work that decides what the model is: the raw data it learns from
# (raw_mnist moves raw/mnist/current.json) and the training itself (mnist_model moves
# models/mnist/current.json). The instance limits how many runs use it at once (pool_limits in
# instance/*/dagster.yaml: one), whichever way they were launched.
TRAINING_POOL = "mnist-training"


class RawMnistConfig(dg.Config):
    training_set: str | None = Field(
        default=None,
        description="Object-store folder of a labelled set (the four IDX files + md5sums) to use instead of "
        "the MNIST source; the training-data sensor sets it for the set that landed.",
    )


def dataset_version(checksums: dict[str, str]) -> str:
    """The raw data's identity: a digest of the four files' md5s (same bytes, same version)."""
    joined = "\n".join(f"{name} {checksums[name]}" for name in MNIST_FILES)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


@dg.asset(
    group_name="mnist",
    code_version="raw-v1",
    kinds={"python", "blob"},
    tags={"layer": "raw"},
    pool=TRAINING_POOL,
)
def raw_mnist(
    context: dg.AssetExecutionContext,
    config: RawMnistConfig,
    mnist_source: MnistSource,
    storage: ObjectStore,
    ingest_compute: ComputeBackend,
) -> dg.MaterializeResult:
    """Raw MNIST: handwritten digits 0-9 as 28x28 grayscale images, with their labels.

    Two splits in the original IDX format: `train` (what the model learns from) and `t10k` (held out,
    what the model is judged on). Every file is verified against trusted md5 checksums and parsed
    (gzip, IDX header, dimensions, image and label counts, labels 0-9) before anything is stored;
    the verified set lands under `raw/mnist/<version>/` and `raw/mnist/current.json` then points to it.
    The version is a digest of the checksums, so unchanged data keeps its version and nothing downstream
    goes stale. Fetching and verifying is the workload's `ingest` task on the ingest compute backend (a
    local subprocess by default, Azure Batch like ADF's reference when configured); it writes the files and
    `_manifest.json` last, and only then does `current.json` move.
    """
    source: MnistSource | StoredSetSource = mnist_source
    if config.training_set:
        source = StoredSetSource(storage, config.training_set)
    expected = source.expected_checksums()
    version = dataset_version(expected)
    prefix = raw_version_prefix(version)
    stored = (
        storage.get_json(f"{prefix}/_manifest.json") if storage.exists(f"{prefix}/_manifest.json") else None
    )

    if stored is not None and stored.get("checksums") == expected:
        context.log.info(
            f"Raw MNIST {version} is already stored with the same checksums: not downloading again"
        )
        origin = stored.get("source", "stored copy")
        extra: dict[str, dg.RawMetadataValue] = {"ingest": "reused (same checksums)"}
    else:
        origin = source.describe()
        from_store = isinstance(source, StoredSetSource)
        request = WorkloadRequest(
            task="ingest",
            idempotency_key=idempotency_key(context, "ingest"),
            # A training set already in the object store is an input; a source URL or directory is read directly.
            inputs={"source": source.prefix} if isinstance(source, StoredSetSource) else {},
            outputs={"raw": prefix},
            params={
                "checksums": json.dumps(expected, sort_keys=True),
                "version": version,
                "origin": origin,
                **({} if from_store else {"source": mnist_source.worker_location()}),
                "timeout_seconds": mnist_source.timeout_seconds,
                "attempts": mnist_source.attempts,
                "backoff_seconds": mnist_source.backoff_seconds,
            },
        )
        result = ingest_compute.run(context, request, storage)
        extra = {"ingest": "fresh", "compute_job": result.job_id}
    files = {name: storage.get_bytes(f"{prefix}/{name}") for name in MNIST_FILES}
    parsed = verify_set(files)

    counts = {split: len(labels) for split, (_, labels) in parsed.items()}
    hist = {split: np.bincount(labels, minlength=10) for split, (_, labels) in parsed.items()}
    sample_images, sample_labels = parsed["train"][0][:30], parsed["train"][1][:30]
    result = dg.MaterializeResult(
        metadata={
            "version": version,
            "source": origin,
            "location": dg.MetadataValue.path(storage.uri(prefix)),
            "train_images": counts["train"],
            "held_out_images": counts["t10k"],
            "class_histogram": markdown_table(
                ["digit", *map(str, range(10))],
                [["train", *hist["train"].tolist()], ["t10k", *hist["t10k"].tolist()]],
            ),
            "checksums (md5)": dg.MetadataValue.json(expected),
            "sample_digits": markdown_image(
                digit_grid(sample_images, sample_labels.tolist()), "sample digits"
            ),
            **extra,
        },
        data_version=dg.DataVersion(version),
    )
    # Last, once nothing else can fail: the pointer makes this version the one training reads.
    storage.put_json(f"{RAW_PREFIX}/{CURRENT}", {"version": version, "prefix": prefix})
    return result
