"""One prepared check of a GPU machine: is the model right there, how fast is it, and how much CPU must feed it.

    PYTHONPATH=. python3 -m loadtest.gpu_check OUTDIR            # on the GPU machine, about 5 minutes
    PYTHONPATH=. python3 -m loadtest.gpu_check OUTDIR --quick    # on a CPU, under a minute (make test runs it)

Needs torch, numpy, Pillow and the model package's own needs (pydantic, PyYAML-free); torchvision only for the
GPU JPEG decode rate. No Ray, no service. Sections, each bounded by a share of `--budget-s`:

1. decode: decode+resize images/s of the gateway's path (Pillow, exact and JPEG draft) for a 1024x768 and a
   12 MP JPEG, on one core and on every core (a process pool), before CUDA is touched (the pool forks);
2. environment: GPU, memory, driver, torch/CUDA/cuDNN, CPU;
3. correctness: golden logits (docs/model.md#golden-vectors) in fp32 (<= 1e-3), bf16/fp16 top-5 agreement with fp32, the
   official and mmpretrain checkpoint layouts, the padded/graph fast path against eager;
4. throughput: per variant, precision and mode (eager, CUDA graphs) images/s, p50/p90 latency and peak
   memory by batch size 1, 2, 4, ... until throughput stops growing (under 5% more than the best so far);
5. replica decode: the replica's decode path (nvJPEG on CUDA, Pillow on a CPU) against the exact CPU path: PSNR
   of the model input, fallbacks, images/s, and top-1/top-5 agreement where a trained classifier is installed;
6. GPU decode: torchvision's batched `decode_jpeg(device="cuda")` (+ an on-GPU resize) images/s;
7. compile: torch.compile (+ CUDA graphs) at the best precision for batch 1 and the plateau batch;
8. derived: the recommended precision, mode and batch size, replicas per GPU by memory, and gateway cores
   per GPU (GPU images/s over one core's decode rate).

OUTDIR/gpu_check.json and OUTDIR/gpu_check.md (a table for every part of the JSON) are rewritten after every
section, so a run stopped part way keeps what it measured; whatever the budget did not allow is recorded as
skipped, with why. Exit status 1 when a correctness check fails or a section raised.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from loadtest.bench_model import time_batches
from loadtest.machine import cpu_bf16_support, cpu_model
from model import BatchPredictor, create_model, decode, get_variant, resize, resolve_precision
from model.preprocess import draft_size
from tests.support import golden
from tests.support.images import encode, photo, psnr

ROOT = Path(__file__).resolve().parents[1]
GROWTH = 1.05  # a batch size that adds less than 5% images/s over the best smaller one ends a series
NEAR_BEST = 0.9  # the recommended batch: the smallest one within 10% of its series' best images/s
MEMORY_HEADROOM = 0.9  # replicas per GPU use at most this share of its memory


@dataclass(frozen=True)
class Plan:
    device: str
    models: list[str]
    precisions: list[str]
    modes: list[str]
    batch_sizes: list[int]
    window_s: float
    layout_model: str  # a global-filter variant whose random weights go through both checkpoint layouts
    agreement_images: int
    decode_sizes: list[tuple[int, int]]
    decode_window_s: float
    workers: int
    compile: bool
    shares: dict[str, float] = field(default_factory=dict)  # each section's share of the budget left; compile: the rest


FULL = Plan(
    device="cuda", models=["hornet-t", "hornet-l-gf384"], precisions=["bf16", "fp16", "fp32"],
    modes=["eager", "cuda-graph"], batch_sizes=[2**i for i in range(9)], window_s=0.6,
    layout_model="hornet-l-gf384", agreement_images=32, decode_sizes=[(1024, 768), (4000, 3000)],
    decode_window_s=1.0, workers=os.cpu_count() or 1, compile=True,
    shares={"decode": 0.1, "correctness": 0.12, "throughput:hornet-t": 0.2, "throughput:hornet-l-gf384": 0.45,
            "gpu_decode": 0.06, "replica_decode": 0.06},
)  # fmt: skip
QUICK = Plan(
    device="cpu", models=["hornet-t"], precisions=["fp32"], modes=["eager"], batch_sizes=[1, 2],
    window_s=0.2, layout_model="hornet-t-gf", agreement_images=2, decode_sizes=[(1024, 768), (4000, 3000)],
    decode_window_s=0.2, workers=2, compile=False,
    shares={"decode": 0.3, "correctness": 0.6, "throughput:hornet-t": 0.6, "gpu_decode": 0.1, "replica_decode": 0.1},
)  # fmt: skip


class Budget:
    """A wall-clock deadline; `share(f)` is a child deadline at fraction f of what is left (never later)."""

    def __init__(self, seconds: float, end: float | None = None) -> None:
        self.end = end if end is not None else time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def share(self, fraction: float) -> Budget:
        return Budget(0, time.monotonic() + self.left() * fraction)


class Report:
    """The results so far, written to OUTDIR as JSON and markdown after every section."""

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        self.data: dict = {"sections": {}, "skipped": [], "errors": []}
        outdir.mkdir(parents=True, exist_ok=True)

    def skip(self, what: str, why: str) -> None:
        self.data["skipped"].append({"item": what, "why": why})
        print(f"skipped {what}: {why}", flush=True)

    def save(self) -> None:
        (self.outdir / "gpu_check.json").write_text(json.dumps(self.data, indent=2, default=str))
        (self.outdir / "gpu_check.md").write_text(markdown(self.data))

    def section(self, name: str, fn: Callable[[], object]) -> None:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            self.data["sections"][name] = fn()
        except Exception as exc:  # one broken section must not cost the others' numbers
            self.data["errors"].append({"section": name, "error": f"{type(exc).__name__}: {exc}"})
            traceback.print_exc()
        self.data.setdefault("section_seconds", {})[name] = round(time.monotonic() - started, 1)
        self.save()


# ---------------------------------------------------------------------------------------------- decode (CPU)


def _decode_for(data: bytes, variant_id: str, draft: bool, seconds: float) -> float:
    """Images/s of the gateway's decode + resize of one JPEG, repeated for `seconds` in this process."""
    recipe = get_variant(variant_id).preprocessing
    draft_side = draft_size(recipe) if draft else None
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or count < 2:
        resize(decode(data, max_pixels=10**9, draft_size=draft_side), recipe)
        count += 1
    return count / elapsed


