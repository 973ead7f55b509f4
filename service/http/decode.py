"""Decoding in the gateway: off the event loop, in two bounded lanes per replica.

Every upload is opened (header only: format, pixel limit, decode budget) on the light lane. Its pixels are
then decoded on the light lane too, unless there are more than `heavy_decode_pixels` of them: those take
the heavy lane, a thread of its own at a lower CPU priority. A stream of costly images (decompression bombs
just under their budget) can then hold neither every decode thread nor the CPU the model replicas need, and
each lane answers 503 at once when its threads and its queue are full instead of growing a backlog.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from model import Preprocessing
from model.preprocess import exif_orientation
from service.config import GatewaySettings
from service.decoding import DecodeRules, device_decodable
from service.replica.jpeg import EncodedJpeg
from service.thread_names import DECODE, name_this_thread

T = TypeVar("T")
M_ARENA_MAX = -8  # glibc's malloc.h


def cap_malloc_arenas(arenas: int) -> bool:
    """Limit glibc to `arenas` malloc arenas in this process; False where libc is not glibc.

    glibc gives each new thread that allocates an arena of its own (up to 8 per core) and keeps what is freed
    in it for reuse: decode threads handling multi-megabyte images each hold a high-water mark of their own.
    Two arenas keep less memory at the same speed; a fixed M_MMAP_THRESHOLD keeps even less but decodes every
    big image into a fresh mmap, which is slower (docs/performance.md#measurements-behind-the-codes-settings)."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


class DecodeQueueFull(Exception):
    """A lane's threads and queue are all taken."""


def _start_thread(nice: int) -> None:
    """Runs in each new thread of a lane: its OS name, and its niceness (Linux gives every thread its own; only
    ever raised, which needs no privilege)."""
    name_this_thread(DECODE)
    if nice:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + nice))


class Lane:
    """A thread pool that admits at most `threads + queue` jobs; a job counts until its thread is done with it,
    even when the request that wanted it is gone."""

    def __init__(self, name: str, threads: int, queue: int, nice: int = 0) -> None:
        self.name = name
        self.capacity = threads + queue
        self.admitted = 0
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=name, initializer=_start_thread,
                                        initargs=(nice,))  # fmt: skip

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self.admitted >= self.capacity:
            raise DecodeQueueFull(f"the {self.name} queue is full ({self.capacity} images)")
        loop = asyncio.get_running_loop()
        future = self._pool.submit(fn, *args)
        self.admitted += 1
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release))
        return await asyncio.wrap_future(future)  # cancelled while queued: the job never starts

    def _release(self) -> None:
        self.admitted -= 1


class Decoder:
    def __init__(self, gateway: GatewaySettings, rules: DecodeRules) -> None:
        self.light = Lane("decode", gateway.decode_threads, gateway.decode_queue)
        self.heavy = Lane("decode-heavy", gateway.heavy_decode_threads, gateway.heavy_decode_queue,
                          gateway.heavy_decode_nice)  # fmt: skip
        self.heavy_pixels = gateway.heavy_decode_pixels
        self.rules = rules

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Another CPU-bound step of a request (parsing an OIP infer body) on the light lane, off the event loop."""
        return await self.light.run(fn, *args)

    async def prepare(self, data: bytes, recipe: Preprocessing, replica_decodes: bool) -> np.ndarray | EncodedJpeg:
        """Bytes -> what the classifier takes: uint8 (S, S, 3) for the recipe, or, where the replica decodes and
        the upload is a JPEG its device decoder takes, the bytes and their orientation (the header checked here
        all the same). Raises the model's ImageDecodeError / ImageTooLargeError (DecodeTimeoutError among them)
        and DecodeQueueFull."""
        image, plan = await self.light.run(self.rules.open, data, recipe)
        if replica_decodes and device_decodable(image, plan):
            return EncodedJpeg(data, exif_orientation(image))
        lane = self.heavy if plan.pixels > self.heavy_pixels else self.light
        return await lane.run(self.rules.finish, image, plan, recipe)
