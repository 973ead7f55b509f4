"""The classifier deployment: one per enabled variant, a batched HorNet on a GPU or the CPU."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve
from ray.serve.exceptions import RayServeException

from model import CheckpointError, get_variant
from service.config import LiveBatchSettings, VariantSettings
from service.decoding import DecodeRules
from service.http.replica_counts import UNKNOWN, replicas_now
from service.http.schemas import ModelInfo
from service.metrics import ClassifierMetrics
from service.replica.batcher import LaneBatcher
from service.replica.jpeg import EncodedJpeg, Prepared, decode_on_cpu, prepare_batch
from service.replica.predictor import load_predictor
from service.replica.torch_lanes import TorchLanes
from service.replica.weights import WeightsUnavailable
from service.thread_names import DECODE, name_this_thread

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


@dataclass(frozen=True)
class _Queued:
    """One image waiting for its batch."""

    image: np.ndarray | EncodedJpeg
    top_k: int
    arrived: float


def _no_replica_running() -> bool:
    """Whether this replica's variant has no other replica running (False for a Classifier built outside Serve)."""
    try:
        context = serve.get_replica_context()
    except RayServeException:
        return False
    return replicas_now(context.app_name).get(context.deployment, UNKNOWN).running == 0


@serve.deployment
class Classifier:
    """Loads once (weights, precision, device: a change means a new replica); batch size and wait come
    from the deployment's `user_config` through `reconfigure`, which Serve calls after `__init__` and on
    every config change, so they change on running replicas."""

    def __init__(self, settings: VariantSettings) -> None:
        # Asked first: a replica that starts while its variant has none running is a cold start (from zero replicas).
        self._starting: tuple[float, bool] | None = (time.perf_counter(), _no_replica_running())
        cfg = settings.classifier
        self.model_id = settings.model_id
        self.metrics = ClassifierMetrics.create()
        self._batch = cfg.batch.live()
        self._warmed_up_to = 0
        self._in_flight = 0
        self._lanes = TorchLanes(cfg.batch.max_concurrent_batches, cfg.cpu_threads)
        self._batcher: LaneBatcher[_Queued, Classification] = LaneBatcher(
            self._run_batch, cfg.batch.max_concurrent_batches, self._batch.max_batch_size,
            self._batch.batch_wait_timeout_s,
        )  # fmt: skip
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
        self.recipe = get_variant(settings.model_id).preprocessing
        self.rules = DecodeRules.for_variant(settings)
        decode = settings.classifier.decode
        if decode == "auto":  # on CPU too: docs/performance.md#where-a-requests-cpu-goes
            decode = "replica"
        on_cpu = decode == "replica" and self.predictor.device.type == "cpu"
        threads = settings.classifier.cpu_threads or os.cpu_count() or 1
        self._cpu_decode_pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="decode", initializer=name_this_thread, initargs=(DECODE,))
            if on_cpu
            else None
        )
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
            decode=decode,
        )

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Applies new batching to this running replica; batch sizes not run before are warmed first."""
        self._batch = LiveBatchSettings.model_validate(user_config)
        if self.info.ready and self._batch.max_batch_size > self._warmed_up_to:
            self._warm_up(self._warmed_up_to + 1, self._batch.max_batch_size)
            self._warmed_up_to = self._batch.max_batch_size
        self._batcher.max_batch_size = self._batch.max_batch_size
        self._batcher.batch_wait_s = self._batch.batch_wait_timeout_s
        log.info("%s: batching %s", self.model_id, self._batch)
        if self._starting is not None and self.info.ready:  # Serve's first call: the replica is warm and ready
            started, cold = self._starting
            start_s = time.perf_counter() - started
            self.metrics.replica_start.observe(start_s, tags={"model": self.model_id, "cold": str(cold).lower()})
            log.info("%s: replica ready %.1fs after its start (cold start: %s)", self.model_id, start_s, cold)
        self._starting = None

    def _warm_up(self, first: int, last: int) -> None:
        sizes = list(range(first, last + 1))
        if not self.predictor.shape_specific:  # one forward proves the model runs; more would only cost start time
            sizes = sizes[:1] if first == 1 else []
        if sizes:
            started = time.perf_counter()
            self._lanes.run_setup(lambda: self.predictor.warmup(sizes))
            log.info("%s: warmed batch sizes %s in %.1fs", self.model_id, sizes, time.perf_counter() - started)

    def describe(self) -> ModelInfo:
        return self.info

    def in_flight(self) -> int:
        """Images queued or running in this replica, for the stop's drain (service.daemon.local.drain_gateways)."""
        return self._in_flight

    async def classify(self, image: np.ndarray | EncodedJpeg, top_k: int) -> Classification:
        """Top-k for one image: the gateway's pixels, or a JPEG this replica decodes (ModelInfo.decode). An
        image that no decoder takes raises the model's ImageDecodeError (or ImageTooLargeError) for it alone."""
        (result,) = await self.classify_many([image], top_k)
        return result

    async def classify_many(self, images: list[np.ndarray | EncodedJpeg], top_k: int) -> list[Classification]:
        """Top-k for each image of one request, in order, in one call: all of them enter the batch queue before
        the next batch is cut, so they share batches. The first image that fails raises its error."""
        if not self.info.ready:
            raise ModelNotLoaded(f"{self.model_id} failed to load: {self.info.reason}")
        self._in_flight += len(images)
        arrived = time.perf_counter()
        try:
            answers = self._batcher.submit([_Queued(image, top_k, arrived) for image in images])
            results = await asyncio.gather(*answers, return_exceptions=True)
        finally:
            self._in_flight -= len(images)
        failed = next((result for result in results if isinstance(result, Exception)), None)
        if failed is not None:
            raise failed
        return results

    async def _run_batch(self, queued: list[_Queued]) -> list[Classification | Exception]:
        started = time.perf_counter()
        images = [q.image for q in queued]
        top_ks = [q.top_k for q in queued]

        def run() -> tuple[Prepared, np.ndarray, np.ndarray]:
            if self._cpu_decode_pool is not None:
                prepared = decode_on_cpu(images, self.recipe, self.rules, self._cpu_decode_pool)
            else:
                prepared = prepare_batch(images, self.recipe, self.predictor.device, self.rules)
            if not len(prepared.pixels):
                return prepared, np.empty((0, 0), np.int64), np.empty((0, 0), np.float32)
            return prepared, *self.predictor.predict(prepared.pixels, max(top_ks))

        prepared, indices, scores = await self._lanes.run(run)
        inference_s = time.perf_counter() - started
        tags = {"model": self.model_id}
        self.metrics.inference.observe(inference_s, tags=tags)
        self.metrics.batch_size.observe(len(images), tags=tags)
        if prepared.fallbacks:
            self.metrics.decode_fallbacks.inc(prepared.fallbacks, tags={**tags, "reason": "device_refused"})
        if prepared.failed:
            self.metrics.decode_fallbacks.inc(len(prepared.failed), tags={**tags, "reason": "undecodable"})
        results: list[Classification | Exception] = []
        row = 0
        for i, (k, t0) in enumerate((q.top_k, q.arrived) for q in queued):
            self.metrics.queue_wait.observe(started - t0, tags=tags)
            if i in prepared.failed:
                results.append(prepared.failed[i])
                continue
            results.append(
                Classification(indices[row, :k].tolist(), scores[row, :k].tolist(), started - t0, inference_s)
            )
            row += 1
        return results
