"""One way to load a variant onto its device: the weights policy, the model, precision and the fast paths.

The classifier deployment and the bulk job's model actors both load through `load_predictor`, so the two
run the same model the same way (the bulk job may ask for another precision).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from model import BatchPredictor, Precision, create_model, get_variant, pick_device
from model.inference import tune_for_fixed_shapes
from service.config import VariantSettings
from service.replica.weights import WeightsChoice, choose_weights

log = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class LoadedPredictor:
    predictor: BatchPredictor
    weights: WeightsChoice
    num_classes: int
    params: int

    @property
    def weights_status(self) -> str:
        """What the API reports as `weights`: "checkpoint" or "random-init"."""
        return "random-init" if self.weights.source is None else "checkpoint"


def load_predictor(settings: VariantSettings, precision: Precision | None = None) -> LoadedPredictor:
    """The variant's predictor under its settings; `precision` overrides the classifier's setting.
    Raises CheckpointError (a bad checkpoint) and WeightsUnavailable (none found under `required`)."""
    cfg = settings.classifier
    variant = get_variant(settings.model_id)
    device = pick_device(settings.device)
    tune_for_fixed_shapes(device)
    weights = choose_weights(settings)
    net = create_model(variant.id, weights=weights.source)
    asked = precision or cfg.precision
    predictor = BatchPredictor(
        net, variant.preprocessing, device, asked, cfg.channels_last,
        buckets=cfg.buckets, compile=cfg.compile, cuda_graphs=cfg.cuda_graphs, max_top_k=settings.limits.max_top_k,
    )  # fmt: skip
    log.info("%s on %s, precision %s (asked: %s), weights: %s", variant.id, device, predictor.precision, asked,
             weights.description)  # fmt: skip
    return LoadedPredictor(predictor, weights, net.num_classes, sum(p.numel() for p in net.parameters()))
