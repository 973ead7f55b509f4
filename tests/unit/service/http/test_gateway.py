"""The gateway's HTTP layer without a Ray cluster: the real FastAPI app and Gateway class, with stand-in
classifier handles. Routes, upload limits, media types, auth and every error mapping of docs/http.md#errors;
tests/integration repeats the main paths through a real Ray Serve, its proxy and real classifiers."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError

from model import ImageDecodeError
from model.preprocess import DecodeTimeoutError
from service.config import Settings
from service.http import gateway as gateway_module
from service.http.decode import DecodeQueueFull
from service.http.replica_counts import ReplicaCounts, Replicas
from service.http.schemas import ModelInfo
from service.replica.classifier import Classification, ModelNotLoaded
from service.replica.in_process import LocalMethod
from service.replica.jpeg import EncodedJpeg
from tests.support.helpers import api_error
from tests.support.images import encode, photo, png_header, webp_bomb

JPEG = encode(photo(320, 240, seed=3), "JPEG", quality=90)
RAW = {"Content-Type": "image/jpeg"}
KEY = "hsk_test-" + "k" * 32


class _Call(LocalMethod):
    """`handle.method.remote(...)` as the colocated gateway's own (a cancellable task), counting calls and cancels."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__(fn)
        self.cancelled = 0
        self.calls = 0

    def remote(self, *args: Any) -> asyncio.Task:
        self.calls += 1
        task = super().remote(*args)
        task.add_done_callback(lambda t: setattr(self, "cancelled", self.cancelled + t.cancelled()))
        return task


class StandInClassifier:
    """A classifier deployment's handle: `describe` says what loaded, `classify` answers top-k of fixed classes
    (or does what a test tells it to: raise, stall); `classify_many` answers each of its images so, in one call."""

    def __init__(self, model_id: str, num_classes: int = 1000) -> None:
        self.model_id = model_id
        self.info = ModelInfo(id=model_id, ready=True, num_classes=num_classes, params=1, weights="random-init",
                              weights_source="stand-in", device="cpu", precision="fp32")  # fmt: skip
        self.behaviour: Callable[[Any, int], Any] = self._answer
        self.seen: list[tuple[tuple[int, ...], int]] = []
        self.describe = _Call(lambda: self.info)
        self.classify = _Call(lambda pixels, top_k: self.behaviour(pixels, top_k))
        self.calls: list[int] = []  # images per classify_many call
        self.classify_many = _Call(self._answer_many)

    async def _answer_many(self, images: list[Any], top_k: int) -> list[Any]:
        self.calls.append(len(images))
        results = []
        for image in images:
            result = self.behaviour(image, top_k)
            results.append(await result if asyncio.iscoroutine(result) else result)
        return results

    def _answer(self, pixels: Any, top_k: int) -> Classification:
        self.seen.append((pixels.shape, top_k))
        return Classification(list(range(top_k)), [1 / (r + 2) for r in range(top_k)], 0.001, 0.002)


def _gateway(
    settings: Settings, classifiers: dict[str, StandInClassifier], deployments: dict[str, SimpleNamespace] | None = None
) -> tuple[Any, Any]:
    """The Gateway class as the deployment holds it (Serve wraps it in a subclass that serves the ASGI app), and
    the FastAPI app it serves: `serve.ingress` works on a copy of the class and the app, made together, so the
    app is the one that class's code names `app`. Its routes find the instance through the replica context.
    `deployments`: what Serve's status says of a variant (default: two replicas running)."""
    user_class = gateway_module.Gateway.func_or_class.__mro__[1]
    assert user_class.__qualname__ == "Gateway"
    gateway = user_class(settings, classifiers)
    states = {m: deployment(running=2) for m in settings.models} | (deployments or {})
    gateway.replicas = ReplicaCounts(settings.app_name, ask=lambda _: {m: Replicas.of(d) for m, d in states.items()})
    return gateway, user_class.__init__.__globals__["app"]


def deployment(running: int, status: str = "HEALTHY", trigger: str = "UPSCALE_COMPLETED") -> SimpleNamespace:
    """A deployment as serve.status() reports it."""
    return SimpleNamespace(
        replica_states={"RUNNING": running} if running else {}, status=status, status_trigger=trigger
    )


