"""A soak: the local service under a mixed Locust load for N minutes, sampled every minute.

    python -m loadtest.soak --minutes 30           # what `make soak` runs (SOAK_MINUTES=30)

Starts `hornet-serve` (deploy/config/local.yaml, random weights, its own ports), waits until it is ready,
then runs Locust headless (loadtest/locustfile.py: good photos raw and multipart, a share of bad requests
that must get their documented 4xx, two models). Every minute it records the RSS of every process of the
service (hornet-serve and everything it started: Ray's daemons, the proxy or HAProxy, every replica) and
the p50/p99 of the good requests in that minute. Writes under --out: rss.csv, latency.csv, requests.csv
(every request), soak.png, serve.log, and prints the check:

- RSS flat: after the warm-up (the first sixth of the run, at least one minute), no process of 100 MB or
  more, nor the total, grows by more than 10%; smaller processes are listed, not judged (a few MB is noise);
- zero unexpected errors: every good request answered 200 with five predictions, every bad one its 4xx.

Exit status 0 when both hold.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import psutil

from loadtest.http_load import free_port, wait_ready

GROWTH_LIMIT = 0.10
JUDGED_MB = 100
# Process titles -> a stable label (first match wins); anything else is labelled by its executable.
LABELS = (
    ("ServeReplica:hornet:Gateway", "gateway replica"),
    ("ServeReplica:hornet:", "model replica"),
    ("ProxyActor", "Serve proxy"),
    ("HAProxyManager", "HAProxy manager"),
    ("haproxy", "HAProxy"),
    ("ServeController", "Serve controller"),
    ("gcs_server", "GCS"),
    ("raylet", "raylet"),
    ("dashboard_agent", "dashboard agent"),
    ("runtime_env/agent", "runtime env agent"),
    ("log_monitor", "log monitor"),
    ("ray::IDLE", "idle Ray worker"),
    ("hornet-serve", "hornet-serve (driver)"),
)


@dataclass(frozen=True)
class Sample:
    minute: int
    pid: int
    label: str
    rss_mb: float
    anon_mb: float  # private memory: where a leak shows
    file_mb: float  # pages of mapped files (Python, torch and Ray's libraries): faulted in as code paths first run


def _memory_mb(pid: int) -> tuple[float, float, float]:
    """VmRSS, RssAnon and RssFile of /proc/<pid>/status, in MB: one read, so the three are of one moment."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "RssAnon", "RssFile"))


def _label(process: psutil.Process) -> str:
    args = process.cmdline()
    title = " ".join(args) or process.name()
    script = next((Path(arg).name for arg in args[1:] if arg.endswith(".py")), None)
    return next((label for key, label in LABELS if key in title), script or process.name())


def service_rss(root: psutil.Process, minute: int) -> list[Sample]:
    """RSS of hornet-serve and every process it started (Ray runs all of its processes below the driver)."""
    samples = []
    for process in [root, *root.children(recursive=True)]:
        try:
            samples.append(Sample(minute, process.pid, _label(process), *_memory_mb(process.pid)))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, FileNotFoundError):
            continue
    return samples


def _percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else None


