"""`hornet-serve` as a daemon: start time, CPU while idle (by process role), stop time, what is left behind.

    python -m loadtest.bench_daemon --args "--config deploy/config/local.yaml --weights random" --stop group

Starts `hornet-serve` as a user would (its own session, so that a signal can go to its whole process group),
waits until it says it is ready, samples the CPU of every process it started for --idle-s seconds with no
requests, then stops it (SIGTERM to its pid, or to its process group as `timeout` and many supervisors do)
and times the exit. Prints one table row per run; --json appends the rows to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

from loadtest.http_load import free_port
from loadtest.process_cpu import role_of

READY_LINE = "hornet-serve ready on"


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


# Ray's agents told apart (loadtest.process_cpu puts them in one role).
RAY_PARTS = (("dashboard/agent.py", "dashboard agent"), ("runtime_env/agent", "runtime env agent"),
             ("log_monitor", "log monitor"), ("service.daemon.cli", "hornet-serve"))  # fmt: skip


def _role(process: psutil.Process) -> str:
    title = " ".join(process.cmdline())
    part = next((name for key, name in RAY_PARTS if key in title), None)
    return part or role_of(process) or process.name()


def _cpu_by_role(processes: list[psutil.Process]) -> Counter[str]:
    seconds: Counter[str] = Counter()
    for process in processes:
        try:
            times = process.cpu_times()
            seconds[_role(process)] += times.user + times.system
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return seconds


def run_once(args: list[str], idle_s: float, stop: str, timeout_s: float) -> dict:
    port = free_port()
    env = {**os.environ, "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
           "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port())}  # fmt: skip
    command = [str(Path(sys.executable).with_name("hornet-serve")), *args, "--port", str(port),
               "--metrics-port", str(free_port())]  # fmt: skip
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        try:
            while READY_LINE not in Path(log.name).read_text():
                if proc.poll() is not None or time.monotonic() - started > timeout_s:
                    raise RuntimeError(f"hornet-serve did not get ready:\n{Path(log.name).read_text()[-3000:]}")
                time.sleep(0.2)
            ready_s = time.monotonic() - started
            time.sleep(5)  # warm-up traffic of Serve's own (first metrics pushes, health checks) settles
            family = _descendants(proc.pid)
            before = _cpu_by_role(family)
            time.sleep(idle_s)
            idle = {role: (s - before.get(role, 0)) / idle_s * 1e3 for role, s in _cpu_by_role(family).items()}
            stopping = time.monotonic()
            if stop == "group":
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=timeout_s)
            stop_s = time.monotonic() - stopping
            _, left = psutil.wait_procs(family, timeout=10)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return {
        "args": " ".join(args), "stop": stop, "ready_s": round(ready_s, 1), "stop_s": round(stop_s, 1),
        "exit_status": code, "left_behind": sorted(p.name() for p in left),
        "idle_cpu_ms_per_s": round(sum(idle.values()), 1),
        "idle_by_role": {role: round(ms, 1) for role, ms in sorted(idle.items(), key=lambda kv: -kv[1]) if ms >= 0.5},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--args", action="append", required=True, help="hornet-serve's arguments (repeatable)")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for every run (e.g. a Ray knob to try)")
    parser.add_argument("--stop", choices=["pid", "group"], default="group", help="whom SIGTERM goes to")
    parser.add_argument("--idle-s", type=float, default=20, help="seconds of idle CPU sampling")
    parser.add_argument("--timeout-s", type=float, default=600)
    parser.add_argument("--json", type=Path, help="append the rows to this JSON file")
    options = parser.parse_args()
    os.environ.update(dict(item.split("=", 1) for item in options.env))
    rows = [run_once(shlex.split(a), options.idle_s, options.stop, options.timeout_s) for a in options.args]
    print(f"{'hornet-serve arguments':<58} {'ready s':>8} {'idle CPU ms/s':>14} {'stop s':>7} {'exit':>5}  left")
    for row in rows:
        print(f"{row['args']:<58} {row['ready_s']:>8} {row['idle_cpu_ms_per_s']:>14} {row['stop_s']:>7} "
              f"{row['exit_status']:>5}  {', '.join(row['left_behind']) or 'nothing'}")  # fmt: skip
        print("    idle CPU by process, ms/s: " + ", ".join(f"{r} {ms}" for r, ms in row["idle_by_role"].items()))
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        previous = json.loads(options.json.read_text()) if options.json.exists() else []
        options.json.write_text(json.dumps(previous + rows, indent=2))


if __name__ == "__main__":
    main()
