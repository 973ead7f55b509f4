"""ReplicaCounts: one question to Serve's controller for any number of concurrent callers, at most once per
max_age_s, answered off the event loop."""

from __future__ import annotations

import asyncio
import threading
import time

from service.http.replica_counts import UNKNOWN, ReplicaCounts, Replicas


class Controller:
    """A stand-in for serve.status() by deployment: counts the questions and the threads they came from."""

    def __init__(self, delay_s: float = 0.05) -> None:
        self.delay_s = delay_s
        self.asked: list[str] = []
        self.threads: set[int] = set()

    def __call__(self, app_name: str) -> dict[str, Replicas]:
        self.asked.append(app_name)
        self.threads.add(threading.get_ident())
        time.sleep(self.delay_s)  # blocks, as the controller's answer does
        return {"hornet-t": Replicas(running=0, cold=True)}


def test_concurrent_callers_share_one_question_asked_off_the_event_loop():
    controller = Controller()
    counts = ReplicaCounts("hornet", ask=controller)

    async def many() -> list[Replicas]:
        return await asyncio.gather(*(counts.of("hornet-t") for _ in range(20)))

    assert asyncio.run(many()) == [Replicas(running=0, cold=True)] * 20
    assert controller.asked == ["hornet"] and threading.get_ident() not in controller.threads


def test_an_answer_is_reused_within_max_age_then_asked_again():
    controller = Controller(delay_s=0)
    counts = ReplicaCounts("hornet", max_age_s=0.2, ask=controller)

    async def twice_then_later() -> Replicas:
        await counts.get()
        await counts.get()
        assert len(controller.asked) == 1
        await asyncio.sleep(0.25)
        await counts.get()
        return await counts.of("hornet-b")

    assert asyncio.run(twice_then_later()) == UNKNOWN  # a deployment Serve does not list: not running, not cold
    assert len(controller.asked) == 2
