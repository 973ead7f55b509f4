"""The bench splits a process's CPU by the OS names of its threads (service/thread_names.py)."""

from __future__ import annotations

import threading
import time

import psutil

from loadtest.process_cpu import named_thread_seconds
from service.thread_names import DECODE, FORWARD, name_this_thread


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_the_cpu_of_named_threads_is_told_apart_from_the_rest_of_the_process():
    spun, done = threading.Event(), threading.Event()

    def forward() -> None:
        name_this_thread(FORWARD)
        _spin(0.3)
        spun.set()
        done.wait()

    thread = threading.Thread(target=forward)
    thread.start()
    _spin(0.3)  # the main thread's CPU belongs to no part
    spun.wait()
    parts = named_thread_seconds(psutil.Process())
    done.set()
    thread.join()
    assert 0.25 <= parts["forward"] < 0.5 and parts["decode"] == 0
    assert len(DECODE.encode()) <= 15 and len(FORWARD.encode()) <= 15  # what Linux keeps of a thread's name
