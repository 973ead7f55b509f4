"""CPU seconds by role (model replica, gateway, HTTP proxy, Ray's own processes, load generator).

On a machine where the service and its load generator share the cores, where the CPU goes per request
says what bounds the throughput: whatever the model replica does not get is spent by someone else.
"""

from __future__ import annotations

import os
from collections import Counter

import psutil

# Substrings of Ray's process titles, first match wins.
ROLES = (
    ("ServeReplica:hornet:hornet-", "model replica"),
    ("ServeReplica:hornet:Gateway", "gateway"),
    ("ProxyActor", "HTTP proxy"),
    ("ServeController", "Ray (controller, GCS, raylet, agents)"),
    ("gcs_server", "Ray (controller, GCS, raylet, agents)"),
    ("raylet", "Ray (controller, GCS, raylet, agents)"),
    ("dashboard", "Ray (controller, GCS, raylet, agents)"),
    ("log_monitor", "Ray (controller, GCS, raylet, agents)"),
    ("ray::", "Ray (controller, GCS, raylet, agents)"),
)


def _role(process: psutil.Process) -> str | None:
    if process.pid == os.getpid():
        return "load generator (this process)"
    title = " ".join(process.cmdline())
    return next((role for key, role in ROLES if key in title), None)


def cpu_seconds_by_role() -> Counter[str]:
    """User + system CPU seconds so far of every process on the machine that has a role."""
    totals: Counter[str] = Counter()
    for process in psutil.process_iter():
        try:
            role = _role(process)
            if role:
                times = process.cpu_times()
                totals[role] += times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return totals