@pytest.fixture
def serve_app(monkeypatch) -> Iterator[Callable[..., tuple[httpx.AsyncClient, dict[str, StandInClassifier]]]]:
    """Builds a gateway for the given settings over stand-in classifiers; yields (client, classifiers)."""
    from ray import serve

    clients: list[httpx.AsyncClient] = []

    def build(
        deployments: dict[str, SimpleNamespace] | None = None, **overrides: Any
    ) -> tuple[httpx.AsyncClient, dict[str, StandInClassifier]]:
        settings = Settings.model_validate({"models": ["hornet-t", "hornet-l-gf384"], **overrides})
        classifiers = {m: StandInClassifier(m, 21841 if m == "hornet-l-gf384" else 1000) for m in settings.models}
        gateway, app = _gateway(settings, classifiers, deployments)
        monkeypatch.setattr(serve, "get_replica_context", lambda: SimpleNamespace(servable_object=gateway))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://gateway")
        clients.append(client)
        return client, classifiers

    yield build
    for client in clients:
        asyncio.run(client.aclose())


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# ---- routes ---------------------------------------------------------------------------------------------


def test_classify_routes_the_model_and_labels_the_answer(serve_app):
    client, classifiers = serve_app()
    response = run(client.post("/v1/classify?model=hornet-l-gf384&top_k=3", content=JPEG, headers=RAW))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "hornet-l-gf384" and body["weights"] == "random-init" and body["request_id"]
    assert [p["rank"] for p in body["predictions"]] == [1, 2, 3]
    assert body["predictions"][0]["class_index"] == 0 and body["predictions"][0]["label"]
    assert classifiers["hornet-l-gf384"].seen == [((384, 384, 3), 3)]  # the 384 recipe's pixels reached it
    assert classifiers["hornet-t"].seen == []
    assert "decode;dur=" in response.headers["server-timing"]


def test_default_model_alias_and_multipart(serve_app):
    client, classifiers = serve_app()
    default = run(client.post("/v1/classify", content=JPEG, headers=RAW))
    alias = run(client.post("/v1/classify?model=hornet-tiny", files={"file": ("a.jpg", JPEG, "image/jpeg")}))
    assert default.json()["model"] == alias.json()["model"] == "hornet-t"
    assert classifiers["hornet-t"].seen == [((224, 224, 3), 5)] * 2


def test_models_listing_and_card(serve_app):
    client, _ = serve_app()
    listing = run(client.get("/v1/models")).json()
    assert listing["default"] == "hornet-t"
    cards = {card["id"]: card for card in listing["models"]}
    assert set(cards) == {"hornet-t", "hornet-l-gf384"}
    assert cards["hornet-l-gf384"]["label_set"] == "imagenet-21k" and cards["hornet-t"]["replicas"] == 2
    assert run(client.get("/v1/models/hornet-tiny")).json()["id"] == "hornet-t"


def test_health_readiness_page_and_openapi(serve_app):
    client, _ = serve_app()
    assert run(client.get("/healthz")).json() == {"status": "ok"}
    assert run(client.get("/readyz")).json()["status"] == "ready"
    page = run(client.get("/"))
    assert page.status_code == 200 and "<html" in page.text.lower()
    paths = run(client.get("/openapi.json")).json()["paths"]
    assert {"/v1/classify", "/v1/models", "/v1/models/{name}"} <= set(paths)


def test_the_client_request_id_is_the_one_in_the_body(serve_app):
    client, _ = serve_app()
    ok = run(client.post("/v1/classify", content=JPEG, headers={**RAW, "X-Request-ID": "abc-123"}))
    bad = run(client.post("/v1/classify?top_k=0", content=JPEG, headers={**RAW, "X-Request-ID": "abc-456"}))
    assert ok.json()["request_id"] == "abc-123"
    assert api_error(bad, 422, "invalid_parameter")["request_id"] == "abc-456"


# ---- uploads: limits and media types --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("image/jpeg", 200), ("image/png", 200), ("application/octet-stream", 200), ("IMAGE/JPEG; charset=x", 200),
     ("text/plain", 415), ("application/json", 415), ("", 415)],
)  # fmt: skip
def test_media_types(serve_app, content_type, status):
    client, _ = serve_app()
    response = run(client.post("/v1/classify", content=JPEG, headers={"Content-Type": content_type}))
    if status == 200:
        assert response.status_code == 200, response.text
    else:
        api_error(response, status, "unsupported_media_type")


