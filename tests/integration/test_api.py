"""The HTTP API against a real Ray Serve: endpoints, formats, routing, labels, errors (each kind of bad upload
and its status: test_hostile.py)."""

import pytest

from model import labels
from tests.support.helpers import api_error
from tests.support.images import encode, photo

JPEG = encode(photo(640, 480), "JPEG", quality=90)


def _check_predictions(body: dict, model: str, k: int = 5) -> None:
    assert body["model"] == model
    assert body["weights"] == "random-init"
    preds = body["predictions"]
    assert [p["rank"] for p in preds] == list(range(1, k + 1))
    scores = [p["score"] for p in preds]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    label_set = labels.imagenet_1k() if model == "hornet-t" else labels.hornet_22k()
    for p in preds:
        expected = label_set[p["class_index"]]
        assert (p["wnid"], p["label"]) == (expected.wnid, expected.name)


def test_health_ready_docs_and_openapi(service):
    c = service.client
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/readyz").json()["models"] == ["hornet-t", "hornet-l-gf384"]
    assert "swagger" in c.get("/docs").text.lower()
    paths = c.get("/openapi.json").json()["paths"]
    assert {"/v1/classify", "/v1/models", "/v1/models/{name}", "/healthz", "/readyz"} <= set(paths)


def test_models_listing_reports_what_is_loaded(service):
    body = service.client.get("/v1/models").json()
    assert body["default"] == "hornet-t"
    cards = {m["id"]: m for m in body["models"]}
    assert set(cards) == {"hornet-t", "hornet-l-gf384"}
    t, l384 = cards["hornet-t"], cards["hornet-l-gf384"]
    assert (t["input_size"], t["classes"], t["label_set"], t["params"]) == (224, 1000, "imagenet-1k", 22_409_512)
    assert (l384["input_size"], l384["classes"], l384["label_set"]) == (384, 10459, "hornet-22k")
    assert l384["params"] == 216_345_307 and l384["gmacs"] == 101.63
    for card in cards.values():
        assert card["ready"] and card["replicas"] == 1 and card["weights"] == "random-init"
    one = service.client.get("/v1/models/hornet-large-gf384")
    assert one.status_code == 200 and one.json()["id"] == "hornet-l-gf384"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_classify_raw_and_multipart_in_every_format(service, fmt):
    data = encode(photo(300, 200, seed=3), fmt)
    raw = service.client.post(
        "/v1/classify?model=hornet-t", content=data, headers={"Content-Type": f"image/{fmt.lower()}"}
    )
    assert raw.status_code == 200, raw.text
    _check_predictions(raw.json(), "hornet-t")
    multipart = service.client.post("/v1/classify?model=hornet-t", files={"file": (f"x.{fmt.lower()}", data)})
    assert multipart.status_code == 200, multipart.text
    assert multipart.json()["predictions"] == raw.json()["predictions"]


def test_large_model_answers_from_the_22k_label_set(service):
    r = service.client.post("/v1/classify?model=hornet-l-gf384", files={"file": ("cat.jpg", JPEG, "image/jpeg")})
    assert r.status_code == 200, r.text
    _check_predictions(r.json(), "hornet-l-gf384")


def test_a_variant_that_decodes_in_its_replica_says_so_and_answers_for_each_jpeg(service):
    cards = {m["id"]: m for m in service.client.get("/v1/models").json()["models"]}
    assert (cards["hornet-t"]["decode"], cards["hornet-l-gf384"]["decode"]) == ("gateway", "replica")
    corrupt = JPEG[:600] + b"\x00" * 64  # a header the gateway accepts, then data no decoder takes
    bad = service.client.post(
        "/v1/classify?model=hornet-l-gf384", content=corrupt, headers={"Content-Type": "image/jpeg"}
    )
    assert "cannot decode" in api_error(bad, 400, "invalid_image")["message"]
    good = service.client.post(
        "/v1/classify?model=hornet-l-gf384", content=JPEG, headers={"Content-Type": "image/jpeg"}
    )
    assert good.status_code == 200, good.text
    _check_predictions(good.json(), "hornet-l-gf384")


def test_default_model_alias_top_k_and_headers(service):
    r = service.client.post(
        "/v1/classify?top_k=3", content=JPEG, headers={"Content-Type": "image/jpeg", "X-Request-ID": "req-42"}
    )
    assert r.status_code == 200
    _check_predictions(r.json(), "hornet-t", k=3)
    assert r.json()["request_id"] == "req-42" and r.headers["x-request-id"] == "req-42"
    timing = r.headers["server-timing"]
    assert all(f"{part};dur=" in timing for part in ("decode", "queue", "inference", "total"))
    alias = service.client.post("/v1/classify?model=hornet-tiny", content=JPEG, headers={"Content-Type": "image/jpeg"})
    assert alias.json()["model"] == "hornet-t"
    made = service.client.post("/v1/classify", content=JPEG, headers={"Content-Type": "image/jpeg"})
    assert len(made.json()["request_id"]) >= 16 and made.headers["x-request-id"] == made.json()["request_id"]


def test_unknown_model_message_lists_the_enabled_ones(service):
    r = service.client.post("/v1/classify?model=nope", content=JPEG, headers={"Content-Type": "image/jpeg"})
    assert "hornet-t, hornet-l-gf384" in api_error(r, 404, "unknown_model")["message"]


def test_pixel_bomb_is_413_before_decoding(service):
    from PIL import Image

    bomb = encode(Image.new("L", (6000, 6000)), "PNG")
    r = service.client.post("/v1/classify", content=bomb, headers={"Content-Type": "image/png"})
    assert "pixels" in api_error(r, 413, "payload_too_large")["message"]


def test_unknown_routes_and_methods_are_json(service):
    api_error(service.client.get("/v3/nothing"), 404, "not_found")
    assert service.client.get("/v2/nothing").json() == {"error": "Not Found"}  # under /v2, in OIP's form
    api_error(service.client.get("/v1/classify"), 405, "method_not_allowed")
    api_error(service.client.get("/v1/models/resnet"), 404, "unknown_model")