def section_decode(plan: Plan, budget: Budget, report: Report) -> list[dict]:
    jpegs = {f"{w}x{h}": encode(photo(w, h, seed=w), "JPEG", quality=90) for w, h in plan.decode_sizes}
    rows = []
    # fork: this runs before anything touches CUDA, and a forked worker starts in milliseconds.
    pool = ProcessPoolExecutor(plan.workers, mp_context=multiprocessing.get_context("fork"))
    try:
        warm = next(iter(jpegs.values()))  # start every worker and import its modules before any timing
        list(pool.map(_decode_for, [warm] * plan.workers, [plan.models[0]] * plan.workers, [True] * plan.workers,
                      [0.05] * plan.workers))  # fmt: skip
        for variant_id in plan.models:
            for size, data in jpegs.items():
                for draft in (False, True):
                    what = f"decode {variant_id} {size} draft={draft}"
                    if budget.left() < 3 * plan.decode_window_s:
                        report.skip(what, "decode section's time share used up")
                        continue
                    one = _decode_for(data, variant_id, draft, plan.decode_window_s)
                    args = [[data] * plan.workers, [variant_id] * plan.workers, [draft] * plan.workers,
                            [plan.decode_window_s] * plan.workers]  # fmt: skip
                    everyone = sum(pool.map(_decode_for, *args))
                    rows.append({"model": variant_id, "jpeg": size, "jpeg_mb": round(len(data) / 1e6, 2),
                                 "draft": draft, "images_per_s_one_core": round(one, 1),
                                 "images_per_s_all_cores": round(everyone, 1), "workers": plan.workers,
                                 "images_per_s_per_core_all_busy": round(everyone / plan.workers, 1)})  # fmt: skip
                    print(rows[-1], flush=True)
    finally:
        pool.shutdown()
    return rows


# ------------------------------------------------------------------------------------------------ environment


def _driver_version() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)  # fmt: skip
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown (no nvidia-smi)"