def latency_by_minute(requests_csv: Path, started: float, minutes: int) -> list[dict]:
    """Per minute: good requests, their p50/p99 in ms, and unexpected errors (any request Locust failed)."""
    good: dict[int, list[float]] = defaultdict(list)
    failures: dict[int, int] = defaultdict(int)
    bad: dict[int, int] = defaultdict(int)
    for t, name, _status, ms, ok in csv.reader(requests_csv.open()):
        minute = min(minutes, int((float(t) - started) // 60) + 1)
        if ok != "1":
            failures[minute] += 1
        elif name.startswith("classify"):
            good[minute].append(float(ms))
        else:
            bad[minute] += 1
    return [{"minute": m, "good_requests": len(good[m]), "bad_requests": bad[m],
             "p50_ms": _percentile(good[m], 0.5), "p99_ms": _percentile(good[m], 0.99),
             "unexpected_errors": failures[m]} for m in range(1, minutes + 1)]  # fmt: skip


def rss_check(samples: list[Sample], warm_minute: int) -> tuple[list[str], bool]:
    """Lines of the RSS table (warm-up vs end, per process and in total) and whether RSS stayed flat."""
    last = max(s.minute for s in samples)
    at = {m: {s.pid: s for s in samples if s.minute == m} for m in (warm_minute, last)}
    lines, flat = [], True
    for pid, warm in sorted(at[warm_minute].items(), key=lambda kv: -kv[1].rss_mb):
        end = at[last].get(pid)
        if end is None:
            lines.append(f"  {warm.label:28} pid {pid:>7}  {warm.rss_mb:8.0f} MB -> gone")
            flat = flat and warm.rss_mb < JUDGED_MB
            continue
        growth = end.rss_mb / warm.rss_mb - 1
        judged = warm.rss_mb >= JUDGED_MB
        bad = judged and growth > GROWTH_LIMIT
        flat = flat and not bad
        verdict = "GREW" if bad else ("ok" if judged else "(not judged)")
        lines.append(
            f"  {warm.label:28} pid {pid:>7}  {warm.rss_mb:8.0f} -> {end.rss_mb:8.0f} MB  {growth:+6.1%}  {verdict}"
            f"  (anon {warm.anon_mb:.0f} -> {end.anon_mb:.0f}, files {warm.file_mb:.0f} -> {end.file_mb:.0f})"
        )
    for pid in at[last].keys() - at[warm_minute].keys():
        lines.append(f"  {at[last][pid].label:28} pid {pid:>7}  new after the warm-up: {at[last][pid].rss_mb:.0f} MB")
    total_warm = sum(s.rss_mb for s in at[warm_minute].values())
    total_end = sum(s.rss_mb for s in at[last].values())
    total_growth = total_end / total_warm - 1
    flat = flat and total_growth <= GROWTH_LIMIT
    lines.append(f"  {'total':28} {'':11}  {total_warm:8.0f} -> {total_end:8.0f} MB  {total_growth:+6.1%}")
    return lines, flat


def plot(samples: list[Sample], latency: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    for pid in sorted({s.pid for s in samples}):
        series = [s for s in samples if s.pid == pid]
        if max(s.rss_mb for s in series) >= JUDGED_MB:
            top.plot(
                [s.minute for s in series], [s.rss_mb for s in series], marker=".", label=f"{series[0].label} {pid}"
            )
    top.set_ylabel("RSS (MB)")
    top.set_title("RSS of the service's processes (those of 100 MB or more)")
    top.legend(fontsize=7, loc="upper left", ncol=2)
    minutes = [row["minute"] for row in latency]
    for key in ("p50_ms", "p99_ms"):
        bottom.plot(minutes, [row[key] if row[key] is not None else math.nan for row in latency], marker=".", label=key)
    bottom.set_ylabel("latency of good requests (ms)")
    bottom.set_yscale("log")
    bottom.set_xlabel("minute")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=int, default=30)
    # 4 users keep both cores busy; 8 (the first soaks) queued a hornet-l-gf384 request past the 30 s
    # inference limit (p99 32 s), which measures overload rather than a day of steady service.
    p.add_argument("--users", type=int, default=4)
    p.add_argument("--config", default="deploy/config/local.yaml")
    p.add_argument("--models", default="hornet-t:9,hornet-l-gf384:1", help="Locust's model mix")
    p.add_argument("--bad-share", default="0.1", help="share of deliberately bad requests")
    p.add_argument("--out", type=Path, default=Path("artifacts/soak"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    requests_csv = args.out / "requests.csv"
    requests_csv.write_text("")
    port, metrics_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    with (args.out / "serve.log").open("w") as serve_log:
        server = subprocess.Popen(
            [str(bin_dir / "hornet-serve"), "--config", args.config, "--weights", "random",
             "--port", str(port), "--metrics-port", str(metrics_port)],
            stdout=serve_log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_ready(url, timeout_s=600, server=server)
            print(f"service ready at {url}; soaking for {args.minutes} min with {args.users} users", flush=True)
            env = {**os.environ, "HORNET_LOAD_LOG": str(requests_csv), "HORNET_LOAD_MODELS": args.models,
                   "HORNET_LOAD_BAD_SHARE": args.bad_share}  # fmt: skip
            locust = subprocess.Popen(
                [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--host", url, "--headless",
                 "-u", str(args.users), "-r", "2", "-t", f"{args.minutes * 60 + 5}s", "--only-summary",
                 "--csv", str(args.out / "locust")],
                env=env, stdout=subprocess.DEVNULL, stderr=(args.out / "locust.log").open("w"),
            )  # fmt: skip
            root = psutil.Process(server.pid)
            started = time.time()
            samples = service_rss(root, 0)
            for minute in range(1, args.minutes + 1):
                time.sleep(max(0.0, started + 60 * minute - time.time()))
                samples += service_rss(root, minute)
                print(f"minute {minute}: service RSS {sum(s.rss_mb for s in samples if s.minute == minute):.0f} MB",
                      flush=True)  # fmt: skip
            locust.wait(timeout=120)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
    latency = latency_by_minute(requests_csv, started, args.minutes)
    write_csv(args.out / "rss.csv", [vars(s) for s in samples])
    write_csv(args.out / "latency.csv", latency)
    plot(samples, latency, args.out / "soak.png")
    warm_minute = max(1, args.minutes // 6)
    rss_lines, flat = rss_check(samples, warm_minute)
    errors = sum(row["unexpected_errors"] for row in latency)
    good = sum(row["good_requests"] for row in latency)
    print(f"\nRSS, minute {warm_minute} (after warm-up) -> minute {args.minutes}:")
    print("\n".join(rss_lines))
    print("\nminute  good  bad  p50 ms  p99 ms  unexpected errors")
    for row in latency:
        p50, p99 = (f"{row[k]:.0f}" if row[k] is not None else "-" for k in ("p50_ms", "p99_ms"))
        print(f"{row['minute']:6}  {row['good_requests']:4}  {row['bad_requests']:3}  {p50:>6}  {p99:>6}  "
              f"{row['unexpected_errors']}")  # fmt: skip
    print(f"\nRSS flat within {GROWTH_LIMIT:.0%} after warm-up: {'PASS' if flat else 'FAIL'}")
    print(f"unexpected errors: {errors} of {good} good requests and all bad ones: {'PASS' if errors == 0 else 'FAIL'}")
    print(f"wrote {args.out}/rss.csv, latency.csv, requests.csv, soak.png")
    return 0 if flat and errors == 0 and good > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
