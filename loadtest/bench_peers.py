"""hornet-serve against LitServe and NVIDIA Triton, each wrapping this project's predictor and CPU decode.

    python -m loadtest.bench_peers --model hornet-t        (make bench-peers)

Each peer (loadtest/peers/) runs in its own process under `.venv-peers/bin/python` (PyTriton pins numpy < 2):
the same `model.BatchPredictor` as the service (precision `auto` for the CPU, channels_last, random weights),
the gateway's default CPU decode (`service.decoding.DecodeRules`: JPEG draft, margin 2), batches of up to 8
gathered for up to 20 ms. Every server gets the same closed-loop load (loadtest.http_load) with the same
1024x768 JPEG photos as `loadtest.bench`: multipart uploads to hornet-serve and LitServe, and to Triton what
tritonclient.http sends (its binary tensor extension). Before measuring, each peer's top-5 for every photo is
checked against the predictor in this process. hornet-serve itself is measured by `loadtest.bench_service
--mode shipped` (started as `hornet-serve` starts it). One table (images/s and latency at the lowest and
highest concurrency), the ratios hornet-serve / peer at the highest, CPU ms per answered request by process;
then Triton's perf_analyzer (loadtest/perf_analyzer.py) against Triton over HTTP and against hornet-serve over
HTTP and gRPC, one table; JSON under --out. `--rounds N` measures every server N times, interleaved (each round in
another order), and prints each server's range and the ratios round by round: on a shared VM whose speed drifts
by 25% within an hour, servers measured minutes apart differ by as much as the servers themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
import psutil

from loadtest import perf_analyzer
from loadtest.bench_service import MODES
from loadtest.http_load import closed_loop, free_port, multipart, summarize, triton_bytes_body, wait_ready
from loadtest.machine import describe
from model import get_variant, resolve_precision
from service.config import Settings
from tests.support.images import encode, photo

REPO = Path(__file__).resolve().parent.parent
LOAD_GENERATOR = "load generator (this process)"
HORNET_SERVE = "hornet-serve"
# perf_analyzer's stability criterion, in percent: three windows within it end a run. At its default (10) the runs at
# c=16 on the shared 2-core VM found no three stable windows in ten.
PERF_ANALYZER_STABILITY = 25
# Helpers any Python peer may start (PyTriton's shared memory and LitServe's queues each bring one).
COMMON_ROLES = (("multiprocessing.resource_tracker", "multiprocessing resource trackers"),)


@dataclass(frozen=True)
class Peer:
    """A peer server: its module under loadtest/peers/, how to reach it, and its processes' roles."""

    name: str
    module: str
    upload: str  # "multipart" or "triton-binary"
    root_role: str
    roles: tuple[tuple[str, str], ...] = ()  # (substring of the command line, role), first match wins
    forked_roles: tuple[str, ...] = ()  # children forked with the root's command line, by creation order

    def ready_path(self, model_id: str) -> str:
        return f"/v2/models/{model_id}/ready" if self.upload == "triton-binary" else "/health"

    def infer_path(self, model_id: str) -> str:
        return f"/v2/models/{model_id}/infer" if self.upload == "triton-binary" else "/predict"


