"""A replica's dynamic batcher: a batch is cut when a lane is free to run it, never before.

Ray Serve's `@serve.batch` cuts a batch when its wait ends and only then waits for a free lane
(`max_concurrent_batches`): with both lanes busy it queued batches of one or two images behind them. At 16
users on the 2-core CPU, 40% of hornet-t's batches held one image, each costing about twice the CPU of an image
in a batch of 8 (docs/performance.md#where-a-requests-cpu-goes). Here a free lane takes what is queued, up to
`max_batch_size`, as Triton's dynamic batcher does. One lane gathers at a time, so two free lanes never split
a batch between them.

The wait for company is adaptive: a first image that finds nothing running starts its batch at once (no
latency paid for company that is not coming); while another batch runs, the lane waits up to
`batch_wait_s` for a full batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Waiting(Generic[T, R]):
    value: T
    answer: asyncio.Future[R]


class LaneBatcher(Generic[T, R]):
    """`run_batch` gets the values of one batch and returns one result per value, or an exception for a value
    alone; an exception it raises fails the whole batch."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Awaitable[list[R | Exception]]],
        lanes: int,
        max_batch_size: int,
        batch_wait_s: float,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self._run_batch = run_batch
        self._lanes = lanes
        self._queue: deque[_Waiting[T, R]] = deque()
        self._running = 0  # batches that run now
        self._tasks: list[asyncio.Task[None]] = []
        self._arrived: asyncio.Event | None = None
        self._gathering: asyncio.Lock | None = None

    def submit(self, values: list[T]) -> list[asyncio.Future[R]]:
        """Queue the values of one request together, in order; each future gets its value's result."""
        loop = asyncio.get_running_loop()
        if self._arrived is None:  # the lanes live on the loop of the first request (the replica's)
            self._arrived, self._gathering = asyncio.Event(), asyncio.Lock()
            self._tasks = [loop.create_task(self._lane()) for _ in range(self._lanes)]
        waiting = [_Waiting(value, loop.create_future()) for value in values]
        self._queue.extend(waiting)
        self._arrived.set()
        return [w.answer for w in waiting]

    async def _lane(self) -> None:
        assert self._gathering is not None
        while True:
            async with self._gathering:
                batch = await self._gather()
            self._running += 1
            try:
                await self._run(batch)
            finally:
                self._running -= 1

    async def _gather(self) -> list[_Waiting[T, R]]:
        await self._queued(1)
        if len(self._queue) < self.max_batch_size and self._running and self.batch_wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queued(self.max_batch_size), self.batch_wait_s)
        batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch_size))]
        return [w for w in batch if not w.answer.done()]  # a cancelled request's images are not run

    async def _queued(self, count: int) -> None:
        assert self._arrived is not None
        while len(self._queue) < count:
            self._arrived.clear()
            await self._arrived.wait()

    async def _run(self, batch: list[_Waiting[T, R]]) -> None:
        if not batch:
            return
        try:
            results = await self._run_batch([w.value for w in batch])
        except Exception as exc:  # noqa: BLE001 - the batch's callers get the error, the lane serves on
            results = [exc] * len(batch)
        for waiting, result in zip(batch, results, strict=True):
            if waiting.answer.done():
                continue
            if isinstance(result, Exception):
                waiting.answer.set_exception(result)
            else:
                waiting.answer.set_result(result)
