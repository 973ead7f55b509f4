"""The stop's drain (service.daemon.local.drain_gateways) on the session's service: the drain only waits (the stop comes
after it), so the service serves on and the test watches it wait for requests in flight."""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from service.daemon.local import drain_gateways

from .live import JPEG, JPEG_HEADERS

# hornet-l-gf384 answers one image at a time on one CPU thread: its requests stay in flight for seconds.
REQUESTS = ["hornet-l-gf384"] * 3 + ["hornet-t"] * 9


def test_the_drain_returns_only_once_every_request_in_flight_is_answered(service, caplog):
    """Requests sent from just before the drain began until a second into it (on their way when it began): each
    gets its 200 before the drain returns."""

    def classify(position: int, model: str) -> tuple[int, float]:
        time.sleep(position * 0.1)
        answer = httpx.post(f"{service.base_url}/v1/classify?model={model}", content=JPEG, headers=JPEG_HEADERS,
                            timeout=120)  # fmt: skip
        return answer.status_code, time.monotonic()

    with caplog.at_level(logging.INFO, logger="service.daemon.local"), ThreadPoolExecutor(len(REQUESTS)) as pool:
        answers = [pool.submit(classify, position, model) for position, model in enumerate(REQUESTS)]
        time.sleep(0.2)
        drain_gateways(service.settings.app_name, timeout_s=120)
        drained = time.monotonic()
        outcomes = [answer.result() for answer in answers]
    assert [status for status, _ in outcomes] == [200] * len(REQUESTS)
    assert max(answered for _, answered in outcomes) < drained
    in_flight_at_start = int(re.search(r"(\d+) requests in flight", caplog.text)[1])
    assert in_flight_at_start > 0, caplog.text
    assert "(0 requests still in flight)" in caplog.text
