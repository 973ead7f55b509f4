"""Helpers the unit and integration tests share: polling, the service's JSON error check (a free port: loadtest.http_load)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


def poll(condition: Callable[[], T], timeout_s: float = 30, interval_s: float = 0.5) -> T:
    """The first truthy value of `condition()` within the timeout, else its last value."""
    deadline = time.time() + timeout_s
    while True:
        value = condition()
        if value or time.time() > deadline:
            return value
        time.sleep(interval_s)


def api_error(response: httpx.Response, status: int, error_type: str) -> dict:
    """The body's `error` object, after checking the status, the type and that message and request id are set."""
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["type"] == error_type and body["message"] and body["request_id"], body
    return body
