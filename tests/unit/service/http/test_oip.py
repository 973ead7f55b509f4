"""The Open Inference Protocol's REST routes (/v2) without a Ray cluster: the real gateway over stand-in classifier
handles (test_gateway.py), bodies built by hand (every hostile case) and by tritonclient's own codec; the codec
alone under hypothesis. tests/integration/test_oip.py repeats the main paths with tritonclient against real Serve."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ray.serve.exceptions import BackPressureError

from model.labels import for_head
from service import oip
from service.config import Limits
from service.http import errors
from service.http import oip as rest_oip
from service.http.decode import DecodeQueueFull
from service.http.schemas import ModelInfo
from tests.support.images import encode, photo
from tests.unit.service.http import test_gateway

serve_app = test_gateway.serve_app  # the gateway over stand-in classifiers
run = test_gateway.run
JPEGS = [encode(photo(320, 240, seed=seed), "JPEG", quality=90) for seed in range(3)]
HEADER = "Inference-Header-Content-Length"
LABELS = for_head(1000, None)
KEY = "hsk_test-" + "k" * 32


def serialise(items: list[bytes]) -> bytes:
    """BYTES elements as the binary extension carries them: a 4-byte little-endian length, then the bytes."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def image_input(images: list[bytes], shape: list[int] | None = None, size: int | None = None) -> tuple[dict, bytes]:
    raw = serialise(images)
    spec = {"name": "image", "datatype": "BYTES", "shape": shape or [len(images)],
            "parameters": {"binary_data_size": len(raw) if size is None else size}}  # fmt: skip
    return spec, raw


def body_of(inputs: list[dict], binary: bytes = b"", **fields: Any) -> tuple[bytes, dict[str, str]]:
    """A request body: the JSON, then `binary` (with its header when there is any)."""
    header = json.dumps({"inputs": inputs, **fields}).encode()
    return header + binary, ({HEADER: str(len(header))} if binary else {})


def binary_request(images: list[bytes] = JPEGS[:1], **fields: Any) -> tuple[bytes, dict[str, str]]:
    spec, raw = image_input(images)
    return body_of([spec], raw, **fields)


