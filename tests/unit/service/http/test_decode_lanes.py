"""The gateway's decode lanes (real threads, no Ray): bounded admission, cancellation, a niced heavy lane,
and the route an upload takes by its decode plan."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

import model
from model.preprocess import DECODE_BUDGET
from service.config import GatewaySettings, Limits
from service.decoding import DecodeRules
from service.http.decode import DecodeQueueFull, Decoder, Lane
from tests.support.images import encode, photo, webp_bomb


async def _blocked_jobs(lane: Lane, count: int, gate: threading.Event) -> list[asyncio.Task]:
    tasks = [asyncio.ensure_future(lane.run(gate.wait)) for _ in range(count)]
    await asyncio.sleep(0.05)
    return tasks


def test_a_lane_admits_its_threads_and_queue_then_refuses():
    async def scenario() -> None:
        lane, gate = Lane("test", threads=1, queue=1), threading.Event()
        tasks = await _blocked_jobs(lane, 2, gate)
        with pytest.raises(DecodeQueueFull, match="the test queue is full \\(2 images\\)"):
            await lane.run(gate.wait)
        gate.set()
        assert await asyncio.gather(*tasks) == [True, True]
        await asyncio.sleep(0.01)
        assert lane.admitted == 0 and await lane.run(lambda: 7) == 7

    asyncio.run(scenario())


def test_a_cancelled_queued_job_never_runs_and_a_running_one_keeps_its_slot():
    async def scenario() -> None:
        lane, gate, ran = Lane("test", threads=1, queue=1), threading.Event(), []
        running = asyncio.ensure_future(lane.run(gate.wait))
        queued = asyncio.ensure_future(lane.run(lambda: ran.append(1)))
        await asyncio.sleep(0.05)
        queued.cancel()
        running.cancel()  # the thread is still decoding: its slot stays taken until it is done
        await asyncio.sleep(0.05)
        assert lane.admitted == 1
        gate.set()
        await asyncio.sleep(0.05)
        assert lane.admitted == 0 and ran == []

    asyncio.run(scenario())


def test_the_heavy_lane_runs_at_its_niceness():
    async def scenario() -> tuple[int, int]:
        heavy, light = Lane("heavy", 1, 0, nice=7), Lane("light", 1, 0)

        def niceness() -> int:
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        return await heavy.run(niceness), await light.run(niceness)

    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert asyncio.run(scenario()) == (min(19, base + 7), base)


def _lane_used(decoder: Decoder, data: bytes) -> str:
    async def scenario() -> str:
        used = []
        for lane in (decoder.light, decoder.heavy):
            run = lane.run

            async def recording(fn, *args, _lane=lane, _run=run):
                used.append(_lane.name)
                return await _run(fn, *args)

            lane.run = recording
        pixels = await decoder.prepare(data, model.get_variant("hornet-t").preprocessing, replica_decodes=False)
        assert pixels.shape == (224, 224, 3)
        return "+".join(used)

    return asyncio.run(scenario())


def test_an_upload_is_opened_on_the_light_lane_and_decoded_on_the_lane_its_pixels_call_for():
    decoder = Decoder(GatewaySettings(heavy_decode_pixels=1_000_000), DecodeRules.from_settings(Limits(), 5))
    assert _lane_used(decoder, encode(photo(800, 600), "JPEG")) == "decode+decode"
    bomb = webp_bomb(1500)
    assert len(bomb) < 2000 and _lane_used(decoder, bomb) == "decode+decode-heavy"


def test_the_configured_budget_overrides_the_default_by_format():
    decoder = Decoder(GatewaySettings(), DecodeRules.from_settings(Limits(decode_budget={"PNG": 10_000}), 5))
    assert decoder.rules.budget["PNG"] == 10_000 and decoder.rules.budget["WEBP"] == DECODE_BUDGET["WEBP"]