def section_environment(device: torch.device) -> dict:
    try:
        import torchvision

        vision = torchvision.__version__
    except ImportError:
        vision = "not installed"
    env = {
        "python": sys.version.split()[0], "torch": torch.__version__, "torchvision": vision,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "device": str(device),
        "cpu": cpu_model(), "cores": os.cpu_count(), "cpu_flags": cpu_bf16_support(),
        "auto_precision": resolve_precision("auto", device),
    }  # fmt: skip
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        free, total = torch.cuda.mem_get_info(device)
        env |= {
            "gpu": props.name, "gpu_memory_gib": round(total / 2**30, 1), "multiprocessors": props.multi_processor_count,
            "compute_capability": f"{props.major}.{props.minor}", "driver": _driver_version(),
            "cuda_context_gib": round((total - free - torch.cuda.memory_reserved(device)) / 2**30, 2),
            "cudnn_benchmark": torch.backends.cudnn.benchmark, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        }  # fmt: skip
    return env


# ------------------------------------------------------------------------------------------------ correctness


def _top5(predictor: BatchPredictor, pixels: np.ndarray) -> np.ndarray:
    return predictor.predict(pixels, top_k=5)[0]


def _agreement(a: np.ndarray, b: np.ndarray) -> dict:
    overlap = [len(set(x) & set(y)) / 5 for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    return {
        "top5_agreement": round(float(np.mean(overlap)), 3),
        "top1_equal": round(float(np.mean(a[:, 0] == b[:, 0])), 3),
    }


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def section_correctness(plan: Plan, device: torch.device) -> dict:
    from PIL import Image

    recipe = get_variant("hornet-t").preprocessing
    official = golden.official_state_dict()
    _, expected = golden.golden()
    pixels = resize(Image.open(golden.DATA / "public_input.png").convert("RGB"), recipe)[None]
    net = create_model("hornet-t", weights=official)
    fp32 = BatchPredictor(net, recipe, device)
    checks: dict[str, dict] = {}

    if device.type == "cuda":  # the golden 1e-3 holds for true fp32; torch lets cuDNN convolutions use TF32
        diff = _max_diff(fp32.logits(pixels)[0].cpu(), expected)
        checks["golden logits, fp32 with cuDNN TF32 (torch's default)"] = {
            "max_abs_diff": diff,
            "tolerance": 1e-2,
            "pass": diff <= 1e-2,
        }
        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            diff = _max_diff(fp32.logits(pixels)[0].cpu(), expected)
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    else:
        diff = _max_diff(fp32.logits(pixels)[0].cpu(), expected)
    checks["golden logits fp32"] = {"max_abs_diff": diff, "tolerance": 1e-3, "pass": diff <= 1e-3}
    top5 = _top5(fp32, pixels)[0].tolist()
    want = expected.topk(5).indices.tolist()
    checks["golden top-5 fp32"] = {"top5": top5, "expected": want, "pass": top5 == want}

    photos = [resize(photo(640, 480, seed=s), recipe) for s in range(plan.agreement_images - 1)]
    images = np.stack([pixels[0], *photos])
    reference = _top5(fp32, images)
    for precision in ("bf16", "fp16"):
        result = _agreement(_top5(BatchPredictor(net, recipe, device, precision), images), reference)
        checks[f"{precision} vs fp32, golden weights, {len(images)} images"] = result | {
            "pass": result["top5_agreement"] >= 0.8 and result["top1_equal"] >= 0.9
        }

    mm = create_model("hornet-t", weights=golden.to_mmpretrain(official))
    diff = _max_diff(BatchPredictor(mm, recipe, device).logits(pixels).cpu(), fp32.logits(pixels).cpu())
    checks["hornet-t mmpretrain layout = official"] = {"max_abs_diff": diff, "pass": diff <= 1e-5}
    variant = get_variant(plan.layout_model)
    random_net = create_model(variant.id)
    state = {k: v.clone() for k, v in random_net.state_dict().items()}
    size = variant.input_size
    sample = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    reference_logits = BatchPredictor(random_net, variant.preprocessing, device).logits(sample).cpu()
    for layout, weights in (("official", state), ("mmpretrain", golden.to_mmpretrain(state))):
        loaded = create_model(variant.id, weights=weights)
        diff = _max_diff(BatchPredictor(loaded, variant.preprocessing, device).logits(sample).cpu(), reference_logits)
        checks[f"{variant.id} random weights, {layout} layout round trip"] = {
            "max_abs_diff": diff,
            "pass": diff <= 1e-5,
        }
        del loaded

    fast = BatchPredictor(net, recipe, device, buckets=[8], cuda_graphs=device.type == "cuda")
    idx, scores = fast.predict(images[:5], top_k=5)
    ref_idx, ref_scores = fp32.predict(images[:5], top_k=5)
    diff = float(np.abs(scores - ref_scores).max())
    checks["fast path (batch 5 padded to 8) = eager"] = {
        "runner": fast.runner_kinds[8],
        "max_abs_diff": diff,
        "pass": bool((idx == ref_idx).all()) and diff <= 1e-4,
    }
    for name, check in checks.items():
        print(f"{'PASS' if check['pass'] else 'FAIL'} {name}: {check}", flush=True)
    return {"auto_precision": resolve_precision("auto", device), "checks": checks}


# ------------------------------------------------------------------------------------------------- throughput


def _free_gpu_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _measure(predictor: BatchPredictor, batch_size: int, seconds: float) -> dict:
    cuda = predictor.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(predictor.device)
    timing = time_batches(predictor, batch_size, seconds)
    row = {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(timing).items()}
    if cuda:
        row["peak_gib"] = round(torch.cuda.max_memory_allocated(predictor.device) / 2**30, 2)
    return row


def _series(net, variant_id: str, precision: str, mode: str, plan: Plan, budget: Budget, report: Report,
            compile_mode: str = "off", batch_sizes: list[int] | None = None, setup_s: float = 0.0) -> list[dict]:  # fmt: skip
    """One (variant, precision, mode) by growing batch size until throughput stops growing or time is up
    (`batch_sizes`: exactly these instead). `setup_s`: the expected compile time of the first batch size."""
    variant = get_variant(variant_id)
    device = torch.device(plan.device)
    sizes = batch_sizes or plan.batch_sizes
    predictor = BatchPredictor(net, variant.preprocessing, device, precision, buckets=sizes, compile=compile_mode,
                               cuda_graphs=mode.endswith("cuda-graph"), max_top_k=5)  # fmt: skip
    rows, best, last_s = [], 0.0, 0.0
    for batch_size in sizes:
        what = f"{variant_id} {precision} {mode} batch {batch_size}"
        # The window, then three batches and two warm-ups at twice the last batch time, and any compiling.
        need = plan.window_s + 10 * last_s + setup_s
        if budget.left() < need:
            report.skip(what, f"time share used up ({budget.left():.0f} s left, about {need:.0f} s needed)")
            break
        started = time.monotonic()
        try:
            row = _measure(predictor, batch_size, plan.window_s)
        except torch.cuda.OutOfMemoryError:
            report.skip(what, "out of GPU memory")
            break
        row |= {"model": variant_id, "precision": predictor.precision, "mode": mode, "batch_size": batch_size,
                "runner": predictor.runner_kinds.get(batch_size, "eager"),
                "seconds": round(time.monotonic() - started, 1)}  # fmt: skip
        rows.append(row)
        print(row, flush=True)
        last_s = row["ms_per_batch"] / 1e3
        setup_s = row["seconds"] if compile_mode != "off" else 0.0
        if batch_sizes is None and row["images_per_s"] < GROWTH * best:
            break
        best = max(best, row["images_per_s"])
    del predictor
    _free_gpu_memory()
    return rows


def section_throughput(variant_id: str, plan: Plan, budget: Budget, report: Report) -> list[dict]:
    _free_gpu_memory()  # peak memory per configuration counts only this variant
    net = create_model(variant_id)
    series = [(p, m) for p in plan.precisions for m in plan.modes]
    rows: list[dict] = []
    for i, (precision, mode) in enumerate(series):
        rows += _series(net, variant_id, precision, mode, plan, budget.share(1 / (len(series) - i)), report)
    del net
    _free_gpu_memory()
    return rows


def best_series(rows: list[dict]) -> list[dict]:
    """The (precision, mode) rows of the configuration with the highest images/s."""
    top = max(rows, key=lambda r: r["images_per_s"])
    return [r for r in rows if (r["precision"], r["mode"]) == (top["precision"], top["mode"])]


def section_compile(plan: Plan, budget: Budget, report: Report, throughput: dict[str, list[dict]]) -> list[dict]:
    rows: list[dict] = []
    mode = "compiled+cuda-graph" if plan.device == "cuda" else "compiled"
    for variant_id in plan.models:
        measured = throughput.get(variant_id)
        if not measured:
            report.skip(f"compile {variant_id}", "no throughput rows to pick the precision and batch from")
            continue
        best = best_series(measured)
        plateau = max(best, key=lambda r: r["images_per_s"])["batch_size"]
        sizes = sorted({1, plateau})
        # A first compile on an unknown machine: assume a minute; after that, 1.5 times the slowest one so far.
        setup_s = 1.5 * max(r["seconds"] for r in rows) if rows else 60.0
        net = create_model(variant_id)
        rows += _series(net, variant_id, best[0]["precision"], mode, plan, budget, report, "default", sizes, setup_s)
        del net
        _free_gpu_memory()
    return rows


# ------------------------------------------------------------------------------------------------- GPU decode


def _gpu_decode_rate(jpegs: list[torch.Tensor], scale: float | None, seconds: float) -> float:
    """Images/s of torchvision's batched GPU decode of `jpegs`, plus a bicubic antialiased resize by `scale`."""
    from torchvision.io import decode_jpeg

    def run() -> None:
        images = torch.stack(decode_jpeg(jpegs, device="cuda"))
        if scale is not None:
            resized = torch.nn.functional.interpolate(
                images.float(), scale_factor=scale, mode="bicubic", antialias=True
            )
            resized.clamp(0, 255).to(torch.uint8)
        torch.cuda.synchronize()

    run()
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or count < 3:
        run()
        count += 1
    return count * len(jpegs) / elapsed


def section_gpu_decode(plan: Plan, budget: Budget, report: Report) -> list[dict]:
    recipe = get_variant(plan.models[0]).preprocessing
    short = recipe.resize_short or recipe.input_size
    rows = []
    for width, height in plan.decode_sizes:
        batch = 64 if width * height < 4_000_000 else 16  # a few hundred MB of decoded pixels per batch
        if budget.left() < 3 * plan.decode_window_s:
            report.skip(f"GPU decode {width}x{height}", "time share used up")
            continue
        data = bytearray(encode(photo(width, height, seed=width), "JPEG", quality=90))
        jpegs = [torch.frombuffer(data, dtype=torch.uint8)] * batch
        for scale in (None, short / min(width, height)):
            rate = _gpu_decode_rate(jpegs, scale, plan.decode_window_s)
            rows.append({"jpeg": f"{width}x{height}", "batch": batch, "resize_on_gpu": scale is not None,
                         "images_per_s": round(rate, 1)})  # fmt: skip
            print(rows[-1], flush=True)
    return rows


# ---------------------------------------------------------------------------------------------- replica decode


def section_replica_decode(plan: Plan, device: torch.device, budget: Budget) -> list[dict]:
    """The replica's decode path (service/replica/jpeg.py: nvJPEG on CUDA, Pillow on the CPU, then orientation and
    resize on the device) against the exact CPU path: PSNR of the model input, how many images fell back, the rate
    in batches, and the top-1/top-5 agreement of a trained classifier where one is installed (loadtest.fidelity)."""
    from service.config import Limits
    from service.decoding import DecodeRules
    from service.replica.jpeg import EncodedJpeg, prepare_batch

    recipe = get_variant(plan.models[0]).preprocessing
    rules = DecodeRules.from_settings(Limits(jpeg_draft=False), time_limit_s=30)  # the exact path
    try:
        from loadtest.fidelity import Classifier

        classifier: Classifier | None = Classifier()
    except ImportError:  # its weights are a dev dependency: the GPU machine may not have them
        classifier = None
    rows = []
    window_s = budget.left() / max(1, len(plan.decode_sizes))
    for width, height in plan.decode_sizes:
        uploads = [encode(photo(width, height, seed=seed), "JPEG", quality=90) for seed in range(4)]
        items = [EncodedJpeg(data) for data in uploads]
        prepared = prepare_batch(items, recipe, device, rules)
        exact = np.stack([rules.pixels(data, recipe) for data in uploads])
        got = prepared.pixels.cpu().numpy()
        ratios = [psnr(a, b) for a, b in zip(got, exact, strict=True)]
        batch = items * (4 if width * height < 4_000_000 else 1)
        count, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < window_s or count < 2:
            prepare_batch(batch, recipe, device, rules)
            count += 1
        row = {"jpeg": f"{width}x{height}", "device": str(device), "psnr_min_db": round(min(ratios), 1),
               "psnr_median_db": round(float(np.median(ratios)), 1), "fallbacks": prepared.fallbacks,
               "images_per_s": round(count * len(batch) / elapsed, 1)}  # fmt: skip
        if classifier is not None:
            top_device, top_exact = classifier.top5(got), classifier.top5(exact)
            row["top1_agreement"] = float(np.mean(top_device[:, 0] == top_exact[:, 0]))
            row["top5_overlap"] = float(
                np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top_device, top_exact, strict=True)])
            )
        rows.append(row)
        print(row, flush=True)
    return rows