def test_a_body_over_the_limit_is_413_declared_or_streamed(serve_app):
    client, _ = serve_app(limits={"max_body_bytes": 2048})
    declared = run(client.post("/v1/classify", content=JPEG, headers=RAW))
    assert "limit is 2048" in api_error(declared, 413, "payload_too_large")["message"]

    async def chunks():  # no Content-Length: the limit must cut the stream
        for _ in range(4):
            yield b"\xff" * 1024

    streamed = run(client.post("/v1/classify", content=chunks(), headers=RAW))
    assert "exceeds the limit" in api_error(streamed, 413, "payload_too_large")["message"]
    assert run(client.post("/v1/classify", content=b"\xff" * 2048, headers=RAW)).status_code == 400  # at the limit


def test_pixel_limit_and_decode_budget_are_413(serve_app):
    client, _ = serve_app(limits={"max_pixels": 1_000_000, "decode_budget": {"WEBP": 100_000}})
    bomb = run(client.post("/v1/classify", content=png_header(2000, 2000), headers={"Content-Type": "image/png"}))
    assert "the limit is 1000000" in api_error(bomb, 413, "payload_too_large")["message"]
    webp = run(client.post("/v1/classify", content=webp_bomb(400), headers={"Content-Type": "image/webp"}))
    assert "budget for WEBP is 100000" in api_error(webp, 413, "payload_too_large")["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"", "empty"), (b"not an image", "cannot decode"), (JPEG[: len(JPEG) // 2], "cannot decode"),
     (encode(photo(32, 32), "ICO"), "not a format this service reads")],
)  # fmt: skip
def test_bad_images_are_400(serve_app, body, message):
    client, _ = serve_app()
    response = run(client.post("/v1/classify", content=body, headers=RAW))
    assert message in api_error(response, 400, "invalid_image")["message"]


def test_multipart_needs_exactly_one_file_field(serve_app):
    client, _ = serve_app()
    wrong = run(client.post("/v1/classify", files={"image": ("a.jpg", JPEG, "image/jpeg")}))
    assert "'file'" in api_error(wrong, 422, "invalid_parameter")["message"]
    two = run(client.post("/v1/classify", files=[("file", ("a.jpg", JPEG)), ("file", ("b.jpg", JPEG))]))
    assert "exactly one" in api_error(two, 422, "invalid_parameter")["message"]
    malformed = run(client.post("/v1/classify", content=JPEG, headers={"Content-Type": "multipart/form-data"}))
    assert "malformed multipart body" in api_error(malformed, 400, "invalid_image")["message"]


def test_headers_over_the_limit_are_431(serve_app):
    client, _ = serve_app(limits={"max_header_bytes": 2048})
    response = run(client.post("/v1/classify", content=JPEG, headers={**RAW, "X-Padding": "p" * 3000}))
    api_error(response, 431, "request_header_fields_too_large")
    assert run(client.post("/v1/classify", content=JPEG, headers={**RAW, "X-Padding": "p" * 1000})).status_code == 200


def test_a_full_decode_queue_is_503_with_retry_after(serve_app, monkeypatch):
    """The lanes themselves fill in test_decode_lanes.py; here, what the client gets when they are full."""
    client, _ = serve_app()
    gateway = gateway_module.serve.get_replica_context().servable_object

    async def full(data, recipe, replica_decodes):
        raise DecodeQueueFull("the decode queue is full (34 images)")

    monkeypatch.setattr(gateway.decoder, "prepare", full)
    refused = run(client.post("/v1/classify", content=JPEG, headers=RAW))
    assert (
        "queue is full" in api_error(refused, 503, "unavailable")["message"] and refused.headers["retry-after"] == "1"
    )


# ---- parameters and routing errors ----------------------------------------------------------------------


def test_unknown_and_disabled_models_are_404(serve_app):
    client, _ = serve_app(models=["hornet-t"])
    unknown = run(client.post("/v1/classify?model=resnet-50", content=JPEG, headers=RAW))
    assert "enabled models: hornet-t" in api_error(unknown, 404, "unknown_model")["message"]
    disabled = run(client.post("/v1/classify?model=hornet-b", content=JPEG, headers=RAW))
    assert "not enabled" in api_error(disabled, 404, "unknown_model")["message"]
    api_error(run(client.get("/v1/models/nope")), 404, "unknown_model")


