"""Batch-size buckets and the reusable host buffers a batch is staged in.

A replica with buckets runs only a few fixed batch shapes: a batch of n images is padded up to the smallest
bucket >= n. Fixed shapes are what CUDA graphs and compiled kernels need, and they keep cuDNN's algorithm
choice and the allocator's blocks stable.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch


def check_buckets(buckets: Sequence[int]) -> list[int]:
    """Sorted, distinct, positive bucket sizes (a ValueError names what is wrong)."""
    sizes = sorted(set(buckets))
    if not sizes or sizes[0] < 1:
        raise ValueError(f"buckets must be positive batch sizes, got {list(buckets)}")
    return sizes


def bucket_for(n: int, buckets: Sequence[int] | None) -> int:
    """The batch size that n images run at: the smallest bucket >= n (n itself without buckets)."""
    if buckets is None:
        return n
    for size in buckets:
        if size >= n:
            return size
    raise ValueError(f"a batch of {n} is larger than the largest bucket ({buckets[-1]})")


class StagingPool:
    """Host uint8 batches reused across calls, a free list per batch size; page-locked (pinned) for a CUDA
    device so the copy to the GPU can run asynchronously. Concurrent callers each take their own buffer."""

    def __init__(self, image_shape: tuple[int, ...], pin_memory: bool) -> None:
        self.image_shape = image_shape
        self.pin_memory = pin_memory
        self._free: dict[int, list[torch.Tensor]] = {}
        self._lock = threading.Lock()
        self.allocated = 0

    @contextmanager
    def take(self, size: int) -> Iterator[torch.Tensor]:
        with self._lock:
            free = self._free.setdefault(size, [])
            buffer = free.pop() if free else None
        if buffer is None:
            buffer = torch.empty((size, *self.image_shape), dtype=torch.uint8, pin_memory=self.pin_memory)
            self.allocated += 1
        try:
            yield buffer
        finally:
            with self._lock:
                self._free[size].append(buffer)
