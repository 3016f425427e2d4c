import hashlib
from datetime import UTC, datetime

import dagster as dg
import numpy as np
from pydantic import Field

from resources.mnist_source import MNIST_FILES, MnistSource, StoredSetSource
from resources.storage import ObjectStore
from workload.mnist_idx import parse_split

from .layout import CURRENT, RAW_PREFIX, raw_version_prefix
from .pictures import digit_grid, markdown_image, markdown_table


class RawMnistConfig(dg.Config):
    training_set: str | None = Field(
        default=None,
        description="Object-store folder of a labelled set (the four IDX files + md5sums) to use instead of "
        "the MNIST source; the training-data sensor sets it for the set that landed.",
    )


SPLITS = {"train": MNIST_FILES[0:2], "t10k": MNIST_FILES[2:4]}


def dataset_version(checksums: dict[str, str]) -> str:
    """The raw data's identity: a digest of the four files' md5s (same bytes, same version)."""
    joined = "\n".join(f"{name} {checksums[name]}" for name in MNIST_FILES)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


@dg.asset(
    group_name="mnist",
    code_version="raw-v1",
    kinds={"python", "blob"},
    tags={"layer": "raw"},
)
def raw_mnist(
    context: dg.AssetExecutionContext, config: RawMnistConfig, mnist_source: MnistSource, storage: ObjectStore
) -> dg.MaterializeResult:
    """Raw MNIST: handwritten digits 0-9 as 28x28 grayscale images, with their labels.

    Two splits in the original IDX format: `train` (what the model learns from) and `t10k` (held out,
    what the model is judged on). Every file is verified against trusted md5 checksums and parsed
    (gzip, IDX header, dimensions, image and label counts, labels 0-9) before anything is stored;
    the verified set lands under `raw/mnist/<version>/` and `raw/mnist/current.json` then points to it.
    The version is a digest of the checksums, so unchanged data keeps its version and nothing downstream
    goes stale.
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
        files = {name: storage.get_bytes(f"{prefix}/{name}") for name in MNIST_FILES}
        origin = stored.get("source", "stored copy")
    else:
        files = {}
        for name in MNIST_FILES:
            fetched = source.fetch(name, expected[name])
            files[name] = fetched.data
            context.log.info(
                f"Fetched and verified {fetched.origin} ({len(fetched.data):,} bytes, md5 {fetched.md5})"
            )
        origin = source.describe()

    # Parse everything before writing anything: a bad file must leave storage untouched.
    parsed = {split: parse_split(files[img], img, files[lab], lab) for split, (img, lab) in SPLITS.items()}
    if stored is None or stored.get("checksums") != expected:
        for name in MNIST_FILES:
            storage.put_bytes(f"{prefix}/{name}", files[name])
        storage.put_json(
            f"{prefix}/_manifest.json",
            {
                "version": version,
                "checksums": expected,
                "source": origin,
                "stored_at": datetime.now(UTC).isoformat(),
            },
        )
    storage.put_json(f"{RAW_PREFIX}/{CURRENT}", {"version": version, "prefix": prefix})

    counts = {split: len(labels) for split, (_, labels) in parsed.items()}
    hist = {split: np.bincount(labels, minlength=10) for split, (_, labels) in parsed.items()}
    sample_images, sample_labels = parsed["train"][0][:30], parsed["train"][1][:30]
    return dg.MaterializeResult(
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
        },
        data_version=dg.DataVersion(version),
    )
