"""The classifier deployment: one per enabled variant, a batched HorNet on a GPU or the CPU."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from ray import serve

from model import BatchPredictor, CheckpointError, create_model, get_variant, pick_device
from model.precision import resolve_precision
from service.config import ClassifierSettings, Settings
from service.metrics import ClassifierMetrics
from service.schemas import ModelInfo
from service.torch_lanes import TorchLanes
from service.weights import WeightsUnavailable, choose_weights

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
    batch_size: int


@serve.deployment
class Classifier:
    def __init__(self, model_id: str, settings: Settings) -> None:
        cfg = settings.classifier_for(model_id)
        self.model_id = model_id
        self.metrics = ClassifierMetrics.create()
        batch = cfg.batch
        self._batch_wait_s = batch.batch_wait_timeout_s
        self._in_flight = 0
        self._lanes = TorchLanes(batch.max_concurrent_batches, cfg.cpu_threads)
        self._batched = serve.batch(
            max_batch_size=batch.max_batch_size,
            batch_wait_timeout_s=batch.batch_wait_timeout_s,
            max_concurrent_batches=batch.max_concurrent_batches,
        )(self._run_batch)
        try:
            self.info = self._lanes.run_setup(lambda: self._load(model_id, settings, cfg))
        except (CheckpointError, WeightsUnavailable) as exc:
            # A bad checkpoint takes only this variant out: the replica stays up and says why, so the
            # other variants keep serving and /readyz, /v1/models and every request name the reason.
            log.error("%s FAILED TO LOAD: %s", model_id, exc)
            self.info = ModelInfo(id=model_id, ready=False, reason=str(exc), precision=cfg.precision)

    def _load(self, model_id: str, settings: Settings, cfg: ClassifierSettings) -> ModelInfo:
        variant = get_variant(model_id)
        device = pick_device(settings.device)
        precision = resolve_precision(cfg.precision, device)
        weights = choose_weights(settings, model_id)
        net = create_model(model_id, weights=weights.source)
        self.predictor = BatchPredictor(net, variant.preprocessing, device, precision, cfg.channels_last)
        started = time.perf_counter()
        self.predictor.warmup(list(range(1, cfg.batch.max_batch_size + 1)))
        log.info("%s ready on %s, precision %s (configured: %s), %s; warmed batch sizes 1..%d in %.1fs", model_id, device,
                 precision, cfg.precision, weights.description, cfg.batch.max_batch_size,
                 time.perf_counter() - started)  # fmt: skip
        return ModelInfo(
            id=model_id,
            ready=True,
            num_classes=net.num_classes,
            params=sum(p.numel() for p in net.parameters()),
            weights="random-init" if weights.source is None else "checkpoint",
            weights_source=weights.description,
            device=str(device),
            precision=precision,
            labels_file=cfg.labels_file,
        )

    def describe(self) -> ModelInfo:
        return self.info

    async def classify(self, pixels: np.ndarray, top_k: int) -> Classification:
        if not self.info.ready:
            raise ModelNotLoaded(f"{self.model_id} failed to load: {self.info.reason}")
        # Adaptive batch wait: a request that arrives to an idle replica starts its batch at once (no
        # latency paid for company that is not coming); under load the configured wait gathers batches.
        self._batched.set_batch_wait_timeout_s(self._batch_wait_s if self._in_flight else 0.0)
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
            results.append(
                Classification(indices[i, :k].tolist(), scores[i, :k].tolist(), started - t0, inference_s, len(pixels))
            )
        return results