@pytest.mark.parametrize("query", ["top_k=0", "top_k=101", "top_k=five"])
def test_bad_top_k_is_422(serve_app, query):
    client, _ = serve_app()
    api_error(run(client.post(f"/v1/classify?{query}", content=JPEG, headers=RAW)), 422, "invalid_parameter")


def test_unknown_route_and_wrong_method(serve_app):
    client, _ = serve_app()
    api_error(run(client.get("/v1/nothing")), 404, "not_found")  # /v2: test_oip.py
    api_error(run(client.get("/v1/classify")), 405, "method_not_allowed")


# ---- API keys -------------------------------------------------------------------------------------------


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "api_keys"
    path.write_text(f"alice {hashlib.sha256(KEY.encode()).hexdigest()}\n")
    return path


def test_api_keys_401_without_a_valid_key_then_429_past_the_burst(serve_app, keys_file):
    auth = {"enabled": True, "keys_file": str(keys_file), "rate_per_s": 0.01, "burst": 2}
    client, _ = serve_app(auth=auth)
    missing = run(client.post("/v1/classify", content=JPEG, headers=RAW))
    assert api_error(missing, 401, "unauthorized") and missing.headers["www-authenticate"].startswith("Bearer")
    wrong = run(client.post("/v1/classify", content=JPEG, headers={**RAW, "Authorization": "Bearer hsk_nope"}))
    api_error(wrong, 401, "unauthorized")
    api_error(run(client.get("/v1/models")), 401, "unauthorized")
    good = {**RAW, "Authorization": f"Bearer {KEY}"}
    assert [run(client.post("/v1/classify", content=JPEG, headers=good)).status_code for _ in range(2)] == [200, 200]
    limited = run(client.post("/v1/classify", content=JPEG, headers=good))
    assert "alice" in api_error(limited, 429, "rate_limited")["message"] and int(limited.headers["retry-after"]) >= 1
    assert run(client.get("/healthz")).status_code == 200  # health needs no key


# ---- what the classifiers answer ------------------------------------------------------------------------


def _ray_task_error(cause: Exception) -> RayTaskError:
    return RayTaskError("classify", "traceback", cause)


@pytest.mark.parametrize(
    ("raised", "status", "error_type", "in_message"),
    [(BackPressureError(num_queued_requests=8, max_queued_requests=8), 503, "unavailable", "overloaded"),
     (RayActorError(), 503, "unavailable", "not available right now"),
     (_ray_task_error(ModelNotLoaded("hornet-t failed to load: bad hash")), 503, "unavailable", "bad hash"),
     (ModelNotLoaded("hornet-t failed to load: bad hash"), 503, "unavailable", "bad hash"),
     (RuntimeError("a bug"), 500, "internal", "RuntimeError")],
)  # fmt: skip
def test_classifier_failures_map_to_their_errors(serve_app, raised, status, error_type, in_message):
    client, classifiers = serve_app()

    def fail(pixels, top_k):
        raise raised

    classifiers["hornet-t"].behaviour = fail
    response = run(client.post("/v1/classify", content=JPEG, headers=RAW))
    assert in_message in api_error(response, status, error_type)["message"]
    if status == 503:
        assert response.headers["retry-after"] == "1"
    classifiers["hornet-t"].behaviour = classifiers["hornet-t"]._answer
    assert run(client.post("/v1/classify", content=JPEG, headers=RAW)).status_code == 200  # still serving


def test_a_classifier_past_the_inference_time_limit_is_504_and_the_call_cancelled(serve_app):
    client, classifiers = serve_app(timeouts={"inference_s": 0.2})

    async def stall(pixels, top_k):
        await asyncio.sleep(5)

    classifiers["hornet-t"].behaviour = stall
    response = run(client.post("/v1/classify", content=JPEG, headers=RAW))
    assert "0.2s" in api_error(response, 504, "timeout")["message"]
    assert classifiers["hornet-t"].classify.cancelled == 1


