"""What every peer server shares with hornet-serve: the predictor, the decode, the batching and the answer.

The predictor is `model.BatchPredictor` with the classifier's default settings (precision `auto` resolved for the
CPU, channels_last), random weights from a fixed seed; the decode is the gateway's default CPU decode
(`service.decoding.DecodeRules` from the default limits: JPEG draft, margin 2, the decode time limit).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass

import numpy as np
import torch

from model import BatchPredictor, LabelSet, Preprocessing, create_model, get_variant, resolve_precision
from model.labels import for_head
from service.config import Settings
from service.decoding import DecodeRules

TOP_K = 5
SEED = 0
log = logging.getLogger("hornet-peers")


@dataclass(frozen=True)
class PeerModel:
    """One variant as the service would run it on the CPU, plus what its gateway decodes with."""

    model_id: str
    predictor: BatchPredictor
    recipe: Preprocessing
    rules: DecodeRules
    labels: LabelSet
    max_batch_size: int
    batch_wait_s: float

    @classmethod
    def load(cls, name: str, seed: int = SEED) -> PeerModel:
        """Random weights from `seed` (the same seed gives the same weights, so answers can be compared), warmed."""
        variant = get_variant(name)
        settings = Settings.model_validate({"models": [variant.id]})
        cfg = settings.classifier_for(variant.id)
        precision = resolve_precision(cfg.precision, torch.device("cpu"))
        torch.manual_seed(seed)
        model = create_model(variant.id)
        predictor = BatchPredictor(model, variant.preprocessing, "cpu", precision, cfg.channels_last)
        predictor.warmup([1, cfg.batch.max_batch_size])
        log.info("%s: %s, channels_last=%s, batch up to %d", variant.id, precision, cfg.channels_last,
                 cfg.batch.max_batch_size)  # fmt: skip
        return cls(
            model_id=variant.id,
            predictor=predictor,
            recipe=variant.preprocessing,
            rules=DecodeRules.from_settings(settings.limits, settings.timeouts.decode_s),
            labels=for_head(model.num_classes),
            max_batch_size=cfg.batch.max_batch_size,
            batch_wait_s=cfg.batch.batch_wait_timeout_s,
        )

    def pixels(self, data: bytes) -> np.ndarray:
        """An upload -> uint8 (S, S, 3), as the gateway decodes it by default."""
        return self.rules.pixels(data, self.recipe)

    def predict(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (indices, scores), each (N, TOP_K), for a batch of decoded images."""
        return self.predictor.predict(np.stack(images), TOP_K)

    def answer(self, indices: np.ndarray, scores: np.ndarray) -> dict:
        """One image's top-k as the service's JSON answer lists it."""
        predictions = []
        for rank, (index, score) in enumerate(zip(indices.tolist(), scores.tolist(), strict=True)):
            label = self.labels[index]
            predictions.append({"rank": rank + 1, "class_index": index, "wnid": label.wnid, "label": label.name,
                                "score": score})  # fmt: skip
        return {"model": self.model_id, "predictions": predictions, "weights": "random-init"}


def arguments(description: str) -> argparse.Namespace:
    """The flags every peer takes: the variant and the port on 127.0.0.1."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default="hornet-t")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    configure_logging()
    return args


def configure_logging() -> None:
    """INFO to stderr (the bench keeps each peer's output in a log file); per process, as LitServe's worker is one."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
