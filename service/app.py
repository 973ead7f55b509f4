"""The Serve application, top to bottom: one Classifier deployment per enabled variant, then the Gateway
that routes to them. `build_app` is the import path of the Serve config (`service.app:build_app`)."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from service.classifier import Classifier
from service.config import AutoscalingSettings, Settings
from service.gateway import Gateway


def _scaling(num_replicas: int, autoscaling: AutoscalingSettings | None) -> dict[str, Any]:
    if autoscaling is None:
        return {"num_replicas": num_replicas}
    return {"autoscaling_config": autoscaling.model_dump()}


def classifier_options(model_id: str, settings: Settings) -> dict[str, Any]:
    cfg = settings.classifier_for(model_id)
    actor: dict[str, Any] = {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus}
    if cfg.resources:
        actor["resources"] = dict(cfg.resources)
    return {
        "name": model_id,
        "max_ongoing_requests": cfg.max_ongoing_requests,
        "max_queued_requests": cfg.max_queued_requests,
        "ray_actor_options": actor,
        **_scaling(cfg.num_replicas, cfg.autoscaling),
    }


def gateway_options(settings: Settings) -> dict[str, Any]:
    gw = settings.gateway
    return {
        "name": "Gateway",
        "max_ongoing_requests": gw.max_ongoing_requests,
        "max_queued_requests": gw.max_queued_requests,
        "ray_actor_options": {"num_cpus": gw.num_cpus},
        **_scaling(gw.num_replicas, gw.autoscaling),
    }


def build_app(args: dict[str, Any] | Settings) -> Application:
    settings = args if isinstance(args, Settings) else Settings.model_validate(args)
    classifiers = {
        model_id: Classifier.options(**classifier_options(model_id, settings)).bind(model_id, settings)
        for model_id in settings.models
    }
    return Gateway.options(**gateway_options(settings)).bind(settings, classifiers)