# ---------------------------------------------------------------------------------------------------- derived


def derive(data: dict, plan: Plan) -> dict:
    sections = data["sections"]
    env = sections.get("environment", {})
    out = {}
    for variant_id in plan.models:
        rows = sections.get(f"throughput:{variant_id}") or []
        if not rows:
            continue
        best = best_series(rows)
        top = max(best, key=lambda r: r["images_per_s"])
        chosen = next(r for r in best if r["images_per_s"] >= NEAR_BEST * top["images_per_s"])
        result = {
            "precision": top["precision"], "mode": top["mode"], "best_images_per_s": top["images_per_s"],
            "best_batch": top["batch_size"], "recommended_batch": chosen["batch_size"],
            "images_per_s_at_recommended": chosen["images_per_s"], "p50_ms_at_recommended": chosen["p50_ms"],
            "batch1_p50_ms": next((r["p50_ms"] for r in best if r["batch_size"] == 1), None),
        }  # fmt: skip
        if "peak_gib" in chosen and "gpu_memory_gib" in env:
            per_replica = chosen["peak_gib"] + env.get("cuda_context_gib", 0.5)
            result["replica_memory_gib"] = round(per_replica, 2)
            result["replicas_per_gpu_by_memory"] = math.floor(MEMORY_HEADROOM * env["gpu_memory_gib"] / per_replica)
        cores = {}
        for d in sections.get("decode") or []:
            if d["model"] == variant_id:
                key = f"{d['jpeg']}{' draft' if d['draft'] else ''}"
                cores[key] = float(f"{top['images_per_s'] / d['images_per_s_per_core_all_busy']:.2g}")  # 75, 0.04
        result["gateway_cores_per_gpu"] = cores
        out[variant_id] = result
    return out


