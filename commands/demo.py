"""Run the main job (raw -> model -> predictions) once on the configured backends and say where results are.

    python -m commands.demo            # canonical MNIST from the internet
    MNIST_SOURCE=/path/to/mirror python -m commands.demo

The run is recorded in $DAGSTER_HOME (default ./.dagster_home), so `dagster dev` shows it afterwards.
An inference batch made of the held-out digits (`inference/mnist-t10k/`) is staged first if absent.
Settings come from the environment and the project's `.env`; after a run that used settings from the
shell only, the demo says how to keep them in `.env` for the next commands (`./run ui`).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Mapping
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEMO_BATCH = "mnist-t10k"
MIRROR_HINT = (
    "without internet access, point MNIST_SOURCE at a mirror (a directory or base URL with the four MNIST "
    "files and an md5sums file): MNIST_SOURCE=/path/to/mnist-mirror ./run demo"
)


def source_failure(what: str, error: BaseException, source: str) -> str:
    """One line: what failed, from where, and how to use a mirror."""
    reason = " ".join(str(error).split())
    return f"error: {what} from {source} failed: {reason}; {MIRROR_HINT}"


def keep_hint(environ: Mapping[str, str], kept: Mapping[str, str], env_file: Path | None) -> str:
    """How to keep the settings this command took from the shell only (not from `kept`, the settings file's
    values), so that `./run ui` and the next commands use them too; empty when there are none.
    A secret's value is never shown."""
    from orchestration.settings import known_variables

    lines = []
    for var in known_variables():
        value = environ.get(var.name)
        if not value or kept.get(var.name) == value:
            continue
        shown = "<its value>" if var.secret else value
        lines.append(f"    echo {shlex.quote(f'{var.name}={shown}')} >> {shlex.quote(str(env_file))}")
    if not lines or env_file is None:
        return ""
    return (
        f"  Settings from your shell hold for this command only; to keep them for ./run ui and the next "
        f"commands, add them to the settings file ({env_file.name}):\n" + "\n".join(lines)
    )


def main() -> int:
    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster_home"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)

    import dagster as dg

    from assets.layout import BATCH_MARKER, CURRENT, MODELS_PREFIX, batch_prefix, predictions_prefix
    from assets.predictions import INFERENCE_BATCHES
    from orchestration.definitions import build_definitions
    from orchestration.settings import Settings, SettingsError
    from orchestration.settings.env_file import env_file_path, env_file_values
    from resources.mnist_source import SourceError

    try:
        settings = Settings.from_env()
        env_file = env_file_path()
        kept = env_file_values(env_file)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    defs = build_definitions(settings)
    resources = defs.resources or {}
    # Outside a run, resolve dg.EnvVar fields (secrets) the way Dagster does inside one.
    storage = resources["storage"].process_config_and_initialize()
    source = resources["mnist_source"].process_config_and_initialize()

    started = time.perf_counter()
    batch = batch_prefix(DEMO_BATCH)
    if not storage.exists(f"{batch}/{BATCH_MARKER}"):
        name = "t10k-images-idx3-ubyte.gz"
        try:
            fetched = source.fetch(name, source.expected_checksums()[name])
        except SourceError as exc:
            print(source_failure(f"fetching {name}", exc, source.describe()), file=sys.stderr)
            return 1
        storage.put_bytes(f"{batch}/{name}", fetched.data)
        storage.put_bytes(f"{batch}/{BATCH_MARKER}", b"")
        print(f"staged inference batch {DEMO_BATCH!r} from {fetched.origin}")

    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions(INFERENCE_BATCHES, [DEMO_BATCH])
    result = defs.resolve_job_def("mnist_pipeline").execute_in_process(
        instance=instance,
        partition_key=DEMO_BATCH,
        raise_on_error=False,
        run_config={
            "loggers": {"console": {"config": {"log_level": os.environ.get("DEMO_LOG_LEVEL", "INFO")}}}
        },
    )
    elapsed = time.perf_counter() - started
    if not result.success:
        print(
            f"\nmnist_pipeline FAILED after {elapsed:.1f} s (run {result.run_id}); see the log above.",
            file=sys.stderr,
        )
        if any(event.step_key == "raw_mnist" for event in result.get_step_failure_events()):
            print(f"raw_mnist reads {source.describe()}; {MIRROR_HINT}", file=sys.stderr)
        return 1
    model = storage.get_json(f"{MODELS_PREFIX}/{CURRENT}")
    print(
        f"\nmnist_pipeline succeeded in {elapsed:.1f} s (run {result.run_id})\n"
        f"  model ({model['held_out_accuracy']:.2%} held-out accuracy): {storage.uri(model['prefix'])}\n"
        f"  predictions: {storage.uri(predictions_prefix(DEMO_BATCH) + '/predictions.csv')}\n"
        f"  Dagster UI:  ./run ui   (then open http://127.0.0.1:3000)"
    )
    if hint := keep_hint(os.environ, kept, env_file):
        print(hint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
