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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from loadtest.bench_model import throughput
from loadtest.bench_service import MODES
from loadtest.machine import describe
from loadtest.process_cpu import service_cpu_ms
from model import BatchPredictor, create_model, decode, get_variant, resize
from model.precision import resolve_precision
from model.preprocess import draft_size
from service.config import Settings
from service.decoding import DecodeRules
from tests.support.images import encode, photo

MODEL_ROLE = "model replica"
RAY_SERVE_HELPERS = ("HTTP ingress (Python proxy)", "HAProxy manager")  # Serve's, idle unless the ingress changes
PARTS = ("forward", "decode")  # the threads loadtest.process_cpu tells apart


def _best_window(predictor: BatchPredictor, batch_size: int, seconds: float) -> tuple[float, float, float]:
    """(images/s, ms per batch, CPU ms per image) of the fastest of three windows: on a shared VM a window can
    run 20% slow, and a slow reference would flatter the ratio and the overhead. The CPU is this process's, every
    thread (torch's OpenMP team included)."""

    def window() -> tuple[float, float, float]:
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        images_per_s, batch_ms = throughput(predictor, batch_size, seconds)
        images = images_per_s * (time.perf_counter() - wall_before)
        return images_per_s, batch_ms, (time.process_time() - cpu_before) * 1e3 / images

    return max(window() for _ in range(3))


def _overlapped_cpu_ms(predictor: BatchPredictor, batch_size: int, streams: int, seconds: float) -> float:
    """CPU ms per image of `streams` batches that overlap on one torch thread each: how the replica runs
    under load (service/replica/torch_lanes.py)."""
    size = predictor.recipe.input_size
    batch = np.random.default_rng(1).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    done = []

    def stream() -> None:
        torch.set_num_threads(1)
        predictor.predict(batch)  # this thread's first call pays its set-up
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            predictor.predict(batch)
            done.append(batch_size)

    cpu_before = time.process_time()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(lambda _: stream(), range(streams)))
    return (time.process_time() - cpu_before) * 1e3 / sum(done)


