"""The Serve application, top to bottom: one Classifier deployment per enabled variant, then the Gateway
that routes to them; colocated, the Gateway alone, each of its replicas holding the classifiers. `build_app` is the
import path of the Serve config (`service.app:build_app`)."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from service.config import LIVE_FIELDS_ELSEWHERE, Settings
from service.http.gateway import Gateway
from service.replica.classifier import Classifier
from service.serve_config import classifier_deployment, gateway_deployment


def build_app(args: dict[str, Any]) -> Application:
    """`args` as `service.serve_config.application_args` writes them; the options of each deployment come
    from the same settings here and are overridden by the config's `deployments:` entries."""
    settings = Settings.model_validate(args, context={LIVE_FIELDS_ELSEWHERE: True})
    if settings.colocated:  # each gateway replica builds the classifiers itself (InProcessClassifier)
        return Gateway.options(**gateway_deployment(settings)).bind(settings, None)
    classifiers = {
        model_id: Classifier.options(**classifier_deployment(model_id, settings)).bind(settings.variant(model_id))
        for model_id in settings.models
    }
    return Gateway.options(**gateway_deployment(settings)).bind(settings, classifiers)
