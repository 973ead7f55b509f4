"""A variant's classifier inside the gateway's replica (`topology: colocated`), called as the gateway calls a
deployment handle (`classifier.classify.remote(image, top_k)`) but without Serve's hop between them: no router, no
gRPC, no serialization. On one machine that hop costs 2-3 ms of CPU per request (docs/performance.md#colocated)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from ray.serve.exceptions import BackPressureError

from service.config import LiveClassifierSettings, VariantSettings
from service.http.schemas import ModelInfo
from service.replica.classifier import Classification, Classifier

R = TypeVar("R")


class LocalMethod(Generic[R]):
    """`.remote(...)` runs the method as a task on this event loop: awaitable and cancellable, as a Serve response."""

    def __init__(self, method: Callable[..., R | Awaitable[R]]) -> None:
        self._method = method

    def remote(self, *args: Any) -> asyncio.Task[R]:
        return asyncio.ensure_future(self._call(*args))

    async def _call(self, *args: Any) -> R:
        result = self._method(*args)
        return await result if inspect.isawaitable(result) else result


class InProcessClassifier:
    """The Classifier deployment's class, built in this process; the methods the gateway calls. Its requests are
    bounded as Serve bounds a deployment's: past `max_ongoing_requests + max_queued_requests` at once (from the
    gateway's `user_config`, as the args leave them out), the call raises Serve's BackPressureError (the gateway's
    503)."""

    def __init__(self, settings: VariantSettings) -> None:
        self.classifier = Classifier.func_or_class(settings)
        self.capacity = settings.classifier.max_ongoing_requests + settings.classifier.max_queued_requests
        self.requests = 0
        self.describe: LocalMethod[ModelInfo] = LocalMethod(self.classifier.describe)
        self.classify: LocalMethod[Classification] = LocalMethod(self._bounded(self.classifier.classify))
        self.classify_many: LocalMethod[list[Classification]] = LocalMethod(
            self._bounded(self.classifier.classify_many)
        )

    def reconfigure(self, live: LiveClassifierSettings) -> None:
        self.classifier.reconfigure(live.batch.model_dump())
        self.capacity = live.max_ongoing_requests + live.max_queued_requests

    def _bounded(self, method: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        async def call(*args: Any) -> R:
            if self.requests >= self.capacity:
                raise BackPressureError(num_queued_requests=self.requests, max_queued_requests=self.capacity)
            self.requests += 1
            try:
                return await method(*args)
            finally:
                self.requests -= 1

        return call