# --------------------------------------------------------------------------------------------------- markdown


# Each part's heading; any other (`throughput:<id>`, `compile`, one added later) is headed by its own name.
HEADINGS = {
    "environment": "Environment",
    "correctness": "Correctness",
    "decode": "Decode + resize on the CPU (Pillow, the gateway's path)",
    "replica_decode": "Decode + resize in the replica (service/replica/jpeg.py) against the exact CPU path",
    "gpu_decode": "torchvision decode_jpeg on the GPU",
    "derived": "Derived",
    "skipped": "Skipped",
    "errors": "Errors",
    "plan": "Plan",
    "section_seconds": "Seconds per section",
}
SERIES_COLUMNS = ["precision", "mode", "runner", "batch_size", "images_per_s", "p50_ms", "p90_ms", "peak_gib",
                  "seconds"]  # fmt: skip
# The columns shown of a part's rows (by its name up to a `:`); any other part shows every column its rows have.
COLUMNS = {
    "correctness": ["check", "pass", "max_abs_diff", "tolerance", "top5_agreement", "top1_equal", "runner"],
    "throughput": SERIES_COLUMNS,
    "compile": SERIES_COLUMNS,
    "decode": ["model", "jpeg", "jpeg_mb", "draft", "images_per_s_one_core", "images_per_s_all_cores",
               "images_per_s_per_core_all_busy"],
}  # fmt: skip


