"""LaneBatcher: batches are cut when a lane is free, so images that arrive while every lane runs wait for one
full batch instead of queueing as many small ones."""

from __future__ import annotations

import asyncio

import pytest

from service.replica.batcher import LaneBatcher


class Recorder:
    """A run_batch that records each batch and holds it until released (`gate`), answering value * 10."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()

    async def __call__(self, values: list[int]) -> list[int | Exception]:
        self.batches.append(values)
        await self.gate.wait()
        return [ValueError(f"bad {v}") if v < 0 else v * 10 for v in values]


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_images_that_arrive_while_the_lanes_run_make_full_batches():
    async def go() -> tuple[list[list[int]], list[int]]:
        run = Recorder()
        batcher = LaneBatcher(run, lanes=1, max_batch_size=4, batch_wait_s=0.01)
        answers = batcher.submit([0])  # an idle replica: its batch starts at once
        await _settle()
        for v in range(1, 7):  # one request each, further apart than the batch wait, while the only lane runs
            answers += batcher.submit([v])
            await asyncio.sleep(0.03)
        run.gate.set()
        return run.batches, await asyncio.gather(*answers)

    batches, results = asyncio.run(go())
    assert batches == [[0], [1, 2, 3, 4], [5, 6]]
    assert results == [v * 10 for v in range(7)]


def test_a_lone_image_starts_at_once_and_a_second_lane_waits_for_company():
    async def go() -> tuple[float, list[list[int]]]:
        loop = asyncio.get_running_loop()
        run = Recorder()
        run.gate.set()
        batcher = LaneBatcher(run, lanes=2, max_batch_size=4, batch_wait_s=0.2)
        started = loop.time()
        await asyncio.gather(*batcher.submit([1]))
        alone_s = loop.time() - started
        run.gate.clear()  # the next batch holds its lane: a request that comes now waits up to 0.2 s for company
        first = batcher.submit([2])
        await _settle()
        second = batcher.submit([3])
        await asyncio.sleep(0.05)
        third = batcher.submit([4])
        run.gate.set()
        await asyncio.gather(*first, *second, *third)
        return alone_s, run.batches

    alone_s, batches = asyncio.run(go())
    assert alone_s < 0.1
    assert batches == [[1], [2], [3, 4]]


def test_an_error_for_one_image_reaches_its_caller_alone_and_a_failing_batch_fails_only_itself():
    async def go() -> tuple[list, list]:
        run = Recorder()
        run.gate.set()
        batcher = LaneBatcher(run, lanes=1, max_batch_size=4, batch_wait_s=0)
        one = await asyncio.gather(*batcher.submit([1, -2, 3]), return_exceptions=True)

        async def broken(values: list[int]) -> list[int | Exception]:
            raise RuntimeError("the device is gone")

        batcher._run_batch = broken
        two = await asyncio.gather(*batcher.submit([4]), return_exceptions=True)
        batcher._run_batch = run
        return one, [*two, *(await asyncio.gather(*batcher.submit([5])))]

    one, two = asyncio.run(go())
    assert one[0] == 10 and isinstance(one[1], ValueError) and one[2] == 30
    assert isinstance(two[0], RuntimeError) and two[1] == 50


def test_a_cancelled_request_is_not_run():
    async def go() -> list[list[int]]:
        run = Recorder()
        batcher = LaneBatcher(run, lanes=1, max_batch_size=4, batch_wait_s=0)
        batcher.submit([1])
        await _settle()
        (gone,) = batcher.submit([2])
        kept = batcher.submit([3])
        gone.cancel()
        run.gate.set()
        await asyncio.gather(*kept)
        with pytest.raises(asyncio.CancelledError):
            await gone
        return run.batches

    assert asyncio.run(go()) == [[1], [3]]
