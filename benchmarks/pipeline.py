"""End-to-end benchmark of the main job on the embedded default backends.

    ./run bench --source ../shared/mnist          # or MNIST_SOURCE=... ./run bench

Prints: end-to-end wall time of the README's main command (cold: download/verify + train + score;
warm: unchanged inputs, so nothing retrains), time per asset, held-out accuracy, scoring images/s on a
larger batch, and the code-location load time next to a bare `import dagster` measured in the same run.
Not a test: it asserts nothing, it reports.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"accuracy": 0.98, "e2e_seconds": 30.0, "images_per_second": 10_000, "load_ratio": 1.5}


def import_seconds(code: str, env: dict[str, str], repeats: int = 5) -> float:
    """Median wall time of `python -c code` minus the interpreter's own start-up."""

    def run(snippet: str) -> float:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", snippet], cwd=PROJECT_ROOT, env=env, check=True)
        return time.perf_counter() - t

    run(code)  # warm the OS file cache
    return statistics.median(run(code) for _ in range(repeats)) - statistics.median(
        run("pass") for _ in range(repeats)
    )


def step_seconds(instance: object, run_id: str) -> dict[str, float]:
    from dagster import DagsterEventType

    starts: dict[str, float] = {}
    out: dict[str, float] = {}
    for entry in instance.all_logs(run_id):  # type: ignore[attr-defined]
        ev = entry.dagster_event
        if ev is None or entry.step_key is None:
            continue
        if ev.event_type == DagsterEventType.STEP_START:
            starts[entry.step_key] = entry.timestamp
        elif ev.event_type == DagsterEventType.STEP_SUCCESS:
            out[entry.step_key] = entry.timestamp - starts[entry.step_key]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source", default=os.environ.get("MNIST_SOURCE"), help="MNIST mirror (URL or directory)"
    )
    parser.add_argument(
        "--score-images",
        help="an IDX images file for the throughput batch (default: <source>/original/t10k-images-idx3-ubyte.gz "
        "when present, else the source's t10k images)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not args.source:
        parser.error("give --source (or MNIST_SOURCE): the canonical mirror URL or a local mirror directory")

    work = Path(tempfile.mkdtemp(prefix="mnist-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MNIST_", "DAGSTER_", "AZURE"))}
    env.update(
        DAGSTER_HOME=str(work / "dagster_home"),
        MNIST_SOURCE=args.source,
        MNIST_DATA_DIR=str(work / "storage"),
        MNIST_WORK_DIR=str(work / "compute"),
    )
    Path(env["DAGSTER_HOME"]).mkdir(parents=True)

    bare = import_seconds("import dagster", env)
    location = import_seconds("import orchestration.definitions", env)

    def e2e() -> tuple[float, str]:
        t = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "commands.demo"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - t
        if out.returncode != 0:
            sys.stderr.write(out.stdout[-4000:] + out.stderr[-4000:])
            raise SystemExit("the main job failed")
        run_id = out.stdout.split("(run ")[1].split(")")[0]
        return seconds, run_id

    cold_seconds, cold_run = e2e()
    warm_seconds, warm_run = e2e()

    os.environ.update(env)
    import dagster as dg

    from assets.predictions import INFERENCE_BATCHES
    from orchestration.definitions import build_definitions
    from orchestration.settings import Settings

    instance = dg.DagsterInstance.get()
    steps = step_seconds(instance, cold_run)
    warm_steps = step_seconds(instance, warm_run)
    model_meta = instance.get_latest_materialization_event(dg.AssetKey("mnist_model"))
    assert model_meta is not None and model_meta.asset_materialization is not None
    accuracy = float(model_meta.asset_materialization.metadata["held_out_accuracy"].value)  # type: ignore[arg-type]

    # Throughput on a bigger batch (the 10,000 real t10k digits when the mirror has them).
    source = Path(args.source)
    images = (
        Path(args.score_images) if args.score_images else source / "original" / "t10k-images-idx3-ubyte.gz"
    )
    if not images.is_file():
        images = source / "t10k-images-idx3-ubyte.gz"
    settings = Settings.from_env()
    storage = settings.object_store()
    storage.put_file(f"inference/bench/{images.name}", images)
    storage.put_bytes("inference/bench/_SUCCESS", b"")
    instance.add_dynamic_partitions(INFERENCE_BATCHES, ["bench"])
    t = time.perf_counter()
    result = (
        build_definitions(settings)
        .resolve_job_def("score_batch")
        .execute_in_process(instance=instance, partition_key="bench")
    )
    score_step_seconds = time.perf_counter() - t
    meta = result.asset_materializations_for_node("mnist_predictions")[0].metadata
    n_images = int(meta["images"].value)  # type: ignore[arg-type]
    images_per_second = float(meta["images_per_second"].value)  # type: ignore[arg-type]

    figures = {
        "e2e_cold_seconds": round(cold_seconds, 2),
        "e2e_warm_seconds": round(warm_seconds, 2),
        "asset_seconds_cold": {k: round(v, 2) for k, v in steps.items()},
        "asset_seconds_warm": {k: round(v, 2) for k, v in warm_steps.items()},
        "held_out_accuracy": accuracy,
        "scoring_images": n_images,
        "scoring_images_per_second": round(images_per_second),
        "scoring_step_wall_seconds": round(score_step_seconds, 2),
        "import_dagster_seconds": round(bare, 3),
        "code_location_load_seconds": round(location, 3),
        "load_ratio": round(location / bare, 2),
        "cpus": os.cpu_count(),
        "source": args.source,
    }
    ok = {
        "accuracy": accuracy >= TARGETS["accuracy"],
        "e2e": cold_seconds <= TARGETS["e2e_seconds"],
        "scoring": images_per_second >= TARGETS["images_per_second"],
        "load": location / bare <= TARGETS["load_ratio"],
    }
    print(f"\nMNIST pipeline benchmark ({os.cpu_count()} CPUs, source {args.source})")
    print(
        f"  end-to-end (README main command), cold : {cold_seconds:6.1f} s   target <= {TARGETS['e2e_seconds']:.0f} s  {'OK' if ok['e2e'] else 'MISSED'}"
    )
    print(f"  end-to-end, warm (nothing retrains)    : {warm_seconds:6.1f} s")
    for step, seconds in steps.items():
        print(f"    {step:<28} cold {seconds:5.1f} s   warm {warm_steps.get(step, float('nan')):5.1f} s")
    print(
        f"  held-out accuracy                      : {accuracy:.2%}   target >= {TARGETS['accuracy']:.0%}  {'OK' if ok['accuracy'] else 'MISSED'}"
    )
    print(
        f"  scoring ({n_images} images)             : {images_per_second:,.0f} images/s   target >= {TARGETS['images_per_second']:,}  {'OK' if ok['scoring'] else 'MISSED'}  (step wall {score_step_seconds:.1f} s)"
    )
    print(f"  import dagster                         : {bare:.2f} s")
    print(
        f"  code-location load                     : {location:.2f} s   ratio {location / bare:.2f}  target <= {TARGETS['load_ratio']}  {'OK' if ok['load'] else 'MISSED'}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
