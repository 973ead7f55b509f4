"""OS names for the threads that do a request's heavy work, so /proc (top -H, the bench) can tell them apart.

Python 3.11 names its threads for itself only; every OS thread of a Ray worker is called `ray::IDLE` or the like.
`loadtest/process_cpu.py` splits a process's CPU by these names: the forward (the torch lanes, whose OpenMP
threads inherit the name of the thread that starts them) and the decode (the gateway's lanes, a CPU replica's
decode pool).
"""

from __future__ import annotations

import ctypes
import sys

FORWARD = "hornet-forward"
DECODE = "hornet-decode"
_PR_SET_NAME = 15


def name_this_thread(name: str) -> None:
    """Linux only (elsewhere nothing); at most 15 bytes are kept."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
