"""Model-only throughput: images/s of one variant in-process, by batch size and by optimisation.

    python -m loadtest.bench_model --model hornet-t --batch-sizes 1,8 --seconds 5

Each row adds one lever to the row above: authors' LayerNorm in NCHW fp32 -> fused LayerNorm ->
channels_last -> bf16 autocast (-> torch.compile with frozen weights, with --compile: minutes of compiling
per batch size on a small CPU). Inputs are uint8 batches as the service sends them (normalisation
included in the timing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from loadtest.machine import describe
from model import BatchPredictor, CompileMode, create_model, get_variant, pick_device, set_fused_layernorm


@dataclass(frozen=True)
class Setup:
    name: str
    fused_layernorm: bool
    channels_last: bool
    precision: str
    compile: CompileMode = "off"


SETUPS = [
    Setup("fp32, authors' LayerNorm, NCHW", False, False, "fp32"),
    Setup("+ fused LayerNorm", True, False, "fp32"),
    Setup("+ channels_last", True, True, "fp32"),
    Setup("+ bf16 autocast", True, True, "bf16"),
]
COMPILE_SETUP = Setup("+ torch.compile, frozen weights", True, True, "bf16", "default")


@dataclass(frozen=True)
class Timing:
    images_per_s: float
    ms_per_batch: float
    p50_ms: float
    p90_ms: float
    batches: int


def time_batches(predictor: BatchPredictor, batch_size: int, seconds: float, min_batches: int = 3) -> Timing:
    """`predict` on one random uint8 batch, again and again for at least `seconds` and `min_batches`, after two
    warm-up batches (`predict` returns host arrays, so each call's time is its full latency)."""
    size = predictor.recipe.input_size
    batch = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    for _ in range(2):
        predictor.predict(batch)
    latencies: list[float] = []
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or len(latencies) < min_batches:
        t0 = time.perf_counter()
        predictor.predict(batch)
        latencies.append(time.perf_counter() - t0)
    ms = statistics.quantiles([t * 1e3 for t in latencies], n=10, method="inclusive")
    return Timing(len(latencies) * batch_size / elapsed, elapsed / len(latencies) * 1e3,
                  statistics.median(latencies) * 1e3, ms[8], len(latencies))  # fmt: skip


def throughput(predictor: BatchPredictor, batch_size: int, seconds: float) -> tuple[float, float]:
    """(images/s, ms per batch) over at least `seconds` after two warm-up batches."""
    timing = time_batches(predictor, batch_size, seconds)
    return timing.images_per_s, timing.ms_per_batch


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hornet-t")
    p.add_argument("--batch-sizes", default="1,8")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all cores)")
    p.add_argument("--compile", action="store_true", help="add a torch.compile row (slow to compile on a CPU)")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    variant = get_variant(args.model)
    net = create_model(variant.id)
    machine = describe()
    print(f"model-only throughput, {variant.id} ({variant.input_size}px), device {device}")
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    header = f"{'setup':34} {'batch':>5} {'images/s':>9} {'ms/batch':>9}"
    print(header + "\n" + "-" * len(header))
    rows = []
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    for setup in [*SETUPS, COMPILE_SETUP] if args.compile else SETUPS:
        set_fused_layernorm(net, setup.fused_layernorm)
        predictor = BatchPredictor(net, variant.preprocessing, device, setup.precision, setup.channels_last,
                                   buckets=batch_sizes, compile=setup.compile)  # fmt: skip
        for batch_size in batch_sizes:
            images_s, ms = throughput(predictor, batch_size, args.seconds)
            print(f"{setup.name:34} {batch_size:>5} {images_s:>9.1f} {ms:>9.1f}", flush=True)
            rows.append({**asdict(setup), "model": variant.id, "batch_size": batch_size, "images_per_s": images_s,
                         "ms_per_batch": ms, "device": str(device), **machine})  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
