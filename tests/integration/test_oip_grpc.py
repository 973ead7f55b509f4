"""The Open Inference Protocol over gRPC against the live service, through Serve's gRPC ingress and HAProxy, with
clients this project did not write: PyPI's tritonclient.grpc (health, metadata, config, the same top-5 as
/v1/classify for a real photo, several images in one request, its errors); the hostile requests of the unit tests,
each refused with its status and its request id; the service answering after them with no replica restarted; then
Triton's perf_analyzer over HTTP and gRPC. API keys over gRPC: tests/unit/service/grpc (this session runs without)."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from loadtest import perf_analyzer
from service.daemon.local import serve_actors
from service.daemon.ray_env import GRPC_MAX_MESSAGE_BYTES
from tests.support import DATA
from tests.unit.service.grpc.test_grpc import HOSTILE, call, infer_request

from .test_oip import PHOTOS, TINY, _v1, assert_each_as_alone

PHOTO = (DATA / "public_input.png").read_bytes()  # a real photo


@pytest.fixture(scope="module")
def client(service):
    with triton.InferenceServerClient(service.grpc_address) as client:
        yield client


def _images(photos: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(photos)], "BYTES")
    tensor.set_data_from_numpy(np.array(photos, dtype=np.object_))
    return tensor


def test_tritonclient_grpc_sees_a_live_ready_server_its_models_and_their_config(service, client, replicas_at_start):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("hornet-t") and client.is_model_ready("hornet-large-gf384", "1")
    assert list(client.get_server_metadata().extensions) == ["model_configuration"]
    metadata = client.get_model_metadata("hornet-l-gf384")
    assert (metadata.name, list(metadata.versions)) == ("hornet-l-gf384", ["1"])
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("image", "BYTES", [-1, 1]),
        ("pixels", "UINT8", [-1, 384, 384, 3]),
    ]
    config = client.get_model_config("hornet-t").config
    assert config.max_batch_size == service.settings.limits.max_batch_images
    assert [(t.name, t.optional) for t in config.input] == [("image", True), ("pixels", True)]


@pytest.mark.parametrize("model", ["hornet-t", "hornet-l-gf384"])  # decoded in the gateway; in the replica
def test_a_real_photo_gets_the_same_top5_as_v1(service, client, model):
    result = client.infer(model, [_images([PHOTO])])
    expected = _v1(service, model, PHOTO)
    assert result.as_numpy("class_index").tolist() == [[p["class_index"] for p in expected]]
    assert result.as_numpy("label")[0].astype(str).tolist() == [p["label"] for p in expected]
    assert result.as_numpy("score")[0].tolist() == pytest.approx([p["score"] for p in expected], rel=1e-5)
    assert result.get_response().model_name == model


def test_several_images_in_one_request(service, client):
    result = client.infer("hornet-tiny", [_images(PHOTOS)], request_id="grpc-batch-1", parameters={"top_k": 3})
    assert result.get_response().id == "grpc-batch-1"
    indices, scores, names = result.as_numpy("class_index"), result.as_numpy("score"), result.as_numpy("label")
    assert indices.shape == scores.shape == names.shape == (4, 3)
    assert_each_as_alone(service, indices, scores, names)


def test_tritonclient_grpc_reads_the_errors(client):
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("resnet-50", [_images(PHOTOS[:1])])
    assert unknown.value.status() == "StatusCode.NOT_FOUND" and "unknown model 'resnet-50'" in unknown.value.message()
    with pytest.raises(InferenceServerException) as too_many:
        client.infer("hornet-t", [_images([TINY] * 33)])
    assert too_many.value.status() == "StatusCode.INVALID_ARGUMENT" and "the limit is 32" in too_many.value.message()


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_requests_are_refused_with_their_status_and_request_id(service, case):
    request, code, _ = HOSTILE[case]  # messages there assume the unit tests' limits
    answer = asyncio.run(call(service.grpc_address, "ModelInfer", request, [("x-request-id", f"hostile-{case}")]))
    assert answer.code == code and answer.details and answer.response is None, answer.details
    assert answer.trailing["x-request-id"] == f"hostile-{case}"


def test_a_message_over_serves_limit_is_refused_before_it_reaches_the_gateway(service):
    """gRPC itself refuses a message over RAY_SERVE_GRPC_MAX_MESSAGE_SIZE (service/daemon/ray_env.py)."""
    huge = infer_request(raw=[bytes(GRPC_MAX_MESSAGE_BYTES)])
    answer = asyncio.run(call(service.grpc_address, "ModelInfer", huge))
    assert answer.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in answer.details, answer.details


def test_after_the_hostile_requests_the_service_answers_and_no_replica_restarted(service, client, replicas_at_start):
    answer = asyncio.run(call(service.grpc_address, "ModelInfer", infer_request()))
    assert answer.code == grpc.StatusCode.OK and answer.response.outputs[0].shape == [2, 5]
    assert client.is_server_ready()
    assert serve_actors("SERVE_REPLICA") == replicas_at_start


def test_perf_analyzer_runs_over_http_and_grpc(service, tmp_path):
    """A short run each (three 1 s windows, any spread taken as stable): it finishes without an error."""
    binary = perf_analyzer.install()
    data = perf_analyzer.input_data(PHOTO, tmp_path / "input.json")
    host = service.settings.host
    for protocol, url in (("http", f"{host}:{service.settings.port}"), ("grpc", service.grpc_address)):
        output, rows = perf_analyzer.profile(binary, url, protocol, "hornet-t", data, concurrency=2, window_ms=1000,
                                             stability_percent=1000, timeout_s=120)  # fmt: skip
        print(output)
        assert [(r.protocol, r.concurrency) for r in rows] == [(protocol, 2)]
        assert rows[0].throughput > 0 and "error" not in output.lower()
