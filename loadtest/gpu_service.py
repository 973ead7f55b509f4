"""The whole service on a GPU machine: HTTP images/s and p50/p99 against the model alone, the gateway's CPU decode
against the replica's device decode, with the GPU's utilisation (issue 22, item 6).

    make gpu-bundle                                       # here: Ray, FastAPI, pydantic... for Python 3.12
    sh loadtest/gpu_service.sh OUT                        # there: unpacks the bundle, runs this
    python -m loadtest.gpu_service OUT --quick            # here: the dry run (CPU, hornet-t, short windows)

Per decode site (gateway, replica) one service, started as `hornet-serve` starts it (Ray Serve, the HAProxy
ingress, the gateways, one classifier replica per model): deploy/config/gpu.yaml's batching and precision, eager
forwards with CUDA graphs (compiling every bucket would take the whole budget), random weights, three gateway
replicas. Then per model, photo size and concurrency a closed-loop window from this process. The client runs on
the same cores as the gateways: the table says so. JSON and markdown under OUT, written after every window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import threading
import time
from pathlib import Path

import yaml

from loadtest.bench_model import throughput
from loadtest.http_load import closed_loop, free_port, summarize, wait_ready
from loadtest.machine import describe
from service.config import Settings
from tests.support import ROOT
from tests.support.images import encode, photo

SIZES = {"1024x768": (1024, 768), "4000x3000": (4000, 3000)}


class GpuUtilisation:
    """nvidia-smi sampled every 200 ms in the background; `mean_since(t)` averages the samples after t."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        try:
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
        except FileNotFoundError:
            self.proc = None
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            first = line.split(",")[0].strip()  # one line per GPU: the first is the one the service uses
            if first.isdigit():
                self.samples.append((time.monotonic(), float(first)))

    def mean_since(self, started: float) -> float | None:
        window = [pct for at, pct in self.samples if at >= started]
        return sum(window) / len(window) if window else None

    def close(self) -> None:
        if self.proc:
            self.proc.terminate()


def service_settings(decode: str, quick: bool) -> Settings:
    """deploy/config/gpu.yaml for one machine: no placement resources or autoscaling, random weights, no keys."""
    config = yaml.safe_load((ROOT / "deploy/config/gpu.yaml").read_text())
    for section in (config["classifier"], config["gateway"], *config["per_model"].values()):
        section.pop("resources", None)
        section.pop("autoscaling", None)
    config["classifier"].update(compile="off", decode=decode)
    config["gateway"].update(num_replicas=1 if quick else 3, num_cpus=1 if quick else 4)
    config.update(weights_policy="random", auth={"enabled": False}, host="127.0.0.1", port=free_port(),
                  metrics_export_port=free_port())  # fmt: skip
    if quick:
        config.update(models=["hornet-t"], device="cpu")
        config["classifier"].update(num_gpus=0, cuda_graphs=False, precision="fp32", buckets=[1, 2, 4, 8],
                                    batch={"max_batch_size": 8, "batch_wait_timeout_s": 0.01})  # fmt: skip
    config.pop("checkpoint_dir", None)
    return Settings.model_validate(config)


def model_only(settings: Settings, model_id: str, seconds: float) -> dict:
    """The model alone at the service's batch size, precision and modes, on the same device."""
    from service.replica.predictor import load_predictor

    variant = settings.variant(model_id)
    predictor = load_predictor(variant).predictor
    batch = variant.classifier.batch.max_batch_size
    images_per_s, ms = throughput(predictor, batch, seconds)
    return {"model": model_id, "batch": batch, "images_per_s": images_per_s, "ms_per_batch": ms}


def measure(args: argparse.Namespace) -> dict:
    from service.daemon.local import local_service

    sizes = {"320x240": (320, 240)} if args.quick else SIZES
    photos = {
        name: [encode(photo(w, h, seed=i), "JPEG", quality=90) for i in range(4)] for name, (w, h) in sizes.items()
    }
    report: dict = {"machine": describe(), "concurrency": args.concurrency, "seconds": args.seconds, "model_only": [],
                    "rows": [], "skipped": []}  # fmt: skip
    gpu = GpuUtilisation()
    started = time.monotonic()
    try:
        first = service_settings("gateway", args.quick)
        report["model_only"] = [model_only(first, m, args.model_seconds) for m in first.models]
        for decode in ("gateway", "replica"):
            settings = service_settings(decode, args.quick)
            with local_service(settings, quiet=True) as base_url:
                wait_ready(base_url, timeout_s=900)
                for model in settings.models:
                    for size, bodies in photos.items():
                        for c in args.concurrency:
                            where = {"decode": decode, "model": model, "image": size, "concurrency": c}
                            if time.monotonic() - started > args.budget_s:
                                report["skipped"].append(where)
                                continue
                            url = f"{base_url}/v1/classify?model={model}"
                            asyncio.run(closed_loop(url, bodies, c, args.warmup_s))
                            window = time.monotonic()
                            row = {**where, **summarize(c, asyncio.run(closed_loop(url, bodies, c, args.seconds)))}
                            row["gpu_util_pct"] = gpu.mean_since(window)
                            report["rows"].append(row)
                            write(report, args.outdir)
                            print(f"{decode} {model} {size} c={c}: {row['images_per_s']:.0f} images/s, "
                                  f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms", flush=True)  # fmt: skip
    finally:
        gpu.close()
    write(report, args.outdir)
    return report


def write(report: dict, outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "gpu_service.json").write_text(json.dumps(report, indent=2))
    alone = {m["model"]: m["images_per_s"] for m in report["model_only"]}
    lines = [
        f"Machine: {report['machine']}. Client on the same machine. Model alone: "
        + ", ".join(f"{m} {r:.0f} images/s" for m, r in alone.items()),
        "",
        "| decode | model | photo | c | images/s | x model alone | p50 ms | p99 ms | errors | GPU util % |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["rows"]:
        util = "-" if r["gpu_util_pct"] is None else f"{r['gpu_util_pct']:.0f}"
        lines.append(f"| {r['decode']} | {r['model']} | {r['image']} | {r['concurrency']} | {r['images_per_s']:.0f} | "
                     f"{r['images_per_s'] / alone[r['model']]:.2f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
                     f"{r['errors']} | {util} |")  # fmt: skip
    if report["skipped"]:
        lines.append(f"\nSkipped past the budget: {report['skipped']}")
    (outdir / "gpu_service.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir", type=Path)
    p.add_argument("--quick", action="store_true", help="the CPU dry run: hornet-t, small photos, short windows")
    p.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=None)
    p.add_argument("--seconds", type=float, default=None, help="each window (default 5, quick 2)")
    p.add_argument("--budget-s", type=float, default=360, help="windows past this many seconds are skipped")
    args = p.parse_args(argv)
    args.concurrency = args.concurrency or ([1, 4] if args.quick else [1, 16, 64, 256])
    args.seconds = args.seconds or (2.0 if args.quick else 5.0)
    args.warmup_s = 1.0
    args.model_seconds = 1.0 if args.quick else 3.0
    measure(args)
    print((args.outdir / "gpu_service.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