def measure_model(args: argparse.Namespace, settings: Settings, images: list[bytes]) -> dict:
    variant = get_variant(args.model)
    cfg = settings.classifier_for(variant.id)
    precision = resolve_precision(cfg.precision, torch.device("cpu"))
    predictor = BatchPredictor(create_model(variant.id), variant.preprocessing, "cpu", precision, cfg.channels_last)
    batch = cfg.batch.max_batch_size
    batch_s = _best_window(predictor, batch, args.model_seconds)
    single = _best_window(predictor, 1, args.model_seconds)
    overlapped_ms = _overlapped_cpu_ms(predictor, batch, cfg.batch.max_concurrent_batches, args.model_seconds)

    def prepare(data: bytes, draft: bool) -> np.ndarray:
        draft_side = draft_size(variant.preprocessing) if draft else None
        return resize(decode(data, max_pixels=10**9, draft_size=draft_side), variant.preprocessing)

    def decode_rate(draft: bool) -> float:
        started, n = time.perf_counter(), 0
        while time.perf_counter() - started < 2:
            prepare(images[n % len(images)], draft)
            n += 1
        return n / (time.perf_counter() - started)

    def decode_cpu_ms() -> float:
        """The service's own decode under its limits (service/decoding.py), CPU ms per image on one thread."""
        rules = DecodeRules.from_settings(settings.limits, settings.timeouts.decode_s)
        started, n = time.thread_time(), 0
        while time.thread_time() - started < 2:
            rules.pixels(images[n % len(images)], variant.preprocessing)
            n += 1
        return (time.thread_time() - started) * 1e3 / n

    diffs = [prepare(d, True).astype(float) - prepare(d, False) for d in images]
    mse = statistics.fmean(float(np.mean(d**2)) for d in diffs)
    return {
        "precision": precision,
        "batch_size": batch,
        "images_per_s": batch_s[0],
        "batch_ms": batch_s[1],
        "batch1_ms": single[1],
        # The machine's limit rests on the cheaper way to run the forward and on the service's own decode.
        "forward_cpu_ms_per_image": min(batch_s[2], overlapped_ms),
        "forward_cpu_ms_per_image_by_way": {
            "lone batch, all threads": batch_s[2],
            "overlapped, 1 thread each": overlapped_ms,
        },
        "batch1_forward_cpu_ms": single[2],  # concurrency 1: every batch is a batch of one
        "decode_cpu_ms_per_image": decode_cpu_ms(),
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


def plot(runs: list[dict], model_only: dict, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run, style in zip(runs, ("o-", "s--", "^:", "d-.", "x-"), strict=False):
        upload = run["rows"][0]["upload"]
        rows = [r for r in run["rows"] if r["upload"] == upload]
        ax.plot(
            [r["images_per_s"] for r in rows], [r["p50_ms"] for r in rows], style, label=f"{run['mode']} {upload} p50"
        )
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


def part_cpu_ms(row_cpu: dict[str, float], part: str) -> float:
    """CPU per request of the service's threads that do `part` ("forward", "decode"), in whichever process."""
    return sum(ms for role, ms in row_cpu.items() if role.endswith(f": {part}"))


def machine_limit(model_only: dict, cores: int) -> float:
    """images/s this machine allows: every core on the forward and the service's decode, nothing else."""
    return cores * 1e3 / (model_only["forward_cpu_ms_per_image"] + model_only["decode_cpu_ms_per_image"])


def forward_cpu_ms(model_only: dict, concurrency: int) -> float:
    """The model alone's CPU per image at the batch the service runs: batches of one at concurrency 1."""
    return model_only["batch1_forward_cpu_ms"] if concurrency == 1 else model_only["forward_cpu_ms_per_image"]


def model_process(row: dict) -> str:
    """The role of the process whose threads run the forward: the model replica, or colocated, the gateway."""
    return next((role.removesuffix(": forward") for role in row["cpu_ms_per_request"] if role.endswith(": forward")),
                MODEL_ROLE)  # fmt: skip


def ray_idle_ms_per_request(run: dict, row: dict) -> float:
    """What Ray's own processes (Serve's controller, GCS, raylet, agents, the fallback proxy, HAProxy's manager) burn
    with no request at all, spread over the requests of `row`: a fixed cost, not a cost of serving a request."""
    idle = run["idle_cpu_ms_per_s"]
    ms_per_s = sum(ms for role, ms in idle.items() if role.startswith("Ray:") or role in RAY_SERVE_HELPERS)
    return ms_per_s / max(row["images_per_s"], 1e-9)


def print_accounting(model_only: dict, run: dict) -> None:
    """Every core-millisecond of a request, by process, at each concurrency: the forward and the decode as their
    threads spent them (beside what the model and the decode alone spend), what the rest of the replica and every
    other process spend, and the empty Serve pipeline."""
    decode = model_only["decode_cpu_ms_per_image"]
    forwards = [forward_cpu_ms(model_only, r["concurrency"]) for r in run["rows"]]
    floor = run["serve_floor"]
    roles = sorted({role for r in run["rows"] for role in r["cpu_ms_per_request"]} | set(floor["cpu_ms_per_request"]))
    columns = "".join(f"{r['upload'][:4] + ' c=' + str(r['concurrency']):>12}" for r in run["rows"])
    print(f"\n{run['mode']}: CPU ms per answered request by process (2 cores = 2000 ms per second)")
    print(f"{'':44}{columns}{'empty c=' + str(floor['concurrency']):>12}{'idle ms/s':>11}")
    for role in roles:
        cells = "".join(f"{r['cpu_ms_per_request'].get(role, 0):>12.1f}" for r in run["rows"])
        idle = run["idle_cpu_ms_per_s"].get(role, 0)
        print(f"  {role:42}{cells}{floor['cpu_ms_per_request'].get(role, 0):>12.1f}{idle:>11.1f}")
    totals = [service_cpu_ms(r["cpu_ms_per_request"]) for r in run["rows"]]
    measured = {part: [part_cpu_ms(r["cpu_ms_per_request"], part) for r in run["rows"]] for part in PARTS}
    lines = {
        "the service, all processes": totals,
        "  of it the forward (its threads)": measured["forward"],
        "    the model alone would spend": forwards,
        "  of it the decode (its threads)": measured["decode"],
        "    the decode alone would spend": [decode] * len(totals),
        "  everything else": [t - f - d for t, f, d in zip(totals, measured["forward"], measured["decode"], strict=True)],
        "    of it in the model's process": [r["cpu_ms_per_request"].get(model_process(r), 0) for r in run["rows"]],
        "    of it the idle cost of Ray's processes": [ray_idle_ms_per_request(run, r) for r in run["rows"]],
    }  # fmt: skip
    for name, values in lines.items():
        print(f"  {name:42}" + "".join(f"{v:>12.1f}" for v in values))
    print(f"  {'empty Serve pipeline: c=1 p50 ms, c=' + str(floor['concurrency']) + ' requests/s':42}"
          f"{floor['c1_p50_ms']:>12.1f}{floor['requests_per_s']:>12.1f}")  # fmt: skip
    print(f"  {'of its CPU, the hop to the replica (ms)':42}{floor['hop_cpu_ms']:>12.1f}  (the ingress answering "
          f"alone spends {service_cpu_ms(floor['ingress_alone_cpu_ms_per_request']):.1f})")  # fmt: skip


def print_report(model_only: dict, runs: list[dict], cores: int) -> dict:
    print(f"\nmodel-only ({model_only['precision']}): {model_only['images_per_s']:.1f} images/s at batch "
          f"{model_only['batch_size']} ({model_only['batch_ms']:.0f} ms/batch), batch-1 {model_only['batch1_ms']:.1f} ms")  # fmt: skip
    ways = ", ".join(f"{way} {ms:.1f}" for way, ms in model_only["forward_cpu_ms_per_image_by_way"].items())
    print(f"forward CPU ms per image at batch {model_only['batch_size']}: {ways}")
    rates = model_only["decode_images_per_s_per_thread"]
    print(f"decode+resize per thread: {rates['exact']:.0f} images/s exact, {rates['jpeg_draft']:.0f} with JPEG draft "
          f"(draft vs exact: PSNR {model_only['draft_psnr_db']:.1f} dB, mean |diff| {model_only['draft_mean_abs_diff']:.2f} of 255); "
          f"the service's decode: {model_only['decode_cpu_ms_per_image']:.1f} ms CPU per image")  # fmt: skip
    limit = machine_limit(model_only, cores)
    print(f"this machine's limit: {cores} cores / (forward + decode) = {limit:.1f} images/s")
    header = (f"{'mode':14} {'upload':9} {'conc':>4} {'images/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'decode':>7} "
              f"{'queue':>7} {'infer':>7} {'of limit':>8} {'errors':>6}")  # fmt: skip
    print("\n" + header + "\n" + "-" * len(header))
    for run in runs:
        for r in run["rows"]:
            print(f"{run['mode']:14} {r['upload']:9} {r['concurrency']:>4} {r['images_per_s']:>9.1f} {r['p50_ms']:>8.1f} "
                  f"{r['p99_ms']:>8.1f} {r['decode_ms']:>7.1f} {r['queue_ms']:>7.1f} {r['inference_ms']:>7.1f} "
                  f"{r['images_per_s'] / limit:>8.2f} {r['errors']:>6}")  # fmt: skip
    for run in runs:
        print_accounting(model_only, run)
    shipped = runs[0]
    first_upload = shipped["rows"][0]["upload"]
    rows = [r for r in shipped["rows"] if r["upload"] == first_upload]
    top, c1 = max(rows, key=lambda r: r["concurrency"]), min(rows, key=lambda r: r["concurrency"])
    beyond = (
        service_cpu_ms(top["cpu_ms_per_request"])
        - part_cpu_ms(top["cpu_ms_per_request"], "forward")
        - part_cpu_ms(top["cpu_ms_per_request"], "decode")
    )
    summary = {
        "mode": shipped["mode"],
        "upload": first_upload,
        "top_concurrency": top["concurrency"],
        "images_per_s_at_top_concurrency": top["images_per_s"],
        "machine_limit_images_per_s": limit,
        "share_of_limit": top["images_per_s"] / limit,
        "ratio_at_top_concurrency": top["images_per_s"] / model_only["images_per_s"],
        "overhead_at_c1_ms": c1["p50_ms"] - model_only["batch1_ms"],
        "cpu_ms_beyond_forward_and_decode": beyond,
        "of_it_idle_cost_of_rays_processes_ms": ray_idle_ms_per_request(shipped, top),
        "empty_serve_pipeline_cpu_ms": service_cpu_ms(shipped["serve_floor"]["cpu_ms_per_request"]),
        "gateway_to_replica_hop_cpu_ms": shipped["serve_floor"]["hop_cpu_ms"],
    }  # fmt: skip
    print(f"\n{shipped['mode']} ({first_upload}): c={top['concurrency']} {top['images_per_s']:.1f} images/s = "
          f"{summary['share_of_limit']:.2f} of the machine's limit ({limit:.1f}), {summary['ratio_at_top_concurrency']:.2f} "
          f"of the model alone; overhead at c=1 {summary['overhead_at_c1_ms']:.1f} ms; CPU per request beyond the "
          f"forward and the decode {beyond:.1f} ms, of which Ray's processes idle "
          f"{summary['of_it_idle_cost_of_rays_processes_ms']:.1f}; an empty Serve pipeline spends "
          f"{summary['empty_serve_pipeline_cpu_ms']:.1f}")  # fmt: skip
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
    summary = print_report(model_only, runs, int(machine["cores"]))
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