def test_a_variant_at_zero_replicas_is_ready_and_cold_and_probes_do_not_start_it(serve_app):
    client, classifiers = serve_app(deployments={"hornet-l-gf384": deployment(running=0)})
    ready = run(client.get("/readyz"))
    assert ready.status_code == 200 and ready.json()["cold"] == ["hornet-l-gf384"]
    card = run(client.get("/v1/models/hornet-l-gf384")).json()
    assert card["cold"] is True and card["ready"] is True and card["replicas"] == 0 and card["precision"] is None
    assert run(client.get("/v2/models/hornet-l-gf384/ready")).json()["ready"] is True
    warm = run(client.get("/v1/models/hornet-t")).json()
    assert warm["cold"] is False and warm["replicas"] == 2
    assert classifiers["hornet-l-gf384"].describe.calls == 0  # nothing asked of the variant: no replica started


@pytest.mark.parametrize(
    ("status", "trigger", "cold"),
    [("HEALTHY", "DOWNSCALE_COMPLETED", True), ("DOWNSCALING", "AUTOSCALING", True), ("UPSCALING", "AUTOSCALING", True),
     ("UPDATING", "CONFIG_UPDATE_STARTED", False), ("UNHEALTHY", "HEALTH_CHECK_FAILED", False),
     ("UPSCALING", "CONFIG_UPDATE_STARTED", False)],
)  # fmt: skip
def test_only_zero_replicas_by_the_autoscalers_choice_is_cold(serve_app, status, trigger, cold):
    client, classifiers = serve_app(deployments={"hornet-t": deployment(running=0, status=status, trigger=trigger)})

    async def no_replica():
        await asyncio.sleep(5)

    classifiers["hornet-t"].describe = _Call(no_replica)
    card = run(client.get("/v1/models/hornet-t")).json()
    assert card["cold"] is cold and card["ready"] is cold


def test_a_request_waits_for_a_cold_start_past_the_inference_limit(serve_app):
    client, classifiers = serve_app(deployments={"hornet-t": deployment(running=0, status="UPSCALING",
                                                                        trigger="AUTOSCALING")},
                                    timeouts={"inference_s": 0.2, "cold_start_s": 5})  # fmt: skip

    async def starting(pixels, top_k):
        await asyncio.sleep(0.6)  # the replica's start
        return classifiers["hornet-t"]._answer(pixels, top_k)

    classifiers["hornet-t"].behaviour = starting
    assert run(client.post("/v1/classify", content=JPEG, headers=RAW)).status_code == 200


def test_a_cold_start_past_its_limit_is_503_with_retry_after_and_the_call_cancelled(serve_app):
    client, classifiers = serve_app(deployments={"hornet-t": deployment(running=0, status="UPSCALING",
                                                                        trigger="AUTOSCALING")},
                                    timeouts={"inference_s": 0.1, "cold_start_s": 0.3, "retry_after_s": 7})  # fmt: skip

    async def never_starts(pixels, top_k):
        await asyncio.sleep(5)

    classifiers["hornet-t"].behaviour = never_starts
    response = run(client.post("/v1/classify", content=JPEG, headers=RAW))
    message = api_error(response, 503, "unavailable")["message"]
    assert "starting from zero replicas" in message and "0.3s" in message
    assert response.headers["retry-after"] == "7" and classifiers["hornet-t"].classify.cancelled == 1


def test_a_variant_that_failed_to_load_is_503_and_named_in_readyz_and_its_card(serve_app):
    client, classifiers = serve_app()
    classifiers["hornet-l-gf384"].info = ModelInfo(id="hornet-l-gf384", ready=False, reason="sha256 mismatch",
                                                   precision="auto")  # fmt: skip
    response = run(client.post("/v1/classify?model=hornet-l-gf384", content=JPEG, headers=RAW))
    assert "sha256 mismatch" in api_error(response, 503, "unavailable")["message"]
    assert "sha256 mismatch" in api_error(run(client.get("/readyz")), 503, "unavailable")["message"]
    card = run(client.get("/v1/models/hornet-l-gf384")).json()
    assert card["ready"] is False and "sha256 mismatch" in card["not_ready_reason"] and card["input_size"] == 384
    assert run(client.post("/v1/classify?model=hornet-t", content=JPEG, headers=RAW)).status_code == 200