PEERS = {
    "litserve": Peer(
        "LitServe", "loadtest.peers.litserve_peer", "multipart", "LitServe launcher",
        roles=(("multiprocessing.spawn", "LitServe inference worker (decode + model)"),),
        forked_roles=("LitServe request queues (mp.Manager)", "LitServe API server (uvicorn)"),
    ),
    "triton": Peer(
        "Triton", "loadtest.peers.triton_peer", "triton-binary", "PyTriton model proxy (decode + model)",
        roles=(("triton_python_backend_stub", "Triton Python backend stub"),
               ("tritonserver", "tritonserver (HTTP, dynamic batcher)"),
               ("multiprocessing.spawn", "PyTriton tensor store (the stub's mp manager)")),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Requests:
    bodies: list[bytes]
    content_type: str
    headers: dict[str, str]


def requests_for(peer: Peer, images: list[bytes]) -> Requests:
    if peer.upload == "triton-binary":
        built = [triton_bytes_body("image", img) for img in images]
        return Requests([body for body, _ in built], "application/octet-stream", built[0][1] if built else {})
    return Requests([multipart(img)[0] for img in images], multipart(b"")[1], {})


def triton_outputs(body: bytes, header_length: int) -> dict[str, np.ndarray]:
    """The outputs of a Triton HTTP answer with binary outputs (JSON header, then each output's raw bytes)."""
    header = json.loads(body[:header_length])
    dtypes = {"INT64": np.int64, "FP32": np.float32}
    outputs, offset = {}, header_length
    for out in header["outputs"]:
        size = out["parameters"]["binary_data_size"]
        data = np.frombuffer(body[offset : offset + size], dtype=dtypes[out["datatype"]])
        outputs[out["name"]] = data.reshape(out["shape"])
        offset += size
    return outputs


def top5(peer: Peer, response: httpx.Response) -> tuple[list[int], list[float]]:
    if peer.upload == "triton-binary":
        length = response.headers.get("inference-header-content-length")
        if length is None:  # all-JSON outputs
            outputs = {o["name"]: np.array(o["data"]) for o in response.json()["outputs"]}
        else:
            outputs = triton_outputs(response.content, int(length))
        return outputs["indices"].reshape(-1).tolist(), outputs["scores"].reshape(-1).tolist()
    predictions = response.json()["predictions"]
    return [p["class_index"] for p in predictions], [p["score"] for p in predictions]


def expected_top5(model: str, images: list[bytes]) -> list[tuple[list[int], list[float]]]:
    """What the peers must answer: the same predictor and decode in this process, one image at a time."""
    from loadtest.peers.common import PeerModel

    peer_model = PeerModel.load(model)
    answers = []
    for data in images:
        indices, scores = peer_model.predict([peer_model.pixels(data)])
        answers.append((indices[0].tolist(), scores[0].tolist()))
    return answers


def check_answers(peer: Peer, url: str, requests: Requests, expected: list[tuple[list[int], list[float]]]) -> dict:
    """One request per photo: the same top-5 classes as the in-process predictor, scores within 1e-4."""
    worst, mismatches = 0.0, []
    with httpx.Client(timeout=60) as client:
        for i, (body, want) in enumerate(zip(requests.bodies, expected, strict=True)):
            response = client.post(
                url, content=body, headers={"content-type": requests.content_type, **requests.headers}
            )
            if response.status_code != 200:
                raise RuntimeError(f"{peer.name}: photo {i}: HTTP {response.status_code}: {response.text[:300]}")
            indices, scores = top5(peer, response)
            if indices != want[0]:
                mismatches.append({"photo": i, "got": indices, "expected": want[0]})
            worst = max(worst, float(np.max(np.abs(np.array(scores) - np.array(want[1])))))
    if mismatches or worst > 1e-4:
        raise RuntimeError(f"{peer.name} answers differ from the predictor: {mismatches}, max |score diff| {worst:.2e}")
    return {"photos": len(expected), "top5_equal": True, "max_score_diff": worst}


class PeerProcess:
    """A peer server in its own session (so that stopping it reaches every process it started)."""

    def __init__(self, peer: Peer, python: str, model: str, log_path: Path) -> None:
        self.peer, self.port = peer, free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
        command = [python, "-m", peer.module, "--model", model, "--port", str(self.port)]
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # fmt: skip
        self.roles: dict[int, tuple[psutil.Process, str]] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def find_roles(self) -> dict[int, str]:
        """Every process of the peer (the tree under its main process) and its role; call once it is ready."""
        root = psutil.Process(self.process.pid)
        root_command = root.cmdline()
        forked = iter(self.peer.forked_roles)
        self.roles = {root.pid: (root, self.peer.root_role)}
        for child in sorted(root.children(recursive=True), key=lambda p: p.create_time()):
            command = child.cmdline()
            line = " ".join(command)
            role = next((r for key, r in (*self.peer.roles, *COMMON_ROLES) if key in line), None)
            if role is None and command == root_command:
                role = next(forked, None)
            self.roles[child.pid] = (child, role or f"{child.name()} (pid {child.pid})")
        return {pid: role for pid, (_, role) in self.roles.items()}

    def cpu_seconds(self) -> Counter[str]:
        """User + system CPU seconds so far, by role, of the peer's processes and of this process."""
        totals: Counter[str] = Counter()
        for process, role in [*self.roles.values(), (psutil.Process(), LOAD_GENERATOR)]:
            try:
                times = process.cpu_times()
                totals[role] += times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return totals

    def stop(self, timeout_s: float = 60) -> int | None:
        """SIGINT to the main process (both servers shut down on it), then whatever of the session is left is killed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                print(f"  {self.peer.name} did not stop within {timeout_s:.0f} s: killing it", flush=True)
        with contextlib.suppress(ProcessLookupError):  # none left
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.log.close()
        return self.process.returncode


def measure_peer(args: argparse.Namespace, peer: Peer, images: list[bytes], expected: list | None) -> dict:
    log_path = args.out / f"{peer.name.lower()}.log"
    server = PeerProcess(peer, args.peer_python, args.model, log_path)
    print(f"{peer.name}: starting (log: {log_path})", flush=True)
    try:
        started = time.perf_counter()
        wait_ready(server.base_url, args.start_timeout, server.process, path=peer.ready_path(args.model))
        ready_s = time.perf_counter() - started
        roles = server.find_roles()
        url = server.base_url + peer.infer_path(args.model)
        requests = requests_for(peer, images)
        answers = check_answers(peer, url, requests, expected) if expected is not None else None
        before = server.cpu_seconds()
        idle_s = min(5.0, args.seconds)
        time.sleep(idle_s)
        idle_ms_per_s = {role: s / idle_s * 1e3 for role, s in (server.cpu_seconds() - before).items()}
        rows = []
        for c in args.concurrency:
            load_args = (url, requests.bodies, c)
            asyncio.run(
                closed_loop(*load_args, min(3.0, args.seconds), requests.content_type, headers=requests.headers)
            )
            before = server.cpu_seconds()
            load = asyncio.run(closed_loop(*load_args, args.seconds, requests.content_type, headers=requests.headers))
            spent = server.cpu_seconds()
            spent.subtract(before)
            row = {"upload": peer.upload, **summarize(c, load)}
            row["cpu_ms_per_request"] = {role: s / max(1, row["requests"]) * 1e3 for role, s in spent.items()}
            rows.append(row)
            print(f"  {peer.name}: c={c} {row['images_per_s']:.1f} images/s, p50 {row['p50_ms']:.0f} ms, "
                  f"p99 {row['p99_ms']:.0f} ms, errors {row['errors']}", flush=True)  # fmt: skip
        analyzed = []
        if peer.upload == "triton-binary" and args.perf_analyzer_window_ms:  # it speaks the OIP: perf_analyzer too
            targets = {"http": f"127.0.0.1:{server.port}"}
            analyzed = perf_analyzer.run(targets, get_variant(args.model).id, images[0], args.concurrency,
                                         args.perf_analyzer_window_ms, PERF_ANALYZER_STABILITY)  # fmt: skip
    finally:
        status = server.stop()
    return {"server": peer.name, "upload": peer.upload, "ready_s": ready_s, "processes": roles, "answers": answers,
            "rows": rows, "idle_cpu_ms_per_s": idle_ms_per_s, "exit_status": status,
            "perf_analyzer": [asdict(row) for row in analyzed]}  # fmt: skip


def measure_hornet_serve(args: argparse.Namespace, image_files: list[Path]) -> dict:
    out = args.out / "service_shipped_multipart.json"
    command = [
        sys.executable, "-m", "loadtest.bench_service", "--mode", "shipped", "--model", args.model,
        "--images", *map(str, image_files), "--uploads", "multipart",
        "--concurrency", ",".join(map(str, args.concurrency)), "--seconds", str(args.seconds), "--json", str(out),
        "--settings", json.dumps(args.settings),
    ]  # fmt: skip
    print(f"{HORNET_SERVE}: starting (loadtest.bench_service --mode shipped)", flush=True)
    subprocess.run(command, cwd=REPO, env={**os.environ, **MODES["shipped"]}, check=True)
    run = json.loads(out.read_text())
    analyzed = []
    if args.perf_analyzer_window_ms:  # a service of its own: Ray reads its environment when it starts
        analyzed = perf_analyzer.serve(get_variant(args.model).id, image_files[0].read_bytes(), args.concurrency,
                                       args.perf_analyzer_window_ms, PERF_ANALYZER_STABILITY)  # fmt: skip
    return {"server": HORNET_SERVE, "upload": "multipart", "rows": run["rows"],
            "idle_cpu_ms_per_s": run["idle_cpu_ms_per_s"], "service": run,
            "perf_analyzer": [asdict(row) for row in analyzed]}  # fmt: skip


def measure_server(
    args: argparse.Namespace, name: str, images: list[bytes], image_files: list[Path], expected: list | None
) -> dict:
    if name == HORNET_SERVE:
        return measure_hornet_serve(args, image_files)
    return measure_peer(args, PEERS[name], images, expected)


def print_rounds(rounds: list[dict], high: int) -> None:
    """Each server's images/s at the top concurrency over the rounds, and hornet-serve / peer round by round."""
    print(f"\nimages/s at c={high} over {len(rounds)} interleaved rounds")
    for server in [result["server"] for result in rounds[0]["results"]]:
        values = [row["images_per_s"] for r in rounds for result in r["results"] if result["server"] == server
                  for row in result["rows"] if row["concurrency"] == high]  # fmt: skip
        print(f"  {server:14} {min(values):.1f}-{max(values):.1f}  ({', '.join(f'{v:.1f}' for v in values)})")
    for peer in {p for r in rounds for p in r["ratios_at_top_concurrency"]}:
        ratios = [r["ratios_at_top_concurrency"][peer] for r in rounds if peer in r["ratios_at_top_concurrency"]]
        print(
            f"  {HORNET_SERVE} / {peer}: {min(ratios):.2f}-{max(ratios):.2f}  ({', '.join(f'{v:.2f}' for v in ratios)})"
        )


def print_perf_analyzer(results: list[dict], model: str) -> None:
    """perf_analyzer's rows of every server it ran against, in one table (the same photo, the same run)."""
    rows = [(r["server"], row) for r in results for row in r.get("perf_analyzer", [])]
    if not rows:
        return
    print(f"\nperf_analyzer, {model}, one photo per request (the same run)")
    print("| server | protocol | concurrency | infer/s | p50 ms | p99 ms |\n| --- | --- | ---: | ---: | ---: | ---: |")
    for server, row in rows:
        print(f"| {server} | {row['protocol']} | {row['concurrency']} | {row['throughput']:.1f} | {row['p50_ms']:.1f} "
              f"| {row['p99_ms']:.1f} |")  # fmt: skip


def print_report(results: list[dict], low: int, high: int) -> dict[str, float]:
    header = (f"{'server':14} {'upload':14} {f'c={low} images/s':>14} {f'c={low} p50 ms':>12} "
              f"{f'c={high} images/s':>15} {f'c={high} p99 ms':>13} {'errors':>7}")  # fmt: skip
    print("\n" + header + "\n" + "-" * len(header))
    by_c = {r["server"]: {row["concurrency"]: row for row in r["rows"]} for r in results}
    for r in results:
        a, b = by_c[r["server"]][low], by_c[r["server"]][high]
        print(f"{r['server']:14} {r['upload']:14} {a['images_per_s']:>14.1f} {a['p50_ms']:>12.0f} "
              f"{b['images_per_s']:>15.1f} {b['p99_ms']:>13.0f} {a['errors'] + b['errors']:>7}")  # fmt: skip
    ratios = {}
    if HORNET_SERVE in by_c:
        ours = by_c[HORNET_SERVE][high]["images_per_s"]
        ratios = {peer: ours / rows[high]["images_per_s"] for peer, rows in by_c.items() if peer != HORNET_SERVE}
        cells = ", ".join(f"{HORNET_SERVE} / {peer} {ratio:.2f}" for peer, ratio in ratios.items())
        print(f"images/s at c={high}: {cells}")
    print(f"\nCPU ms per answered request by process (c={low} / c={high}; 2 cores = 2000 ms per second), idle ms/s:")
    for r in results:
        print(f"  {r['server']}")
        a, b = by_c[r["server"]][low], by_c[r["server"]][high]
        for role in sorted(set(a["cpu_ms_per_request"]) | set(b["cpu_ms_per_request"])):
            print(f"    {role:48} {a['cpu_ms_per_request'].get(role, 0):>8.1f} / {b['cpu_ms_per_request'].get(role, 0):>8.1f}"
                  f"   idle {r['idle_cpu_ms_per_s'].get(role, 0):>6.1f}")  # fmt: skip
    return ratios


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hornet-t")
    p.add_argument("--servers", type=lambda s: s.split(","), default=[*PEERS, HORNET_SERVE],
                   help=f"which to run, in this order: {', '.join([*PEERS, HORNET_SERVE])}")  # fmt: skip
    p.add_argument("--settings", type=json.loads, default={}, help="hornet-serve's settings on top of its defaults")
    p.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 16])
    p.add_argument("--seconds", type=float, default=15, help="each measurement window (after a 3 s warm-up)")
    p.add_argument("--image-size", default="1024x768", help="WxH of the JPEG photos sent")
    p.add_argument("--peer-python", default=str(REPO / ".venv-peers/bin/python"), help="the peers' interpreter")
    p.add_argument("--start-timeout", type=float, default=300, help="seconds a peer may take to become ready")
    p.add_argument("--no-answer-check", action="store_true", help="skip comparing the peers' top-5 with the predictor")
    p.add_argument("--perf-analyzer-window-ms", type=int, default=3000,
                   help="then Triton's perf_analyzer against Triton and hornet-serve (0: not run)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=1, help="measure every server this many times, interleaved")
    p.add_argument("--out", type=Path, default=Path("artifacts/bench/peers"))
    args = p.parse_args(argv)
    unknown = set(args.servers) - {*PEERS, HORNET_SERVE}
    if unknown:
        p.error(f"unknown servers: {sorted(unknown)}")
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.image_size.split("x"))
    images = [encode(photo(width, height, seed=100 + i), "JPEG", quality=90) for i in range(8)]
    image_files = []
    for i, data in enumerate(images):
        image_files.append(args.out / f"photo{i}.jpg")
        image_files[-1].write_bytes(data)
    machine = describe()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()), flush=True)
    cfg = Settings.model_validate({"models": [args.model]}).classifier_for(get_variant(args.model).id)
    precision = resolve_precision(cfg.precision, "cpu")
    print(f"{args.model}, {precision} (precision {cfg.precision}), channels_last={cfg.channels_last}, batches up to "
          f"{cfg.batch.max_batch_size} within {cfg.batch.batch_wait_timeout_s * 1e3:.0f} ms, random weights", flush=True)  # fmt: skip
    peers = [PEERS[name] for name in args.servers if name in PEERS]
    expected = expected_top5(args.model, images) if peers and not args.no_answer_check else None
    rounds = []
    for round_ in range(args.rounds):
        order = args.servers[round_ % len(args.servers) :] + args.servers[: round_ % len(args.servers)]
        print(f"\nround {round_ + 1} of {args.rounds}: {', '.join(order)}", flush=True)
        results = [measure_server(args, name, images, image_files, expected) for name in order]
        ratios = print_report(results, min(args.concurrency), max(args.concurrency))
        print_perf_analyzer(results, args.model)
        rounds.append({"order": order, "results": results, "ratios_at_top_concurrency": ratios})
        args.perf_analyzer_window_ms = 0  # its table once, in the first round
        result = {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()}, "precision": precision,
                  "rounds": rounds}  # fmt: skip
        path = args.out / f"peers_{args.model}.json"
        path.write_text(json.dumps(result, indent=2))  # after each round: a later failure keeps what was measured
    if args.rounds > 1:
        print_rounds(rounds, max(args.concurrency))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
