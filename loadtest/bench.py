"""The service against the bare model, on this machine, with the same images.

    python -m loadtest.bench --model hornet-t --modes shipped,python-proxy

(a) model-only: images/s of the variant in-process at the service's batch size and precision, and its
    batch-1 latency; (b) the service over HTTP, started as `hornet-serve` starts it (default settings,
    random weights), once per Ray mode, under closed-loop concurrency, raw and multipart uploads:
    throughput, p50/p95/p99 and the CPU each process role spent per answered request; (c) the ratio
    (b)/(a) at the highest concurrency, the serving overhead at concurrency 1 (service p50 minus the
    model's batch-1 time) and the CPU spent outside the model replica. Table on the terminal, JSON and
    a PNG plot under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from loadtest.bench_model import throughput
from loadtest.bench_service import MODES
from loadtest.machine import describe
from model import BatchPredictor, create_model, decode, get_variant, resize
from model.precision import resolve_precision
from model.preprocess import draft_size
from service.config import Settings
from tests.support.images import encode, photo

MODEL_ROLE = "model replica"


def _best_window(predictor: BatchPredictor, batch_size: int, seconds: float) -> tuple[float, float]:
    """The fastest of three windows: on a shared VM a window can run 20% slow, and a slow reference
    would flatter the ratio and the overhead."""
    return max(throughput(predictor, batch_size, seconds) for _ in range(3))


def measure_model(args: argparse.Namespace, settings: Settings, images: list[bytes]) -> dict:
    variant = get_variant(args.model)
    cfg = settings.classifier_for(variant.id)
    precision = resolve_precision(cfg.precision, torch.device("cpu"))
    predictor = BatchPredictor(create_model(variant.id), variant.preprocessing, "cpu", precision, cfg.channels_last)
    batch = cfg.batch.max_batch_size
    batch_s = _best_window(predictor, batch, args.model_seconds)
    single = _best_window(predictor, 1, args.model_seconds)

    def prepare(data: bytes, draft: bool) -> np.ndarray:
        draft_side = draft_size(variant.preprocessing) if draft else None
        return resize(decode(data, max_pixels=10**9, draft_size=draft_side), variant.preprocessing)

    def decode_rate(draft: bool) -> float:
        started, n = time.perf_counter(), 0
        while time.perf_counter() - started < 2:
            prepare(images[n % len(images)], draft)
            n += 1
        return n / (time.perf_counter() - started)

    diffs = [prepare(d, True).astype(float) - prepare(d, False) for d in images]
    mse = statistics.fmean(float(np.mean(d**2)) for d in diffs)
    return {
        "precision": precision,
        "batch_size": batch,
        "images_per_s": batch_s[0],
        "batch_ms": batch_s[1],
        "batch1_ms": single[1],
        "decode_images_per_s_per_thread": {"exact": decode_rate(False), "jpeg_draft": decode_rate(True)},
        "draft_psnr_db": 10 * np.log10(255**2 / mse),
        "draft_mean_abs_diff": statistics.fmean(float(np.mean(np.abs(d))) for d in diffs),
    }


def measure_service(args: argparse.Namespace, image_files: list[Path], mode: str) -> dict:
    """The service in one Ray mode, in a child process (Ray reads its environment when it starts)."""
    out = args.out / f"service_{mode}.json"
    command = [
        sys.executable, "-m", "loadtest.bench_service", "--mode", mode, "--model", args.model,
        "--settings", json.dumps(args.settings), "--images", *map(str, image_files),
        "--uploads", ",".join(args.uploads), "--concurrency", ",".join(map(str, args.concurrency)),
        "--seconds", str(args.seconds), "--json", str(out),
    ]  # fmt: skip
    subprocess.run(command, env={**os.environ, **MODES[mode]}, check=True)
    return json.loads(out.read_text())


def outside_model_ms(row: dict, key: str = "cpu_ms_per_request") -> float:
    """CPU per answered request spent by everything but the model replica (the load generator excluded);
    with key="marginal_cpu_ms_per_request", less what each role burns when idle."""
    return sum(ms for role, ms in row[key].items() if role != MODEL_ROLE and "load generator" not in role)


def plot(runs: list[dict], model_only: dict, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run, style in zip(runs, ("o-", "s--", "^:", "d-.", "x-"), strict=False):
        rows = [r for r in run["rows"] if r["upload"] == "raw"]
        ax.plot([r["images_per_s"] for r in rows], [r["p50_ms"] for r in rows], style, label=f"{run['mode']} p50")
        for r in rows:
            ax.annotate(f"c={r['concurrency']}", (r["images_per_s"], r["p50_ms"]), textcoords="offset points",
                        xytext=(4, -12), fontsize=7)  # fmt: skip
    ax.axvline(model_only["images_per_s"], color="gray", linestyle="-.", label="model-only images/s")
    ax.set_xlabel("throughput (images/s)")
    ax.set_ylabel("p50 latency (ms)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def print_report(model_only: dict, runs: list[dict]) -> dict:
    print(f"\nmodel-only ({model_only['precision']}): {model_only['images_per_s']:.1f} images/s at batch "
          f"{model_only['batch_size']} ({model_only['batch_ms']:.0f} ms/batch), batch-1 {model_only['batch1_ms']:.1f} ms")  # fmt: skip
    rates = model_only["decode_images_per_s_per_thread"]
    print(f"decode+resize per thread: {rates['exact']:.0f} images/s exact, {rates['jpeg_draft']:.0f} with JPEG draft "
          f"(draft vs exact: PSNR {model_only['draft_psnr_db']:.1f} dB, mean |diff| {model_only['draft_mean_abs_diff']:.2f} of 255)")  # fmt: skip
    header = (f"{'mode':14} {'upload':9} {'conc':>4} {'images/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'decode':>7} "
              f"{'queue':>7} {'infer':>7} {'outside':>8} {'errors':>6}")  # fmt: skip
    print("\n" + header + "\n" + "-" * len(header))
    for run in runs:
        for r in run["rows"]:
            print(f"{run['mode']:14} {r['upload']:9} {r['concurrency']:>4} {r['images_per_s']:>9.1f} {r['p50_ms']:>8.1f} "
                  f"{r['p99_ms']:>8.1f} {r['decode_ms']:>7.1f} {r['queue_ms']:>7.1f} {r['inference_ms']:>7.1f} "
                  f"{outside_model_ms(r):>8.1f} {r['errors']:>6}")  # fmt: skip
    print("(outside: CPU ms per answered request spent outside the model replica, load generator excluded)")
    print("\nCPU ms per answered request, by process role (2 cores = 2000 ms per second), and idle ms per second:")
    for run in runs:
        roles = sorted({role for r in run["rows"] for role in r["cpu_ms_per_request"]})
        columns = "".join(f"{r['upload'][:4] + ' c=' + str(r['concurrency']):>13}" for r in run["rows"])
        print(f"{run['mode']:38}{columns}{'idle ms/s':>13}")
        for role in roles:
            cells = "".join(f"{r['cpu_ms_per_request'].get(role, 0):>13.1f}" for r in run["rows"])
            print(f"  {role:36}{cells}{run['idle_cpu_ms_per_s'].get(role, 0):>13.1f}")
        cells = "".join(f"{outside_model_ms(r, 'marginal_cpu_ms_per_request'):>13.1f}" for r in run["rows"])
        print(f"  {'outside the model, less idle cost':36}{cells}")
        print(f"  {'Ray Serve floor (empty pipeline), c=1 p50 ms':36}{run['serve_floor_ms']:>13.1f}")
    shipped = runs[0]
    raw = [r for r in shipped["rows"] if r["upload"] == "raw"]
    top, c1 = max(raw, key=lambda r: r["concurrency"]), min(raw, key=lambda r: r["concurrency"])
    summary = {
        "mode": shipped["mode"],
        "ratio_at_top_concurrency": top["images_per_s"] / model_only["images_per_s"],
        "top_concurrency": top["concurrency"],
        "overhead_at_c1_ms": c1["p50_ms"] - model_only["batch1_ms"],
        "replica_inference_at_c1_ms": c1["inference_ms"],
        "outside_model_cpu_ms_at_top_concurrency": outside_model_ms(top),
        "outside_model_marginal_cpu_ms_at_top_concurrency": outside_model_ms(top, "marginal_cpu_ms_per_request"),
    }
    print(f"\n{shipped['mode']}: ratio service/model at c={top['concurrency']}: {summary['ratio_at_top_concurrency']:.2f}; "
          f"overhead at c=1: {summary['overhead_at_c1_ms']:.1f} ms (the replica's batch-1 forward: "
          f"{c1['inference_ms']:.1f} ms, in-process {model_only['batch1_ms']:.1f} ms); CPU outside the model at "
          f"c={top['concurrency']}: {summary['outside_model_cpu_ms_at_top_concurrency']:.1f} ms per request, "
          f"{summary['outside_model_marginal_cpu_ms_at_top_concurrency']:.1f} less the idle cost")  # fmt: skip
    return summary


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hornet-t")
    p.add_argument("--modes", type=lambda s: s.split(","), default=["shipped", "python-proxy"],
                   help=f"Ray modes to run, the first is the one summarised; known: {', '.join(MODES)}")  # fmt: skip
    p.add_argument("--settings", type=json.loads, default={}, help="JSON settings on top of the service defaults")
    p.add_argument("--uploads", type=lambda s: s.split(","), default=["raw", "multipart"])
    p.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 16])
    p.add_argument("--seconds", type=float, default=15, help="each service measurement window")
    p.add_argument("--model-seconds", type=float, default=4, help="each of the three model-only windows")
    p.add_argument("--image-size", default="1024x768", help="WxH of the JPEG photos sent")
    p.add_argument("--out", type=Path, default=Path("artifacts/bench"))
    p.add_argument("--reuse-model-only", action="store_true", help="take the model-only numbers from --out")
    args = p.parse_args(argv)
    unknown = set(args.modes) - set(MODES)
    if unknown:
        p.error(f"unknown modes: {sorted(unknown)}")
    settings = Settings.model_validate({**args.settings, "models": [args.model]})
    width, height = (int(v) for v in args.image_size.split("x"))
    images = [encode(photo(width, height, seed=100 + i), "JPEG", quality=90) for i in range(8)]
    args.out.mkdir(parents=True, exist_ok=True)
    image_files = []
    for i, data in enumerate(images):
        image_files.append(args.out / f"photo{i}.jpg")
        image_files[-1].write_bytes(data)
    machine = describe()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    print(f"{args.model}, {width}x{height} JPEG ({statistics.fmean(map(len, images)) / 1e3:.0f} KB), service settings: "
          f"defaults + {json.dumps(args.settings)}", flush=True)  # fmt: skip
    reused = args.out / "model_only.json"
    model_only = json.loads(reused.read_text()) if args.reuse_model_only else measure_model(args, settings, images)
    (args.out / "model_only.json").write_text(json.dumps(model_only, indent=2))
    runs = [measure_service(args, image_files, mode) for mode in args.modes]
    summary = print_report(model_only, runs)
    stem = f"{args.model}_{model_only['precision']}"
    result = {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()}, "model_only": model_only,
              "service": runs, "summary": summary}  # fmt: skip
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    plot(runs, model_only, f"{args.model} on {machine['cpu']} ({machine['cores']} cores), {model_only['precision']}",
         args.out / f"{stem}.png")  # fmt: skip
    print(f"wrote {args.out / stem}.json and .png")
    return result


if __name__ == "__main__":
    main()