def heading(name: str) -> str:
    return HEADINGS.get(name, name)


def _table(rows: list[dict], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return lines + ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]


def _tables(name: str, value: object) -> list[list[str]]:
    """One part of the report as tables: a list's rows, or a mapping's entries as rows (correctness: its checks;
    derived: a row per model, then the gateway cores per GPU by JPEG size); none when it is empty."""
    if name == "correctness":
        checks = [{"check": k, **c} for k, c in value["checks"].items()]
        return [*_tables("", {k: v for k, v in value.items() if k != "checks"}), _table(checks, COLUMNS[name])]
    if name == "derived":
        models = [
            {"model": v, **{k: x for k, x in d.items() if k != "gateway_cores_per_gpu"}} for v, d in value.items()
        ]
        cores = [{"model": v, "jpeg": jpeg, "gateway cores per GPU": n}
                 for v, d in value.items() for jpeg, n in d["gateway_cores_per_gpu"].items()]  # fmt: skip
        return [*_tables("", models), *_tables("", cores)]
    rows = [{"": k, "value": v} for k, v in value.items()] if isinstance(value, dict) else list(value or [])
    columns = COLUMNS.get(name.split(":")[0]) or list(dict.fromkeys(k for row in rows for k in row))
    return [_table(rows, columns)] if rows else []


