"""Where a replica's torch work runs on the CPU: all cores for a lone batch, a share each when batches overlap.

Two facts about torch's OpenMP runtime (libgomp) on a small CPU shape this (measured: docs/performance.md#measurements-behind-the-codes-settings):
- A batch that runs alone is fastest on every core, but two batches that overlap are faster on one
  thread each than queued on two (the barriers of a 2-thread team stall whenever another process
  takes a core).
- Every thread that opens a multi-threaded parallel region gets its own OpenMP team. Once a process
  holds more OpenMP threads than cores, libgomp stops spin-waiting at barriers, and a lone batch runs
  twice as slow. So only one thread, the "wide" lane, ever runs multi-threaded (it also loads and
  warms the model); the other lanes always run single-threaded shares.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from service.thread_names import FORWARD, name_this_thread

T = TypeVar("T")


class TorchLanes:
    def __init__(self, lanes: int, threads: int | None = None) -> None:
        self.threads_alone = threads or os.cpu_count() or 1
        self.threads_shared = max(1, self.threads_alone // lanes)
        named = {"initializer": name_this_thread, "initargs": (FORWARD,)}
        self._wide = ThreadPoolExecutor(1, thread_name_prefix="torch-wide", **named)
        self._narrow = ThreadPoolExecutor(max(1, lanes - 1), thread_name_prefix="torch", **named)
        self._wide_busy = False
        self._running = 0

    def run_setup(self, fn: Callable[[], T]) -> T:
        """Blocking: model load and warm-up, on the wide lane with every thread."""
        return self._wide.submit(self._with_threads, self.threads_alone, fn).result()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run one batch off the event loop (torch drops the GIL, so the loop keeps gathering batches)."""
        alone = self._running == 0
        use_wide = not self._wide_busy
        threads = self.threads_alone if alone and use_wide else self.threads_shared
        self._running += 1
        self._wide_busy |= use_wide
        try:
            executor = self._wide if use_wide else self._narrow
            return await asyncio.get_running_loop().run_in_executor(executor, self._with_threads, threads, fn)
        finally:
            self._running -= 1
            if use_wide:
                self._wide_busy = False

    @staticmethod
    def _with_threads(threads: int, fn: Callable[[], T]) -> T:
        # Per calling thread under OpenMP, once torch has initialised this thread's setting: its first
        # parallel op copies torch's process-wide value (the last one any thread set), so trigger that first.
        torch.get_num_threads()
        torch.set_num_threads(threads)
        return fn()
