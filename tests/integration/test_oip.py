"""The Open Inference Protocol (/v2) against the live service with a client this project did not write
(PyPI's tritonclient, HTTP): health, metadata, the same top-5 as /v1/classify, several images in one request and
one batch; then the hostile requests of the unit tests over raw HTTP, each a 4xx in OIP's form with its request id,
and the service answering after them with no replica restarted."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from model import labels
from service.daemon.local import serve_actors
from tests.support.helpers import poll
from tests.support.images import encode, photo
from tests.unit.service.http.test_oip import HOSTILE, oip_error

PHOTOS = [encode(photo(640, 480, seed=seed), "JPEG", quality=90) for seed in range(21, 25)]
TINY = encode(photo(32, 32), "JPEG")
LABEL_SETS = {"hornet-t": labels.imagenet_1k(), "hornet-l-gf384": labels.hornet_22k()}
# Cases whose request a real ingress may refuse before the gateway (a non-ASCII header value).
AT_THE_INGRESS = {"header length unicode digits"}


@pytest.fixture(scope="module")
def client(service):
    with triton.InferenceServerClient(urlsplit(service.base_url).netloc, network_timeout=120) as client:
        yield client


def _images(photos: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(photos)], "BYTES")
    tensor.set_data_from_numpy(np.array(photos, dtype=np.object_))
    return tensor


def _v1(service, model: str, data: bytes) -> list[dict]:
    response = service.client.post(f"/v1/classify?model={model}", content=data, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_tritonclient_sees_a_live_ready_server_and_its_models(client, replicas_at_start):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("hornet-t") and client.is_model_ready("hornet-large-gf384", "1")
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data", "model_configuration"]
    assert client.get_model_config("hornet-t")["max_batch_size"] == 32
    metadata = client.get_model_metadata("hornet-l-gf384")
    assert metadata["versions"] == ["1"]
    assert {(t["name"], t["datatype"]) for t in metadata["inputs"]} == {("image", "BYTES"), ("pixels", "UINT8")}
    assert [t["name"] for t in metadata["outputs"]] == ["class_index", "score", "label"]


@pytest.mark.parametrize("model", ["hornet-t", "hornet-l-gf384"])  # decoded in the gateway; in the replica
def test_a_photo_gets_the_same_top5_as_v1(service, client, model):
    result = client.infer(model, [_images(PHOTOS[:1])])
    expected = _v1(service, model, PHOTOS[0])
    assert result.as_numpy("class_index").tolist() == [[p["class_index"] for p in expected]]
    assert result.as_numpy("label")[0].astype(str).tolist() == [p["label"] for p in expected]
    assert result.as_numpy("score")[0].tolist() == pytest.approx([p["score"] for p in expected], rel=1e-5)
    assert result.get_response()["model_name"] == model


def assert_each_as_alone(service, indices: np.ndarray, scores: np.ndarray, names: np.ndarray) -> None:
    """Each PHOTOS image's top-3 from a batch of 4 (hornet-t) is its answer alone over /v1, a batch of 1: the same
    scores within float noise, and as top-1 the same class or one within that noise of it (bf16 may swap them)."""
    for i, data in enumerate(PHOTOS):
        expected = _v1(service, "hornet-t", data)[:3]
        assert scores[i].tolist() == pytest.approx([p["score"] for p in expected], abs=1e-4)
        assert indices[i, 0] in [p["class_index"] for p in expected if expected[0]["score"] - p["score"] <= 1e-4]
        assert names[i].astype(str).tolist() == [LABEL_SETS["hornet-t"][c].name for c in indices[i]]


def test_several_images_in_one_request_are_one_batch(service, client):
    """hornet-t batches up to 4: four images in one request, at an idle replica, are one batch of 4."""
    above_before, total_before = service.batches_above("hornet-t", 3)
    result = client.infer("hornet-tiny", [_images(PHOTOS)], request_id="batch-1",
                          outputs=[triton.InferRequestedOutput(name) for name in ("class_index", "score", "label")],
                          parameters={"top_k": 3})  # fmt: skip
    assert result.get_response()["id"] == "batch-1"
    indices, scores, names = result.as_numpy("class_index"), result.as_numpy("score"), result.as_numpy("label")
    assert indices.shape == scores.shape == names.shape == (4, 3)
    assert_each_as_alone(service, indices, scores, names)

    def one_more_batch_of_4() -> bool:
        above, total = service.batches_above("hornet-t", 3)
        return above - above_before >= 1 and total - total_before >= 1

    assert poll(one_more_batch_of_4, timeout_s=20)


def test_tritonclient_reads_the_oip_errors(client):
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("resnet-50", [_images(PHOTOS[:1])])
    assert unknown.value.status() == "404" and "unknown model 'resnet-50'" in unknown.value.message()
    with pytest.raises(InferenceServerException) as too_many:
        client.infer("hornet-t", [_images([TINY] * 33)])
    assert too_many.value.status() == "413" and "the limit is 32" in too_many.value.message()


@pytest.mark.parametrize("case", [case for case in HOSTILE if case not in AT_THE_INGRESS])
def test_hostile_requests_are_4xx_in_oip_form_with_their_request_id(service, case):
    (body, headers), status, _ = HOSTILE[case]  # messages there assume the unit tests' limits
    request_id = "hostile-" + re.sub(r"\W+", "-", case)
    response = service.client.post("/v2/models/hornet-t/infer", content=body,
                                   headers={**headers, "X-Request-ID": request_id})  # fmt: skip
    oip_error(response, status)
    assert response.headers["x-request-id"] == request_id


def test_the_rest_of_the_hostile_v2_requests(service):
    c = service.client
    oip_error(c.post("/v2/models/hornet-t/infer", content=b"{" + b" " * 6_000_100, headers={}), 413)
    oip_error(c.post("/v2/models/hornet-t/versions/7/infer", content=b"{}"), 404)
    oip_error(c.get("/v2/models/hornet-t/infer"), 405)
    oip_error(c.get("/v2/nothing"), 404)
    oip_error(c.post("/v2/models/hornet-t/infer", content=b"{}", headers={"Content-Encoding": "gzip"}), 415)


def test_after_the_hostile_requests_the_service_answers_and_no_replica_restarted(client, replicas_at_start):
    assert client.infer("hornet-t", [_images(PHOTOS[:2])]).as_numpy("class_index").shape == (2, 5)
    assert client.is_server_ready()
    assert serve_actors("SERVE_REPLICA") == replicas_at_start
