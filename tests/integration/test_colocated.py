"""`topology: colocated` under real Ray Serve: a redeploy of the session's app to it leaves the Gateway as its only
deployment, each of whose replicas serves both variants from classifiers in its own process; their batching still
changes live, without a restart; a redeploy back to `split` brings the classifier deployments back."""

from __future__ import annotations

import asyncio

from ray import serve

from service.config import Settings
from service.daemon.local import deploy, serve_actors
from service.serve_config import GATEWAY
from tests.support.helpers import poll

from .live import JPEG, JPEG_HEADERS, burst


def _deployments(service) -> set[str]:
    return set(serve.status().applications[service.settings.app_name].deployments)


def _colocated(settings: Settings, **per_model: dict) -> Settings:
    update = {"topology": "colocated", "per_model": {**settings.per_model, **per_model}}
    return Settings.model_validate(settings.model_copy(update=update).model_dump())


def test_colocated_serves_every_variant_from_the_gateway_alone_and_reconfigures_it_live(service):
    original: Settings = service.settings
    deploy(_colocated(original))
    try:
        assert _deployments(service) == {GATEWAY}
        assert poll(lambda: serve_actors("SERVE_REPLICA") == serve_actors(f"#{GATEWAY}#"), timeout_s=60)
        for model_id, classes in (("hornet-t", 1000), ("hornet-l-gf384", 21841)):
            response = service.client.post(f"/v1/classify?model={model_id}&top_k=3", content=JPEG, headers=JPEG_HEADERS)
            assert response.status_code == 200, response.text
            assert [p["class_index"] < classes for p in response.json()["predictions"]] == [True] * 3
            card = service.client.get(f"/v1/models/{model_id}").json()
            assert card["ready"] is True and card["replicas"] == 1 and card["cold"] is False
        assert service.client.get("/readyz").status_code == 200

        gateways = serve_actors(f"#{GATEWAY}#")
        larger_before, total_before = service.batches_above("hornet-t", 1)
        deploy(_colocated(original, **{"hornet-t": {"batch": {"max_batch_size": 1}}}))
        assert serve_actors(f"#{GATEWAY}#") == gateways, "the batching change restarted the gateway"
        responses = asyncio.run(burst(service.base_url, 6))
        assert [r.status_code for r in responses] == [200] * 6
        assert poll(lambda: service.batches_above("hornet-t", 1)[1] >= total_before + 6)
        assert service.batches_above("hornet-t", 1)[0] == larger_before, "a batch above 1 ran after the change"
    finally:
        deploy(original)
    assert _deployments(service) == {"hornet-t", "hornet-l-gf384", GATEWAY}
    response = service.client.post("/v1/classify?model=hornet-t", content=JPEG, headers=JPEG_HEADERS)
    assert response.status_code == 200
