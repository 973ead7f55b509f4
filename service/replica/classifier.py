"""The classifier deployment: one per enabled variant, a batched HorNet on a GPU or the CPU."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve

from model import CheckpointError
from service.config import LiveBatchSettings, VariantSettings
from service.http.schemas import ModelInfo
from service.metrics import ClassifierMetrics
from service.replica.predictor import load_predictor
from service.replica.torch_lanes import TorchLanes
from service.replica.weights import WeightsUnavailable

log = logging.getLogger("ray.serve")


class ModelNotLoaded(RuntimeError):
    """Raised to callers of a replica whose model failed to load (the reason is in the message)."""


@dataclass(frozen=True)
class Classification:
    """A replica's answer for one image: small, so it crosses Ray cheaply."""

    indices: list[int]
    scores: list[float]
    queue_s: float
    inference_s: float


@serve.deployment
class Classifier:
    """Loads once (weights, precision, device: a change means a new replica); batch size and wait come
    from the deployment's `user_config` through `reconfigure`, which Serve calls after `__init__` and on
    every config change, so they change on running replicas."""

    def __init__(self, settings: VariantSettings) -> None:
        cfg = settings.classifier
        self.model_id = settings.model_id
        self.metrics = ClassifierMetrics.create()
        self._batch = cfg.batch.live()
        self._warmed_up_to = 0
        self._in_flight = 0
        self._lanes = TorchLanes(cfg.batch.max_concurrent_batches, cfg.cpu_threads)
        self._batched = serve.batch(
            max_batch_size=self._batch.max_batch_size,
            batch_wait_timeout_s=self._batch.batch_wait_timeout_s,
            max_concurrent_batches=cfg.batch.max_concurrent_batches,
        )(self._run_batch)
        try:
            self.info = self._lanes.run_setup(lambda: self._load(settings))
        except (CheckpointError, WeightsUnavailable) as exc:
            # A bad checkpoint takes only this variant out: the replica stays up and says why, so the
            # other variants keep serving and /readyz, /v1/models and every request name the reason.
            log.error("%s FAILED TO LOAD: %s", self.model_id, exc)
            self.info = ModelInfo(id=self.model_id, ready=False, reason=str(exc), precision=cfg.precision)

    def _load(self, settings: VariantSettings) -> ModelInfo:
        loaded = load_predictor(settings)
        self.predictor = loaded.predictor
        return ModelInfo(
            id=self.model_id,
            ready=True,
            num_classes=loaded.num_classes,
            params=loaded.params,
            weights=loaded.weights_status,
            weights_source=loaded.weights.description,
            device=str(self.predictor.device),
            precision=self.predictor.precision,
            labels_file=settings.classifier.labels_file,
        )

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Applies new batching to this running replica; batch sizes not run before are warmed first."""
        self._batch = LiveBatchSettings.model_validate(user_config)
        if self.info.ready and self._batch.max_batch_size > self._warmed_up_to:
            sizes = list(range(self._warmed_up_to + 1, self._batch.max_batch_size + 1))
            started = time.perf_counter()
            self._lanes.run_setup(lambda: self.predictor.warmup(sizes))
            log.info("%s: warmed batch sizes %d..%d in %.1fs", self.model_id, sizes[0], sizes[-1],
                     time.perf_counter() - started)  # fmt: skip
            self._warmed_up_to = self._batch.max_batch_size
        self._batched.set_max_batch_size(self._batch.max_batch_size)
        log.info("%s: batching %s", self.model_id, self._batch)

    def describe(self) -> ModelInfo:
        return self.info

    async def classify(self, pixels: np.ndarray, top_k: int) -> Classification:
        if not self.info.ready:
            raise ModelNotLoaded(f"{self.model_id} failed to load: {self.info.reason}")
        # Adaptive batch wait: a request that arrives to an idle replica starts its batch at once (no
        # latency paid for company that is not coming); under load the configured wait gathers batches.
        self._batched.set_batch_wait_timeout_s(self._batch.batch_wait_timeout_s if self._in_flight else 0.0)
        self._in_flight += 1
        try:
            return await self._batched(pixels, top_k, time.perf_counter())
        finally:
            self._in_flight -= 1

    async def _run_batch(
        self, pixels: list[np.ndarray], top_ks: list[int], arrived: list[float]
    ) -> list[Classification]:
        started = time.perf_counter()
        batch = np.stack(pixels)
        indices, scores = await self._lanes.run(lambda: self.predictor.predict(batch, max(top_ks)))
        inference_s = time.perf_counter() - started
        tags = {"model": self.model_id}
        self.metrics.inference.observe(inference_s, tags=tags)
        self.metrics.batch_size.observe(len(pixels), tags=tags)
        results = []
        for i, (k, t0) in enumerate(zip(top_ks, arrived, strict=True)):
            self.metrics.queue_wait.observe(started - t0, tags=tags)
            results.append(Classification(indices[i, :k].tolist(), scores[i, :k].tolist(), started - t0, inference_s))
        return results