def markdown(data: dict) -> str:
    """Every part of the JSON with something in it, each under its heading: the sections (the environment first,
    the others in the order they ran), then what was skipped, the errors, the plan and each section's seconds."""
    s = data["sections"]
    env = s.get("environment", {})
    lines = [f"# GPU check: {env.get('gpu', env.get('device', '?'))}", ""]
    parts = [
        *sorted(s.items(), key=lambda part: part[0] != "environment"),
        *(p for p in data.items() if p[0] != "sections"),
    ]
    for name, value in parts:
        if tables := _tables(name, value):
            lines += [f"## {heading(name)}", ""]
            for table in tables:
                lines += [*table, ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir", type=Path)
    p.add_argument("--quick", action="store_true", help="CPU, tiny batches, short windows: under a minute")
    p.add_argument("--budget-s", type=float, help="wall-clock budget for all sections (default 280, quick 40)")
    args = p.parse_args(argv)
    plan = QUICK if args.quick else FULL
    budget = Budget(args.budget_s or (40 if args.quick else 280))
    report = Report(args.outdir)
    report.data["plan"] = asdict(plan)
    report.section("decode", lambda: section_decode(plan, budget.share(plan.shares["decode"]), report))
    if plan.device == "cuda" and not torch.cuda.is_available():
        report.data["errors"].append({"section": "environment", "error": "no CUDA device (use --quick on a CPU)"})
        report.save()
        return 1
    device = torch.device(plan.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes per bucket: let cuDNN pick each conv's fastest kernel
    report.section("environment", lambda: section_environment(device))
    report.section("correctness", lambda: section_correctness(plan, device))
    for variant_id in plan.models:
        name = f"throughput:{variant_id}"
        report.section(name, lambda v=variant_id, n=name: section_throughput(v, plan, budget.share(plan.shares[n]),
                                                                             report))  # fmt: skip
    try:
        import service.replica.jpeg  # noqa: F401 - the service's settings need pydantic-settings and PyYAML
    except ImportError as exc:
        report.skip("replica decode", f"the service's dependencies are not installed here ({exc})")
    else:
        share = plan.shares["replica_decode"]
        report.section("replica_decode", lambda: section_replica_decode(plan, device, budget.share(share)))
    if device.type == "cuda":
        report.section("gpu_decode", lambda: section_gpu_decode(plan, budget.share(plan.shares["gpu_decode"]), report))
    else:
        report.skip("GPU decode", "no CUDA device")
    if plan.compile:
        measured = {v: report.data["sections"].get(f"throughput:{v}") for v in plan.models}
        report.section("compile", lambda: section_compile(plan, budget, report, measured))
    else:
        report.skip(
            "compile", "quick mode (minutes per batch size on a small CPU; tests/unit/model/test_fast_path.py compiles)"
        )
    report.section("derived", lambda: derive(report.data, plan))
    print(markdown(report.data), flush=True)
    failed = [
        k for k, c in (report.data["sections"].get("correctness") or {}).get("checks", {}).items() if not c["pass"]
    ]
    return 1 if failed or report.data["errors"] or "correctness" not in report.data["sections"] else 0


if __name__ == "__main__":
    sys.exit(main())
