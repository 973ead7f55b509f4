"""TorchLanes: which thread and how many torch threads each batch gets."""

import asyncio
import threading

import pytest
import torch

from service.replica.torch_lanes import TorchLanes


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the lanes set torch's process-wide default too


def _where() -> tuple[str, int]:
    return threading.current_thread().name, torch.get_num_threads()


def test_setup_and_a_lone_batch_run_on_the_wide_lane_with_every_thread():
    lanes = TorchLanes(lanes=2, threads=4)
    setup_thread, setup_threads = lanes.run_setup(_where)
    lone_thread, lone_threads = asyncio.run(lanes.run(_where))
    assert setup_thread.startswith("torch-wide") and lone_thread == setup_thread
    assert setup_threads == lone_threads == 4


def test_overlapping_batches_share_the_threads_and_only_the_wide_lane_goes_wide():
    lanes = TorchLanes(lanes=2, threads=4)
    first_started, release = threading.Event(), threading.Event()

    def first() -> tuple[str, int]:
        first_started.set()
        release.wait(10)
        return _where()

    def second() -> tuple[str, int]:
        release.set()
        return _where()

    async def overlap() -> list[tuple[str, int]]:
        running = asyncio.ensure_future(lanes.run(first))
        await asyncio.to_thread(first_started.wait, 10)
        return [await lanes.run(second), await running]

    (second_thread, second_threads), (first_thread, first_threads) = asyncio.run(overlap())
    assert first_thread.startswith("torch-wide") and first_threads == 4
    assert not second_thread.startswith("torch-wide") and second_threads == 2
    # With the wide lane free again, a lone batch gets every thread back.
    assert asyncio.run(lanes.run(_where)) == (first_thread, 4)


def test_one_lane_never_shares():
    lanes = TorchLanes(lanes=1, threads=3)
    assert lanes.threads_shared == 3
    assert asyncio.run(lanes.run(_where))[1] == 3