def infer(client: httpx.AsyncClient, request: tuple[bytes, dict[str, str]], model: str = "hornet-t",
          headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
    body, own = request
    return run(client.post(f"/v2/models/{model}/infer", content=body, headers={**own, **(headers or {})}))


def outputs_of(response: httpx.Response) -> dict[str, np.ndarray]:
    """The answer's outputs as tritonclient reads them."""
    from tritonclient.http import InferenceServerClient

    assert response.status_code == 200, response.text
    length = response.headers.get(HEADER)
    result = InferenceServerClient.parse_response_body(response.content, header_length=int(length) if length else None)
    return {output["name"]: result.as_numpy(output["name"]) for output in result.get_response()["outputs"]}


def oip_error(response: httpx.Response, status: int) -> str:
    """The message of an error in OIP's form: `{"error": message}` and nothing else."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"], body
    return body["error"]


# ---- metadata and health ---------------------------------------------------------------------------------


def test_server_metadata_health_and_readiness(serve_app):
    client, _ = serve_app()
    server = run(client.get("/v2")).json()
    assert server["name"] == "hornet-serve" and server["extensions"] == ["binary_tensor_data", "model_configuration"]
    assert run(client.get("/v2/health/live")).json() == {"live": True}
    assert run(client.get("/v2/health/ready")).json() == {"ready": True}
    assert run(client.get("/v2/models/hornet-t/ready")).json() == {"name": "hornet-t", "ready": True}
    assert run(client.get("/v2/models/hornet-tiny/versions/1/ready")).json()["name"] == "hornet-t"


def test_model_metadata_names_the_inputs_at_the_variants_size(serve_app):
    client, _ = serve_app()
    small = run(client.get("/v2/models/hornet-t")).json()
    assert small == {
        "name": "hornet-t", "versions": ["1"], "platform": "pytorch",
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1, 1]},
                   {"name": "pixels", "datatype": "UINT8", "shape": [-1, 224, 224, 3]}],
        "outputs": [{"name": "class_index", "datatype": "INT64", "shape": [-1, -1]},
                    {"name": "score", "datatype": "FP32", "shape": [-1, -1]},
                    {"name": "label", "datatype": "BYTES", "shape": [-1, -1]}],
    }  # fmt: skip
    large = run(client.get("/v2/models/hornet-large-gf384/versions/1")).json()
    assert large["name"] == "hornet-l-gf384" and large["inputs"][1]["shape"] == [-1, 384, 384, 3]
    paths = run(client.get("/openapi.json")).json()["paths"]
    assert {"/v2", "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"} <= set(paths)


def test_model_config_is_what_perf_analyzer_reads(serve_app):
    client, _ = serve_app()
    config = run(client.get("/v2/models/hornet-large-gf384/config")).json()
    assert config == oip.model_config("hornet-l-gf384", 384, 32)
    assert config["max_batch_size"] == 32 and [t["optional"] for t in config["input"]] == [True, True]
    assert run(client.get("/v2/models/hornet-t/versions/1/config")).json()["input"][1]["dims"] == [224, 224, 3]
    assert "no version '2'" in oip_error(run(client.get("/v2/models/hornet-t/versions/2/config")), 404)


# ---- infer ----------------------------------------------------------------------------------------------


def test_a_batch_of_images_reaches_the_replica_in_one_call_and_comes_back_labelled(serve_app):
    client, classifiers = serve_app()
    response = infer(client, binary_request(JPEGS, parameters={"top_k": 3, "binary_data_output": True}))
    assert response.headers["content-type"] == "application/octet-stream"
    outputs = outputs_of(response)
    assert outputs["class_index"].dtype == np.int64 and outputs["class_index"].shape == (3, 3)
    assert outputs["score"].dtype == np.float32 and outputs["score"].shape == (3, 3)
    assert outputs["class_index"].tolist() == [[0, 1, 2]] * 3  # the stand-in's answer, best first
    assert outputs["score"][0].tolist() == pytest.approx([1 / 2, 1 / 3, 1 / 4])
    assert [label.decode() for label in outputs["label"][0]] == [LABELS[i].name for i in range(3)]
    stand_in = classifiers["hornet-t"]
    assert stand_in.calls == [3] and stand_in.seen == [((224, 224, 3), 3)] * 3
    head = json.loads(response.content[: int(response.headers[HEADER])])
    assert head["parameters"] == {"weights": "random-init"} and "id" not in head


def test_tritonclient_builds_the_request_and_reads_the_answer(serve_app):
    """Its codec, without its transport: binary image input, one output in JSON and two in binary, a request id."""
    from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

    client, classifiers = serve_app()
    images = InferInput("image", [2, 1], "BYTES")
    images.set_data_from_numpy(np.array([[JPEGS[0]], [JPEGS[1]]], dtype=np.object_))
    outputs = [InferRequestedOutput("label", binary_data=False), InferRequestedOutput("score"),
               InferRequestedOutput("class_index")]  # fmt: skip
    body, json_size = InferenceServerClient.generate_request_body([images], outputs, request_id="r-7")
    response = infer(client, (body, {HEADER: str(json_size)}), model="hornet-tiny")
    head = json.loads(response.content[: int(response.headers[HEADER])])
    assert (head["id"], head["model_name"], head["model_version"]) == ("r-7", "hornet-t", "1")
    assert [o["name"] for o in head["outputs"]] == ["label", "score", "class_index"]
    assert "data" in head["outputs"][0] and "binary_data_size" in head["outputs"][1]["parameters"]
    answer = outputs_of(response)
    assert answer["class_index"].shape == (2, 5) and answer["label"][1, 0] == LABELS[0].name  # JSON data: str
    assert classifiers["hornet-t"].calls == [2]


def test_json_only_base64_images_and_json_outputs(serve_app):
    client, _ = serve_app()
    spec = {"name": "image", "datatype": "BYTES", "shape": [2, 1], "parameters": {"binary_data_encoding": "base64"},
            "data": [base64.b64encode(j).decode() for j in JPEGS[:2]]}  # fmt: skip
    request = body_of([spec], id="json-1", parameters={"top_k": 2}, outputs=[{"name": "label"}, {"name": "score"}])
    response = infer(client, request, headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert HEADER.lower() not in response.headers
    body = response.json()
    assert body["id"] == "json-1" and [o["name"] for o in body["outputs"]] == ["label", "score"]
    assert body["outputs"][0] == {"name": "label", "datatype": "BYTES", "shape": [2, 2],
                                  "data": [LABELS[0].name, LABELS[1].name] * 2}  # fmt: skip


def test_decoded_pixels_go_to_the_replica_as_they_are_in_binary_or_json(serve_app):
    client, classifiers = serve_app()
    pixels = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    received: list[np.ndarray] = []
    stand_in = classifiers["hornet-t"]
    stand_in.behaviour = lambda image, top_k: received.append(np.array(image)) or stand_in._answer(image, top_k)
    spec = {"name": "pixels", "datatype": "UINT8", "shape": [2, 224, 224, 3],
            "parameters": {"binary_data_size": pixels.nbytes}}  # fmt: skip
    assert infer(client, body_of([spec], pixels.tobytes())).status_code == 200
    one = {"name": "pixels", "datatype": "UINT8", "shape": [1, 224, 224, 3], "data": pixels[1].ravel().tolist()}
    assert infer(client, body_of([one])).status_code == 200
    assert [r.tolist() for r in received] == [pixels[0].tolist(), pixels[1].tolist(), pixels[1].tolist()]


def test_many_images_decode_decode_threads_at_a_time(serve_app, monkeypatch):
    client, _ = serve_app(gateway={"decode_threads": 2})
    gateway = test_gateway.gateway_module.serve.get_replica_context().servable_object
    running, most = 0, 0
    original = gateway.decoder.prepare

    async def counted(*args: Any) -> Any:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.01)
            return await original(*args)
        finally:
            running -= 1

    monkeypatch.setattr(gateway.decoder, "prepare", counted)
    assert infer(client, binary_request(JPEGS * 3)).status_code == 200
    assert most == 2


# ---- limits and hostile input: each a 4xx in OIP's form, and the gateway serves on ---------------------


def test_more_images_than_max_batch_images_is_413(serve_app):
    client, classifiers = serve_app(limits={"max_batch_images": 2})
    binary = infer(client, binary_request(JPEGS))
    assert "3 images in one request; the limit is 2" in oip_error(binary, 413)
    spec = {"name": "image", "datatype": "BYTES", "shape": [3], "parameters": {"binary_data_encoding": "base64"},
            "data": [""] * 3}  # fmt: skip
    assert "the limit is 2" in oip_error(infer(client, body_of([spec])), 413)
    assert infer(client, binary_request(JPEGS[:2])).status_code == 200
    assert classifiers["hornet-t"].calls == [2]


def _with(spec_change: dict, raw: bytes | None = None, **fields: Any) -> tuple[bytes, dict[str, str]]:
    spec, good_raw = image_input(JPEGS[:2])
    return body_of([{**spec, **spec_change}], good_raw if raw is None else raw, **fields)


def _header(value: str | bytes) -> tuple[bytes, dict]:
    body, _ = binary_request()
    return body, {HEADER: value}


_SPEC, _RAW = image_input(JPEGS[:2])
HOSTILE = {
    "wrong datatype": (_with({"datatype": "FP32"}), 400, "must be BYTES"),
    "unknown datatype": (_with({"datatype": "x" * 10_000}), 400, "must be BYTES"),
    "shape says 3, data holds 2": (_with({"shape": [3]}), 400, "holds 2 elements, its shape says 3"),
    "shape says 1, data holds 2": (_with({"shape": [1]}), 400, "bytes after its 1 elements"),
    "shape of the wrong rank": (_with({"shape": [2, 2]}), 400, "must have shape [N] or [N, 1]"),
    "shape of zero images": (_with({"shape": [0]}), 400, "N >= 1"),
    "negative shape": (_with({"shape": [-2]}), 400, "N >= 1"),
    "shape of booleans": (_with({"shape": [True]}), 400, "list of at most 8 integers"),
    "shape not a list": (_with({"shape": "2"}), 400, "list of at most 8 integers"),
    "huge shape": (_with({"shape": [10**30]}), 413, "the limit is 32"),
    "binary_data_size larger than the body": (_with({"parameters": {"binary_data_size": len(_RAW) + 1}}), 400,
                                              f"but {len(_RAW)} bytes follow"),
    "binary_data_size smaller than the body": (_with({"parameters": {"binary_data_size": len(_RAW) - 1}}), 400,
                                               "claimed by no input"),
    "negative binary_data_size": (_with({"parameters": {"binary_data_size": -1}}), 400, "negative"),
    "huge binary_data_size": (_with({"parameters": {"binary_data_size": 2**62}}), 400, "binary_data_size"),
    "binary_data_size a string": (_with({"parameters": {"binary_data_size": "12"}}), 422, "must be int"),
    "an element's length past the end": (_with({}, b"\xff\xff\xff\xff" + _RAW[4:]), 400, "claims 4294967295 bytes"),
    "header length larger than the body": (_header("999999"), 400, "but the body has"),
    "header length smaller than the JSON": (_header("10"), 400, "not valid JSON"),
    "header length zero": (_header("0"), 400, "is 0"),
    "header length negative": (_header("-5"), 400, "must be a number of bytes"),
    "header length not a number": (_header("12abc"), 400, "must be a number of bytes"),
    "header length unicode digits": (_header(b"\xb2"), 400, "must be a number of bytes"),
    "header length huge": (_header("9" * 40), 400, "but the body has"),
    "binary data without the header": ((binary_request()[0], {}), 400, "not valid JSON"),
    "thousands of inputs": (body_of([_SPEC] * 5000), 400, "must list 1 entry, not 5000"),
    "no inputs": (body_of([]), 400, "must list 1 entry, not 0"),
    "two inputs": (body_of([_SPEC, {**_SPEC, "name": "pixels"}], _RAW * 2), 400, "not 2"),
    "thousands of outputs": (_with({}, outputs=[{"name": "score"}] * 5000), 400, "not 5000"),
    "an output twice": (_with({}, outputs=[{"name": "score"}, {"name": "score"}]), 400, "twice"),
    "unknown output": (_with({}, outputs=[{"name": "logits"}]), 400, "unknown output 'logits'"),
    "unknown input": (_with({"name": "input__0"}), 400, "unknown input 'input__0'"),
    "deeply nested JSON": ((b"[" * 100_000 + b"]" * 100_000, {}), 400, "not valid JSON"),
    "deep nesting in a parameter": (_with({}, parameters={"top_k": [[[[[5]]]]]}), 422, "must be int"),
    "not JSON": ((b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, {}), 400, "not valid JSON"),
    "JSON, not an object": ((b"[1, 2, 3]", {}), 400, "must be a JSON object"),
    "empty body": ((b"", {}), 400, "empty"),
    "unknown key": (_with({}, model="hornet-l"), 400, "unknown key 'model'"),
    "unknown request parameter": (_with({}, parameters={"priority": 1}), 400, "unknown request parameter"),
    "unknown input parameter": (_with({"parameters": {"shared_memory_region": "x"}}), 400, "unknown input"),
    "unknown output parameter": (_with({}, outputs=[{"name": "score", "parameters": {"class_count": 3}}]), 400,
                                 "unknown output 'score' parameter"),
    "top_k a string": (_with({}, parameters={"top_k": "5"}), 422, "must be int"),
    "top_k a boolean": (_with({}, parameters={"top_k": True}), 422, "must be int"),
    "top_k zero": (_with({}, parameters={"top_k": 0}), 422, "between 1 and 100"),
    "top_k over the limit": (_with({}, parameters={"top_k": 101}), 422, "between 1 and 100"),
    "id not a string": (_with({}, id=7), 400, "id must be a string"),
    "data and binary_data_size both": (_with({"data": ["a"]}), 400, "not both"),
    "neither data nor binary_data_size": (body_of([{**_SPEC, "parameters": {}}]), 400, "either data"),
    "BYTES in JSON, not base64": (body_of([{**_SPEC, "parameters": {}, "data": ["a", "b"]}]), 400, "base64"),
    "invalid base64": (body_of([{**_SPEC, "parameters": {"binary_data_encoding": "base64"}, "data": ["@@", "A"]}]),
                       400, "not valid base64"),
    "another encoding": (body_of([{**_SPEC, "parameters": {"binary_data_encoding": "hex"}, "data": ["00", "01"]}]),
                         400, "binary_data_encoding"),
    "nested data": (body_of([{**_SPEC, "parameters": {"binary_data_encoding": "base64"}, "data": [["QQ=="]] * 2}]),
                    400, "base64 string"),
    "a corrupt image": (binary_request([JPEGS[0], JPEGS[1][:100]]), 400, "image 1: cannot decode"),
    "an empty image": (binary_request([JPEGS[0], b""]), 400, "image 1: the image is empty"),
    "pixels at another size": (body_of([{"name": "pixels", "datatype": "UINT8", "shape": [1, 384, 384, 3],
                                         "parameters": {"binary_data_size": 384 * 384 * 3}}], bytes(384 * 384 * 3)),
                               400, "[N, 224, 224, 3]"),
    "pixels shorter than their shape": (body_of([{"name": "pixels", "datatype": "UINT8", "shape": [1, 224, 224, 3],
                                                  "parameters": {"binary_data_size": 100}}], bytes(100)),
                                        400, "its shape needs 150528"),
    "pixels out of range": (body_of([{"name": "pixels", "datatype": "UINT8", "shape": [1, 224, 224, 3],
                                      "data": [256] * (224 * 224 * 3)}]), 400, "integers 0..255"),
    "pixels as BYTES": (body_of([{"name": "pixels", "datatype": "BYTES", "shape": [1, 224, 224, 3],
                                  "parameters": {"binary_data_size": 4}}], bytes(4)), 400, "must be UINT8"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_requests_are_4xx_in_oip_form_and_the_gateway_serves_on(serve_app, case):
    client, classifiers = serve_app()
    request, status, in_message = HOSTILE[case]
    assert in_message in oip_error(infer(client, request), status)
    assert classifiers["hornet-t"].calls == []  # nothing reached the replica
    assert infer(client, binary_request()).status_code == 200


@pytest.mark.parametrize(
    ("headers", "status", "in_message"),
    [({"Content-Type": "text/plain"}, 415, "unsupported Content-Type"),
     ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported Content-Type"),
     ({"Content-Encoding": "gzip"}, 415, "send the body uncompressed")],
)  # fmt: skip
def test_media_types_and_compression_are_whitelisted(serve_app, headers, status, in_message):
    client, _ = serve_app()
    assert in_message in oip_error(infer(client, binary_request(), headers=headers), status)
    ok = infer(client, binary_request(), headers={"Content-Type": "application/octet-stream; charset=x"})
    assert ok.status_code == 200


def test_a_body_over_the_limit_is_413(serve_app):
    client, _ = serve_app(limits={"max_body_bytes": 4096})
    assert "limit is 4096" in oip_error(infer(client, binary_request(JPEGS)), 413)


def test_unknown_models_versions_routes_and_methods(serve_app):
    client, _ = serve_app(models=["hornet-t"])
    assert "enabled models: hornet-t" in oip_error(infer(client, binary_request(), model="resnet-50"), 404)
    assert "not enabled" in oip_error(run(client.get("/v2/models/hornet-b/ready")), 404)
    versioned = run(client.post("/v2/models/hornet-t/versions/2/infer", content=binary_request()[0]))
    assert "no version '2'" in oip_error(versioned, 404)
    assert "no version" in oip_error(run(client.get("/v2/models/hornet-t/versions/" + "x" * 500)), 404)
    oip_error(run(client.get("/v2/nothing")), 404)
    oip_error(run(client.get("/v2/models/hornet-t/infer")), 405)
    body, headers = binary_request()
    assert run(client.post("/v2/models/hornet-t/versions/1/infer", content=body, headers=headers)).status_code == 200


def test_headers_over_the_limit_are_431_in_oip_form(serve_app):
    client, _ = serve_app(limits={"max_header_bytes": 2048})
    oip_error(infer(client, binary_request(), headers={"X-Padding": "p" * 3000}), 431)


# ---- one contract: keys, back-pressure, time limits, readiness, metrics ---------------------------------


def test_api_keys_and_rate_limits(serve_app, tmp_path: Path):
    keys = tmp_path / "api_keys"
    keys.write_text(f"alice {hashlib.sha256(KEY.encode()).hexdigest()}\n")
    client, _ = serve_app(auth={"enabled": True, "keys_file": str(keys), "rate_per_s": 0.01, "burst": 2})
    missing = infer(client, binary_request())
    assert "API key" in oip_error(missing, 401) and missing.headers["www-authenticate"].startswith("Bearer")
    oip_error(run(client.get("/v2/models/hornet-t")), 401)
    oip_error(run(client.get("/v2/models/hornet-t/ready")), 401)
    oip_error(run(client.get("/v2/models/hornet-t/config")), 401)
    good = {"Authorization": f"Bearer {KEY}"}
    assert run(client.get("/v2/models/hornet-t", headers=good)).status_code == 200
    assert infer(client, binary_request(JPEGS), headers=good).status_code == 200  # 3 images, one token
    limited = infer(client, binary_request(), headers=good)
    assert "alice" in oip_error(limited, 429) and int(limited.headers["retry-after"]) >= 1
    for path in ("/v2", "/v2/health/live", "/v2/health/ready"):  # no key needed
        assert run(client.get(path)).status_code == 200


def test_back_pressure_is_503_with_retry_after(serve_app):
    client, classifiers = serve_app()

    def overloaded(image, top_k):
        raise BackPressureError(num_queued_requests=8, max_queued_requests=8)

    classifiers["hornet-t"].behaviour = overloaded
    response = infer(client, binary_request())
    assert "overloaded" in oip_error(response, 503) and response.headers["retry-after"] == "1"


def test_a_classifier_past_the_time_limit_is_504_and_the_call_cancelled(serve_app):
    client, classifiers = serve_app(timeouts={"inference_s": 0.2})

    async def stall(image, top_k):
        await asyncio.sleep(5)

    classifiers["hornet-t"].behaviour = stall
    assert "0.2s" in oip_error(infer(client, binary_request(JPEGS)), 504)
    assert classifiers["hornet-t"].classify_many.cancelled == 1


def test_a_full_decode_lane_is_503_while_parsing_too(serve_app, monkeypatch):
    client, _ = serve_app()
    gateway = test_gateway.gateway_module.serve.get_replica_context().servable_object

    async def full(fn, *args):
        raise DecodeQueueFull("the decode queue is full (34 images)")

    monkeypatch.setattr(gateway.decoder, "run", full)
    response = infer(client, binary_request())
    assert "queue is full" in oip_error(response, 503) and response.headers["retry-after"] == "1"


def test_a_variant_that_failed_to_load_is_503_on_every_route_that_needs_it(serve_app):
    client, classifiers = serve_app()
    classifiers["hornet-l-gf384"].info = ModelInfo(id="hornet-l-gf384", ready=False, reason="sha256 mismatch",
                                                   precision="auto")  # fmt: skip
    for response in (run(client.get("/v2/models/hornet-l-gf384/ready")), run(client.get("/v2/health/ready")),
                     infer(client, binary_request(), model="hornet-l-gf384")):  # fmt: skip
        assert "sha256 mismatch" in oip_error(response, 503) and response.headers["retry-after"] == "1"
    assert run(client.get("/v2/models/hornet-l-gf384")).status_code == 200  # metadata is static
    assert infer(client, binary_request()).status_code == 200


def test_request_metrics_are_labelled_by_protocol(serve_app, monkeypatch):
    client, _ = serve_app()
    gateway = test_gateway.gateway_module.serve.get_replica_context().servable_object
    recorded: list[dict[str, str]] = []
    monkeypatch.setattr(gateway.metrics.requests, "inc", lambda tags: recorded.append(tags))
    infer(client, binary_request())
    infer(client, _with({"datatype": "FP32"}))
    run(client.post("/v1/classify", content=JPEGS[0], headers={"Content-Type": "image/jpeg"}))
    assert recorded == [{"model": "hornet-t", "status": "200", "protocol": "http_v2"},
                        {"model": "hornet-t", "status": "400", "protocol": "http_v2"},
                        {"model": "hornet-t", "status": "200", "protocol": "http_v1"}]  # fmt: skip


# ---- the codec alone ------------------------------------------------------------------------------------


def test_output_tensors_serialise_as_the_binary_extension_says():
    (index, score, label) = oip.output_tensors([[7, 3]], [[0.5, 0.25]], lambda i: f"class {i}", list(oip.OUTPUTS))
    assert index.raw() == struct.pack("<2q", 7, 3) and score.raw() == struct.pack("<2f", 0.5, 0.25)
    assert label.raw() == serialise([b"class 7", b"class 3"]) and label.elements() == ["class 7", "class 3"]
    assert (index.shape, index.elements(), score.elements()) == ([1, 2], [7, 3], [0.5, 0.25])


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "inputs", "outputs", "parameters", "name", "shape", "datatype", "data",
                         "binary_data_size", "binary_data_encoding", "top_k", "binary_data"]), inner, max_size=5),
    max_leaves=30,
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_JSON, tail=st.binary(max_size=64), length=st.none() | st.integers(-5, 400))
def test_the_codec_refuses_whatever_it_cannot_read_with_a_4xx(document, tail, length):
    """Arbitrary JSON (with this protocol's names, so that it gets deep), then arbitrary bytes, with any header."""
    header = json.dumps(document).encode()
    try:
        rest_oip.parse_infer(header + tail, length, 224, Limits())
    except errors.ApiError as exc:
        assert 400 <= exc.status < 500
