"""Bulk classification (Ray Data) against the model alone: images/s of `hornet-classify-bulk` on a JPEG corpus
and of the same model in-process at the same precision and batch size (issue target: bulk >= 0.85x).

    python -m loadtest.bench_bulk --model hornet-t --precision auto --images 2000 --json artifacts/bench/bulk.json

The model-only reference is the fastest of three windows of `BatchPredictor.predict` on one uint8 batch
(loadtest.bench_model). The bulk run reads, decodes and resizes every photo too; its rate counts from its first
result (actor start and model load left out, as the reference leaves out its load), over the whole corpus.
The two never run at the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from loadtest.bench_model import time_batches
from loadtest.machine import describe
from model import BatchPredictor, create_model, get_variant, pick_device
from service.config import Device, Precision, choices
from tests.support.images import encode, photo

DISTINCT = 32  # different photos; the corpus repeats them under other names (decode cost is the same)


def make_corpus(directory: Path, images: int, width: int, height: int) -> Path:
    """`images` JPEGs of width x height (quality 90, like a camera's)."""
    directory.mkdir(parents=True)
    photos = [encode(photo(width, height, seed=s), "JPEG", quality=90) for s in range(DISTINCT)]
    for i in range(images):
        (directory / f"photo_{i:06d}.jpg").write_bytes(photos[i % DISTINCT])
    return directory


def model_only(model_id: str, precision: str, batch_size: int, seconds: float, device: str) -> dict:
    variant = get_variant(model_id)
    predictor = BatchPredictor(create_model(model_id), variant.preprocessing, pick_device(device), precision)
    windows = [time_batches(predictor, batch_size, seconds).images_per_s for _ in range(3)]
    return {"images_per_s": max(windows), "windows": windows, "precision": predictor.precision}


def bulk(corpus: Path, work: Path, args: argparse.Namespace) -> dict:
    """One `hornet-classify-bulk` run into a fresh output directory; its summary JSON."""
    summary = work / "summary.json"
    command = [sys.executable, "-m", "service.bulk.cli", str(corpus), "--model", args.model, "--out", str(work / "out"),
               "--weights", "random", "--precision", args.precision, "--batch-size", str(args.batch_size),
               "--device", args.device, "--summary-json", str(summary), "--no-progress", *args.bulk_args]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray of its own
    subprocess.run(command, env=env, check=True)
    return json.loads(summary.read_text())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hornet-t")
    p.add_argument("--precision", default="auto", choices=choices(Precision))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", choices=choices(Device))
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--size", default="1024x768", help="photo size, WxH")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each model-only window")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("bulk_args", nargs="*", help="more hornet-classify-bulk flags, after --")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        corpus = make_corpus(Path(tmp) / "corpus", args.images, width, height)
        return run(corpus, Path(tmp), args)


def run(corpus: Path, work: Path, args: argparse.Namespace) -> dict:
    machine = describe()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()), flush=True)
    reference = model_only(args.model, args.precision, args.batch_size, args.seconds, args.device)
    print(f"model only, {args.model} {reference['precision']} batch {args.batch_size}: "
          f"{reference['images_per_s']:.1f} images/s (windows {', '.join(f'{w:.1f}' for w in reference['windows'])})",
          flush=True)  # fmt: skip
    summary = bulk(corpus, work, args)
    steady = summary["steady_images_per_s"] or summary["images_per_s"]
    result = {
        "machine": machine,
        "model": args.model,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "corpus": {"images": args.images, "size": args.size, "format": "JPEG q90"},
        "model_only_images_per_s": reference["images_per_s"],
        "model_only_windows": reference["windows"],
        "bulk": summary,
        "bulk_images_per_s": steady,
        "ratio": steady / reference["images_per_s"],
    }
    print(f"bulk: {steady:.1f} images/s from the first result on ({summary['images_per_s']:.1f} with actor start "
          f"and model load, {summary['seconds']:.1f} s); ratio bulk/model {result['ratio']:.2f} (target 0.85)")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
