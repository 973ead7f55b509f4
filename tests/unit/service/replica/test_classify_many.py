"""Classifier.classify_many without Ray: the real deployment class and its batcher, over a stand-in
predictor that records the batches it runs. A request's images must share a batch, not wait for one each."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from model import ImageDecodeError
from service.config import Settings
from service.replica import classifier as classifier_module
from service.replica.jpeg import EncodedJpeg


class StandInPredictor:
    device = torch.device("cpu")
    precision = "fp32"
    shape_specific = False

    def __init__(self) -> None:
        self.batches: list[int] = []

    def warmup(self, sizes: list[int]) -> None:
        pass

    def predict(self, pixels: torch.Tensor, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        self.batches.append(len(pixels))
        first = pixels[:, 0, 0, 0].to(torch.int64).numpy()  # each image's answer names it: class = its first pixel
        return first[:, None] + np.arange(top_k), np.full((len(pixels), top_k), 0.5, np.float32)


@pytest.fixture
def replica(monkeypatch) -> tuple[Any, StandInPredictor]:
    predictor = StandInPredictor()
    loaded = SimpleNamespace(predictor=predictor, num_classes=1000, params=1, weights_status="random-init",
                             weights=SimpleNamespace(description="stand-in"))  # fmt: skip
    monkeypatch.setattr(classifier_module, "load_predictor", lambda settings: loaded)
    batch = {"max_batch_size": 8, "batch_wait_timeout_s": 0.5}
    settings = Settings.model_validate(
        {"models": ["hornet-t"], "device": "cpu", "weights_policy": "random", "classifier": {"batch": batch}}
    )
    user_class = classifier_module.Classifier.func_or_class
    deployment = user_class(settings.variant("hornet-t"))
    deployment.reconfigure(settings.classifier.batch.live().model_dump())
    return deployment, predictor


def _image(value: int) -> np.ndarray:
    return np.full((224, 224, 3), value, np.uint8)


def test_a_requests_images_share_one_batch_at_once_and_answer_in_order(replica):
    deployment, predictor = replica

    async def go() -> tuple[list, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await deployment.classify_many([_image(v) for v in (7, 3, 9)], 2)
        return results, loop.time() - started

    results, took_s = asyncio.run(go())
    assert predictor.batches == [3]
    assert deployment.info.decode == "replica"  # `auto` on a CPU replica too
    assert [r.indices for r in results] == [[7, 8], [3, 4], [9, 10]]
    assert took_s < 0.4  # an idle replica does not wait batch_wait_timeout_s (0.5 s) for company


def test_more_images_than_a_batch_holds_run_in_full_batches(replica):
    deployment, predictor = replica
    results = asyncio.run(deployment.classify_many([_image(v) for v in range(11)], 1))
    assert sorted(predictor.batches, reverse=True) == [8, 3]
    assert [r.indices for r in results] == [[v] for v in range(11)]


def test_an_image_no_decoder_takes_fails_the_request_and_the_replica_serves_on(replica):
    deployment, predictor = replica

    async def go() -> list[int]:  # one event loop: the batch queue lives on the loop that first used it
        with pytest.raises(ImageDecodeError):
            await deployment.classify_many([_image(1), EncodedJpeg(b"\xff\xd8 not a jpeg")], 5)
        return (await deployment.classify(_image(4), 1)).indices

    assert asyncio.run(go()) == [4]
