"""`hornet-classify-bulk`: label a whole collection of images with one HorNet on Ray Data, no HTTP.

    hornet-classify-bulk photos/ --model hornet-l-gf384 --out results.parquet
    hornet-classify-bulk 'photos/**/*.jpg' --model hornet-t --precision bf16 --out results.parquet
    hornet-classify-bulk s3://bucket/paths.txt --out s3://bucket/labels.parquet --address auto   # a cluster

Pipeline: input paths -> read + decode + resize (CPU tasks, the gateway's code and limits) -> a pool of model
actors (BatchPredictor) -> Parquet parts. A rerun with the same --out skips what is already there.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass

from pydantic import ValidationError

from model import CheckpointError, UnknownModelError, resolve_name
from service.bulk.inputs import SourceError, list_inputs
from service.bulk.job import BulkJob, make_job
from service.bulk.output import OutputMismatch, PartWriter, read_existing
from service.config import Device, Precision, Settings, WeightsPolicy, choices, configure_logging, load_settings
from service.daemon.ray_env import RAY_SYSTEM_CONFIG
from service.replica.weights import WeightsUnavailable, check_required_weights

log = logging.getLogger("hornet-classify-bulk")
PROG = "hornet-classify-bulk"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="a directory, a glob, a .txt/.lst/.list file of paths or URIs, or one file")
    p.add_argument("--out", required=True, help="output Parquet dataset directory (local path or URI)")
    p.add_argument("--model", help="variant id or alias (default: the config's default model)")
    p.add_argument("--config", help="the service's YAML settings (also $HORNET_SERVE_CONFIG)")
    p.add_argument("--weights", choices=choices(WeightsPolicy), help="weights policy (default auto)")
    p.add_argument("--checkpoint-dir", help="directory with checkpoints")
    p.add_argument("--top-k", type=int, help="classes per image (default 5)")
    p.add_argument("--precision", choices=choices(Precision), help="default: the variant's setting")
    p.add_argument("--batch-size", type=int, help="images per model call (default: the variant's max_batch_size)")
    p.add_argument("--device", choices=choices(Device), help="default: the config's (auto: GPUs if any)")
    p.add_argument("--concurrency", type=int, help="model actors (default: one per GPU, or 1 on CPUs)")
    p.add_argument("--num-gpus", type=float, help="GPU share per model actor (default 1 on GPUs)")
    p.add_argument("--actor-cpus", type=float, help="Ray logical CPUs per model actor (default 1)")
    p.add_argument("--cpu-threads", type=int, help="torch threads per model actor on CPUs (default: all cores)")
    p.add_argument("--decode-cpus", type=float, help="Ray logical CPUs per read+decode task (default 0.5)")
    p.add_argument("--decode-batch-size", type=int, help="inputs per read+decode task (default 16)")
    p.add_argument("--part-rows", type=int, help="results per output part (default 1024)")
    p.add_argument("--extensions", help="comma-separated file extensions to keep, e.g. jpg,jpeg,png (default: all)")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a new local Ray)")
    p.add_argument("--num-cpus", type=int, help="logical CPUs of the local Ray (default: all cores)")
    p.add_argument("--summary-json", help="also write the final summary to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no Ray Data progress bars")
    return p.parse_args(argv)


def load_bulk_settings(args: argparse.Namespace) -> tuple[Settings, str]:
    """The service's settings (file, environment, flags) and the variant to run (any, enabled there or not)."""
    flags = {"weights_policy": args.weights, "checkpoint_dir": args.checkpoint_dir}
    settings = load_settings(args.config, {k: v for k, v in flags.items() if v is not None})
    return settings, resolve_name(args.model) if args.model else settings.default_model_id


def job_overrides(args: argparse.Namespace) -> dict[str, object]:
    names = ["top_k", "precision", "batch_size", "device", "concurrency", "num_gpus", "actor_cpus", "cpu_threads",
             "decode_cpus", "decode_batch_size", "part_rows"]  # fmt: skip
    return {name: getattr(args, name) for name in names}


def build_dataset(pending: list[str], job: BulkJob):
    """The Ray Data pipeline (lazy): paths -> decode tasks -> model actors -> result rows."""
    import ray

    from service.bulk.decode import decode_batch
    from service.bulk.predict import BulkPredictor

    blocks = max(1, math.ceil(len(pending) / job.decode_batch_size))
    ds = ray.data.from_items([{"path": p} for p in pending], override_num_blocks=blocks)
    decode_kwargs = {"variant": job.variant, "device_decodes": job.device_decodes}
    ds = ds.map_batches(decode_batch, fn_kwargs=decode_kwargs, batch_size=job.decode_batch_size,
                        batch_format="numpy", num_cpus=job.decode_cpus)  # fmt: skip
    return ds.map_batches(
        BulkPredictor,
        fn_constructor_kwargs={"job": job},
        batch_size=job.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=job.concurrency),
        num_cpus=job.actor_cpus,
        num_gpus=job.num_gpus,
    )


