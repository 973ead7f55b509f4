"""`topology: colocated` without Ray: the settings it refuses, the one deployment it renders, and a gateway that
builds the real Classifier class in its own process (over a stand-in predictor) and serves through it, batching
as its live `user_config` says."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from service.config import LIVE_FIELDS_ELSEWHERE, Settings
from service.replica import classifier as classifier_module
from service.replica.in_process import InProcessClassifier
from service.serve_config import GATEWAY, application_args, gateway_deployment, serve_config
from tests.unit.service.http.test_gateway import JPEG, RAW, deployment
from tests.unit.service.replica.test_classify_many import StandInPredictor

BASE = {"models": ["hornet-t", "hornet-l-gf384"], "device": "cpu", "weights_policy": "random",
        "topology": "colocated"}  # fmt: skip


@pytest.mark.parametrize(
    ("per_model", "named"),
    [({"autoscaling": {"min_replicas": 0}}, "autoscaling"), ({"num_replicas": 2}, "num_replicas"),
     ({"resources": {"gpu-group": 1}}, "resources")],
)  # fmt: skip
def test_what_would_scale_or_place_a_variant_of_its_own_is_refused(per_model, named):
    with pytest.raises(ValueError, match=f"topology colocated: hornet-t sets {named}"):
        Settings.model_validate({**BASE, "per_model": {"hornet-t": per_model}})
    Settings.model_validate({**BASE, "topology": "split", "per_model": {"hornet-t": per_model}})  # split takes it


@pytest.mark.parametrize(
    ("classifier", "colocated"),
    [({}, True), ({"max_ongoing_requests": 16}, True), ({"num_replicas": 2}, False),
     ({"autoscaling": {"min_replicas": 0}}, False), ({"resources": {"gpu-group": 1}}, False), ({"num_gpus": 1}, False)],
)  # fmt: skip
def test_auto_is_colocated_unless_a_variant_needs_a_deployment_of_its_own(classifier, colocated):
    settings = Settings.model_validate({**BASE, "topology": "auto", "per_model": {"hornet-l-gf384": classifier}})
    assert settings.colocated is colocated
    args = serve_config(settings)["applications"][0]["args"]
    assert args["topology"] == ("colocated" if colocated else "split")  # resolved: the args lack the live fields


def test_more_than_one_gpu_in_a_replica_is_refused():
    with pytest.raises(ValueError, match="num_gpus add up to more than the one GPU"):
        Settings.model_validate({**BASE, "device": "cuda", "classifier": {"num_gpus": 0.75}})
    Settings.model_validate({**BASE, "device": "cuda", "classifier": {"num_gpus": 0.5}})


def test_the_serve_config_has_the_gateway_alone_reserving_the_classifiers_and_carrying_their_batching():
    settings = Settings.model_validate(
        {**BASE, "per_model": {"hornet-l-gf384": {"num_cpus": 1, "batch": {"max_batch_size": 2}}}}
    )
    (gateway,) = serve_config(settings)["applications"][0]["deployments"]
    assert gateway["name"] == GATEWAY
    assert gateway["ray_actor_options"] == {"num_cpus": 0.25 + 0.5 + 1}
    bounds = {"max_ongoing_requests": 64, "max_queued_requests": 64}
    assert gateway["user_config"] == {
        "hornet-t": {"batch": {"max_batch_size": 8, "batch_wait_timeout_s": 0.02}, **bounds},
        "hornet-l-gf384": {"batch": {"max_batch_size": 2, "batch_wait_timeout_s": 0.02}, **bounds},
    }
    rebatched = Settings.model_validate(
        {**BASE, "per_model": {"hornet-l-gf384": {"num_cpus": 1, "batch": {"max_batch_size": 4}}}}
    )
    assert application_args(rebatched) == application_args(settings)  # batching stays live: no restart
    split = serve_config(Settings.model_validate({**BASE, "topology": "split"}))["applications"][0]["deployments"]
    assert [d["name"] for d in split] == ["hornet-t", "hornet-l-gf384", GATEWAY] and "user_config" not in split[-1]


@pytest.fixture
def colocated(monkeypatch, request) -> tuple[Any, httpx.AsyncClient, dict[str, StandInPredictor]]:
    """A colocated Gateway as its replica holds it: built from the application's args (which leave out the live
    fields) and then given its deployment's `user_config`, as Serve does; it builds both classifiers itself, each over
    its own stand-in predictor; Serve reports its own deployment (two replicas) and no classifier deployment."""
    from ray import serve

    from tests.unit.service.http.test_gateway import _gateway

    predictors: dict[str, StandInPredictor] = {}

    def load(settings):
        predictors[settings.model_id] = StandInPredictor()
        return SimpleNamespace(predictor=predictors[settings.model_id], num_classes=1000, params=1,
                               weights_status="random-init", weights=SimpleNamespace(description="stand-in"))  # fmt: skip

    monkeypatch.setattr(classifier_module, "load_predictor", load)
    configured = Settings.model_validate({**BASE, **getattr(request, "param", {})})
    settings = Settings.model_validate(application_args(configured), context={LIVE_FIELDS_ELSEWHERE: True})
    gateway, app = _gateway(settings, None, deployments={GATEWAY: deployment(running=2)})
    gateway.reconfigure(gateway_deployment(configured)["user_config"])
    gateway.replicas.deployment_of = {m: GATEWAY for m in settings.models}  # as the Gateway sets it when colocated
    monkeypatch.setattr(serve, "get_replica_context", lambda: SimpleNamespace(servable_object=gateway))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")
    yield gateway, client, predictors
    asyncio.run(client.aclose())


def test_a_colocated_gateway_classifies_through_its_own_classifiers_batched_as_reconfigured(colocated):
    gateway, client, predictors = colocated
    assert all(isinstance(c, InProcessClassifier) for c in gateway.classifiers.values())
    live = {"batch": {"max_batch_size": 2, "batch_wait_timeout_s": 0.2}, "max_ongoing_requests": 64,
            "max_queued_requests": 64}  # fmt: skip
    gateway.reconfigure({"hornet-t": live})  # Serve's call on a live change

    async def five() -> list[httpx.Response]:
        return await asyncio.gather(*(client.post("/v1/classify", content=JPEG, headers=RAW) for _ in range(5)))

    responses = asyncio.run(five())
    assert [r.status_code for r in responses] == [200] * 5, [r.text for r in responses]
    assert sorted(predictors["hornet-t"].batches) == [1, 2, 2] and predictors["hornet-l-gf384"].batches == []
    card = asyncio.run(client.get("/v1/models/hornet-l-gf384")).json()
    assert card["ready"] is True and card["replicas"] == 2 and card["cold"] is False  # the gateway's replicas


def test_a_colocated_call_past_the_inference_limit_is_504_and_cancelled_in_the_classifier(colocated):
    gateway, client, predictors = colocated
    timeouts = gateway.settings.timeouts.model_copy(update={"inference_s": 0.1})
    gateway.settings = gateway.settings.model_copy(update={"timeouts": timeouts})
    released = threading.Event()
    answer = predictors["hornet-t"].predict
    predictors["hornet-t"].predict = lambda pixels, top_k: (released.wait(5), answer(pixels, top_k))[1]
    try:
        response = asyncio.run(client.post("/v1/classify", content=JPEG, headers=RAW))
        assert response.status_code == 504
        assert gateway.classifiers["hornet-t"].classifier.in_flight() == 0  # the cancelled call let go of its image
    finally:
        released.set()


BOUNDED = {"classifier": {"max_ongoing_requests": 1, "max_queued_requests": 1,
                          "batch": {"max_batch_size": 1, "max_concurrent_batches": 1}}}  # fmt: skip


@pytest.mark.parametrize("colocated", [BOUNDED], indirect=True)
def test_past_its_ongoing_and_queued_bound_a_colocated_variant_is_503_and_serves_on(colocated):
    gateway, client, predictors = colocated
    released = threading.Event()
    answer = predictors["hornet-t"].predict
    predictors["hornet-t"].predict = lambda pixels, top_k: (released.wait(5), answer(pixels, top_k))[1]

    async def three_then_one() -> tuple[list[int], int]:  # one event loop, as in the replica: the batcher's
        calls = [asyncio.ensure_future(client.post("/v1/classify", content=JPEG, headers=RAW)) for _ in range(3)]
        await asyncio.sleep(0.5)
        released.set()
        statuses = sorted(r.status_code for r in await asyncio.gather(*calls))
        return statuses, (await client.post("/v1/classify", content=JPEG, headers=RAW)).status_code

    assert asyncio.run(three_then_one()) == ([200, 200, 503], 200)