def test_a_classifier_that_does_not_answer_describe_is_503(serve_app):
    client, classifiers = serve_app()

    def unreachable():
        raise RayActorError()

    classifiers["hornet-t"].describe = _Call(unreachable)
    response = run(client.post("/v1/classify", content=JPEG, headers=RAW))
    assert "hornet-t is not ready (RayActorError)" in api_error(response, 503, "unavailable")["message"]


def test_a_variant_whose_replicas_decode_gets_the_jpeg_and_its_card_says_so(serve_app):
    client, classifiers = serve_app()
    stand_in = classifiers["hornet-t"]
    stand_in.info = stand_in.info.model_copy(update={"decode": "replica"})
    received = []
    stand_in.behaviour = lambda image, top_k: received.append(image) or stand_in._answer(np.zeros((1,)), top_k)
    assert run(client.post("/v1/classify", content=JPEG, headers=RAW)).status_code == 200
    png = encode(photo(64, 64), "PNG")
    assert run(client.post("/v1/classify", content=png, headers={"Content-Type": "image/png"})).status_code == 200
    assert received[0] == EncodedJpeg(JPEG, 1) and received[1].shape == (224, 224, 3)  # other formats: pixels
    cards = {card["id"]: card for card in run(client.get("/v1/models")).json()["models"]}
    assert cards["hornet-t"]["decode"] == "replica" and cards["hornet-l-gf384"]["decode"] == "gateway"


@pytest.mark.parametrize(
    ("cause", "status", "error_type"),
    [(ImageDecodeError("cannot decode image: broken data"), 400, "invalid_image"),
     (DecodeTimeoutError("decoding took longer than the limit of 5 s"), 413, "payload_too_large")],
)  # fmt: skip
@pytest.mark.parametrize("wrapped", [True, False], ids=["ray_task_error", "as_raised"])
def test_a_jpeg_the_replica_could_not_decode_is_the_clients_error(serve_app, cause, status, error_type, wrapped):
    """Serve hands a replica's exception on as raised through gRPC (throughput mode), else in a RayTaskError."""
    client, classifiers = serve_app()

    def fail(image, top_k):
        raise _ray_task_error(cause) if wrapped else cause

    classifiers["hornet-t"].behaviour = fail
    response = run(client.post("/v1/classify", content=JPEG, headers=RAW))
    assert str(cause) == api_error(response, status, error_type)["message"]


# ---- the count the stop's drain waits on ----------------------------------------------------------------


def test_the_gateway_counts_each_request_from_its_arrival_until_its_answer(serve_app):
    """service.daemon.local.drain_gateways waits on Gateway.in_flight(): classifications on either protocol while they wait
    for their classifier, and a quick answer (here a 404) only while it is being answered."""
    client, classifiers = serve_app()
    gateway = gateway_module.serve.get_replica_context().servable_object
    stand_in, waiting, answer = classifiers["hornet-t"], [], asyncio.Event()

    async def held(pixels, top_k):
        waiting.append(pixels)
        await answer.wait()
        return stand_in._answer(pixels, top_k)

    stand_in.behaviour = held
    spec = {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(JPEG) + 4}}
    oip_json = json.dumps({"inputs": [spec]}).encode()  # then the binary extension: a 4-byte length, the file
    oip = {"content": oip_json + len(JPEG).to_bytes(4, "little") + JPEG,
           "headers": {"Inference-Header-Content-Length": str(len(oip_json))}}  # fmt: skip

    async def scenario() -> tuple[list[int], list[int]]:
        counts = [gateway.in_flight()]
        requests = [client.post("/v1/classify", content=JPEG, headers=RAW) for _ in range(2)]
        requests.append(client.post("/v2/models/hornet-t/infer", **oip))
        answers = asyncio.gather(*requests)
        for _ in range(500):
            await asyncio.sleep(0.01)
            if len(waiting) == 3:
                break
        counts.append(gateway.in_flight())
        refused = await client.post("/v1/classify?model=resnet-50", content=JPEG, headers=RAW)
        counts.append(gateway.in_flight())
        answer.set()
        statuses = [refused.status_code] + [response.status_code for response in await answers]
        return counts + [gateway.in_flight()], statuses

    counts, statuses = run(scenario())
    assert statuses == [404, 200, 200, 200]
    assert counts == [0, 3, 3, 0]