@dataclass
class Summary:
    inputs: int
    already_done: int
    classified: int = 0
    failed: int = 0
    failed_by_type: dict[str, int] | None = None
    seconds: float = 0.0
    images_per_s: float = 0.0
    steady_images_per_s: float | None = None  # from the first result on: leaves out actor start and model load
    model: str = ""
    precision: str = ""
    batch_size: int = 0
    concurrency: int = 0
    device: str = ""
    out: str = ""

    def line(self) -> str:
        steady = f", steady {self.steady_images_per_s:.1f}" if self.steady_images_per_s is not None else ""
        kinds = ", ".join(f"{k} {v}" for k, v in sorted((self.failed_by_type or {}).items()))
        return (f"{PROG}: {self.classified} images in {self.seconds:.1f} s: {self.images_per_s:.1f} images/s{steady}; "
                f"{self.failed} failed{f' ({kinds})' if kinds else ''}; {self.already_done} already in {self.out}; "
                f"{self.inputs} inputs")  # fmt: skip


def run_pipeline(pending: list[str], job: BulkJob, out: str, summary: Summary) -> None:
    writer = PartWriter(out, job.model_id, job.top_k, job.part_rows)
    failures: Counter[str] = Counter()
    started = time.perf_counter()
    first: tuple[float, int] | None = None
    for table in build_dataset(pending, job).iter_batches(batch_size=None, batch_format="pyarrow"):
        first = first or (time.perf_counter(), len(table))
        failures.update(t for t in table.column("error_type").to_pylist() if t)
        writer.add(table)
    writer.close()
    elapsed = time.perf_counter() - started
    summary.classified, summary.failed, summary.failed_by_type = writer.rows, writer.failed, dict(failures)
    summary.seconds, summary.images_per_s = elapsed, writer.rows / elapsed
    if first is not None and writer.rows > first[1]:
        summary.steady_images_per_s = (writer.rows - first[1]) / (started + elapsed - first[0])


def ray_address(args: argparse.Namespace) -> str:
    """--address, else $RAY_ADDRESS (set inside a Ray job), else "local": a new local Ray, never an unrelated
    cluster that happens to run on this machine."""
    return args.address or os.environ.get("RAY_ADDRESS") or "local"


def start_ray(address: str, args: argparse.Namespace) -> None:
    import ray
    from ray.data import DataContext

    if address == "local":
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, _system_config=RAY_SYSTEM_CONFIG)
    else:
        ray.init(address=address)
    DataContext.get_current().enable_progress_bars = not args.no_progress


def check_resources(job: BulkJob, cpus: float, local: bool) -> str | None:
    """Refuse a local Ray too small for the model actors plus one decode task (the pipeline would wait forever);
    on a cluster, warn (an autoscaler may add nodes)."""
    if job.cpus_needed <= cpus:
        return None
    message = (f"the pipeline needs {job.cpus_needed:g} logical CPUs ({job.concurrency} actor(s) x {job.actor_cpus:g} "
               f"+ {job.decode_cpus:g} for decoding), the cluster has {cpus:g}")  # fmt: skip
    if local:
        return message + ": lower --concurrency/--actor-cpus/--decode-cpus or raise --num-cpus"
    log.warning("%s; waiting for the autoscaler", message)
    return None


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(argv)
    try:
        settings, model_id = load_bulk_settings(args)
        job = make_job(settings, model_id, 0, job_overrides(args))  # validated once before Ray starts
        extensions = tuple(e for e in (args.extensions or "").split(",") if e)
        inputs = list_inputs(args.source, extensions)
        existing = read_existing(args.out, model_id, job.top_k)
        check_required_weights(job.variant)  # before Ray starts, as hornet-serve does
    except (WeightsUnavailable, CheckpointError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 3
    except (ValidationError, UnknownModelError, SourceError, OutputMismatch, ValueError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    pending = [p for p in inputs if p not in existing.done]
    summary = Summary(inputs=len(inputs), already_done=len(inputs) - len(pending), out=args.out, model=model_id)
    log.info("%d inputs; %d already in %s; %d to classify", len(inputs), summary.already_done, args.out, len(pending))
    address = ray_address(args)
    if pending:
        import ray

        local_cpus = args.num_cpus or os.cpu_count() or 1
        if address == "local" and (problem := check_resources(job, local_cpus, local=True)):
            print(f"{PROG}: {problem}", file=sys.stderr)
            return 2
        start_ray(address, args)
        try:
            resources = ray.cluster_resources()
            job = make_job(settings, model_id, resources.get("GPU", 0), job_overrides(args))
            if problem := check_resources(job, resources.get("CPU", 0), local=address == "local"):
                print(f"{PROG}: {problem}", file=sys.stderr)
                return 2
            log.info("%s, %s, batch %d, %d actor(s), %g GPU each", model_id, job.precision, job.batch_size,
                     job.concurrency, job.num_gpus)  # fmt: skip
            run_pipeline(pending, job, args.out, summary)
        finally:
            ray.shutdown()
    summary.precision, summary.batch_size, summary.concurrency = job.precision, job.batch_size, job.concurrency
    summary.device = "cuda" if job.num_gpus else "cpu"
    print(summary.line(), flush=True)
    if args.summary_json:
        with open(args.summary_json, "w", encoding="utf-8") as f:
            json.dump(asdict(summary), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
