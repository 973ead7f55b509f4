"""One service measurement for the bench, in its own process: Ray reads its environment when it starts,
so each Ray mode (see `MODES`) gets a fresh process with that environment.

    python -m loadtest.bench_service --mode shipped --model hornet-t --json out.json

Starts the service exactly as `hornet-serve` does (`service.daemon.local.local_service`, default settings but
random weights), then runs the closed-loop load per upload kind and concurrency, with the CPU each
process role spent per answered request, and the empty Serve pipeline's latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from loadtest.http_load import closed_loop, free_port, multipart, summarize, wait_ready
from loadtest.process_cpu import cpu_seconds_by_role
from service.config import Settings

# Environment on top of service.daemon.ray_env.RAY_ENV for each mode the bench can compare.
MODES: dict[str, dict[str, str]] = {
    "shipped": {},
    # The Ray defaults this project ran before: Python HTTP proxy, actor calls, workers at nice 15.
    "python-proxy": {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0", "RAY_worker_niceness": "15"},
    # What `hornet-serve` shipped before HAProxy's dead-replica replay was in place.
    "no-haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "0"},
    "no-throughput-mode": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},
    "nice-15": {"RAY_worker_niceness": "15"},
    "split": {},
}  # fmt: skip
# Settings on top of the defaults for a mode: `split` is the deploy configs' topology (the default on one machine
# is colocated: docs/performance.md#colocated).
MODE_SETTINGS: dict[str, dict[str, str]] = {"split": {"topology": "split"}}


def run(args: argparse.Namespace) -> dict:
    from service.daemon.local import local_service

    overrides = {**MODE_SETTINGS.get(args.mode, {}), **json.loads(args.settings)}
    settings = Settings.model_validate({
        **overrides, "models": [args.model], "weights_policy": "random", "device": "cpu",
        "port": free_port(), "metrics_export_port": free_port(),
    })  # fmt: skip
    images = [Path(p).read_bytes() for p in args.images]
    boundary_type = multipart(b"")[1]
    uploads = {"raw": (images, "image/jpeg"), "multipart": ([multipart(img)[0] for img in images], boundary_type)}
    rows = []
    with local_service(settings, quiet=True) as base_url:
        wait_ready(base_url, timeout_s=300)
        url = f"{base_url}/v1/classify?model={args.model}"
        # What each role burns with no request at all (control loops, health checks, metrics), per second:
        # on a slow model this fixed cost, divided by few requests, would read as a per-request cost.
        before = cpu_seconds_by_role()
        time.sleep(args.seconds)
        idle_ms_per_s = {role: s / args.seconds * 1e3 for role, s in (cpu_seconds_by_role() - before).items()}
        for kind in args.uploads:
            bodies, content_type = uploads[kind]
            for c in args.concurrency:
                asyncio.run(closed_loop(url, bodies, c, min(3.0, args.seconds), content_type))  # warm-up
                before = cpu_seconds_by_role()
                load = asyncio.run(closed_loop(url, bodies, c, args.seconds, content_type))
                spent = cpu_seconds_by_role() - before
                row = {"upload": kind, **summarize(c, load)}
                row["cpu_ms_per_request"] = {role: s / max(1, row["requests"]) * 1e3 for role, s in spent.items()}
                row["marginal_cpu_ms_per_request"] = {
                    role: (s - idle_ms_per_s.get(role, 0) / 1e3 * load.elapsed_s) / max(1, row["requests"]) * 1e3
                    for role, s in spent.items()
                }
                rows.append(row)
                args.json.write_text(
                    json.dumps({"mode": args.mode, "rows": rows}, indent=2)
                )  # kept if a later step fails
                print(f"  {args.mode}: {kind} c={c} {row['images_per_s']:.1f} images/s, p50 {row['p50_ms']:.0f} ms",
                      flush=True)  # fmt: skip
        from loadtest.serve_floor import measure_floor

        floor = measure_floor(settings.port, images[0], min(8.0, args.seconds), max(args.concurrency))
    return {"mode": args.mode, "env": MODES[args.mode], "settings": settings.model_dump(mode="json"), "rows": rows,
            "idle_cpu_ms_per_s": idle_ms_per_s, "serve_floor": floor}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=sorted(MODES), default="shipped")
    p.add_argument("--model", default="hornet-t")
    p.add_argument("--settings", default="{}", help="JSON settings on top of the defaults")
    p.add_argument("--images", nargs="+", required=True, help="JPEG files to send")
    p.add_argument("--uploads", type=lambda s: s.split(","), default=["raw", "multipart"])
    p.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 16])
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args(argv)
    args.json.write_text(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
