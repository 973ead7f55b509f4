"""KServe's gRPC service without a Ray cluster: the real Gateway over stand-in classifier handles (test_gateway.py),
behind a real gRPC server that calls its methods as Serve's gRPC ingress does, with tritonclient.grpc's client and
with messages built by hand (every hostile case); the codec alone under hypothesis. tests/integration/test_oip.py
repeats the main paths through real Serve, HAProxy and classifiers."""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ray.serve.exceptions import BackPressureError
from ray.serve.grpc_util import RayServegRPCContext

from model.labels import for_head
from service import oip
from service.config import Limits, Settings
from service.grpc import codec, kserve
from service.http import errors
from service.http.schemas import ModelInfo
from tests.support.images import encode, photo
from tests.unit.service.http import test_gateway

JPEGS = [encode(photo(320, 240, seed=seed), "JPEG", quality=90) for seed in range(3)]
LABELS = for_head(1000, None)
KEY = "hsk_test-" + "k" * 32
SERVE_ID = "serve-request-id"
Stands = dict[str, test_gateway.StandInClassifier]


class ServeLike:
    """Serve's direct-ingress gRPC path for each RPC (ray/serve/_private/replica.py,
    `_direct_ingress_grpc_unary_response`): a RayServegRPCContext carrying Serve's request id, the deployment's
    method of the RPC's name, then the context's code, details and trailing metadata set on the call."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway

    def __getattr__(self, name: str) -> Callable[[Message, grpc.aio.ServicerContext], Awaitable[Message]]:
        method = getattr(self.gateway, name)

        async def call(request: Message, context: grpc.aio.ServicerContext) -> Message:
            serve_context = RayServegRPCContext(context)
            serve_context.set_trailing_metadata([("request_id", SERVE_ID)])
            answer = await method(request, grpc_context=serve_context)
            serve_context._set_on_grpc_context(context)
            return answer

        return call


@asynccontextmanager
async def served(**overrides: Any) -> AsyncIterator[tuple[str, Stands, Any]]:
    """A gRPC server on a free port over a gateway with these settings: (address, stand-ins, gateway)."""
    config = Settings.model_validate({"models": ["hornet-t", "hornet-l-gf384"], **overrides})
    stands = {m: test_gateway.StandInClassifier(m, 21841 if m == "hornet-l-gf384" else 1000) for m in config.models}
    gateway, _ = test_gateway._gateway(config, stands)
    server = grpc.aio.server()
    kserve.add_GRPCInferenceServiceServicer_to_server(ServeLike(gateway), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", stands, gateway
    finally:
        await server.stop(None)


class Answer:
    """A call's outcome as a gRPC client sees it."""

    def __init__(self, response: Message | None, code: grpc.StatusCode, details: str, trailing: Sequence) -> None:
        self.response, self.code, self.details, self.trailing = response, code, details, dict(trailing)


async def call(address: str, rpc: str, request: Message, metadata: Sequence[tuple[str, str]] = ()) -> Answer:
    """One RPC with this project's messages over a plain channel."""
    async with grpc.aio.insecure_channel(address) as channel:
        method = channel.unary_unary(f"/{kserve.SERVICE}/{rpc}", request_serializer=type(request).SerializeToString,
                                     response_deserializer=kserve.message(f"{rpc}Response").FromString)  # fmt: skip
        pending = method(request, metadata=tuple(metadata))
        try:
            response = await pending
        except grpc.aio.AioRpcError as exc:
            return Answer(None, exc.code(), exc.details() or "", exc.trailing_metadata() or ())
        return Answer(response, await pending.code(), await pending.details(), await pending.trailing_metadata())


def run(scenario: Callable[..., Awaitable[None]], **overrides: Any) -> None:
    async def main() -> None:
        async with served(**overrides) as (address, stands, gateway):
            await scenario(address, stands, gateway)

    asyncio.run(main())


def serialise(items: Sequence[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def set_parameter(parameter: Message, value: object) -> None:
    """An InferParameter holding `value` (None: none of its fields set)."""
    field = {bool: "bool_param", int: "int64_param", str: "string_param", float: "double_param"}.get(type(value))
    parameter.SetInParent()
    if field is not None:
        setattr(parameter, field, value)


def infer_request(
    inputs: Sequence[dict] | None = None,
    raw: Sequence[bytes] | None = None,
    parameters: dict[str, object] | None = None,
    outputs: Sequence[tuple[str, dict]] = (),
    **fields: Any,
) -> Message:
    """A ModelInferRequest; by default two JPEGs as input `image` [2] in raw_input_contents."""
    request = kserve.ModelInferRequest(**{"model_name": "hornet-t", **fields})
    for spec in [{"name": "image", "datatype": "BYTES", "shape": [2]}] if inputs is None else inputs:
        tensor = request.inputs.add(name=spec["name"], datatype=spec["datatype"], shape=spec["shape"])
        for field, values in spec.get("contents", {}).items():
            getattr(tensor.contents, field).extend(values)
        for name, value in spec.get("parameters", {}).items():
            set_parameter(tensor.parameters[name], value)
    request.raw_input_contents.extend([serialise(JPEGS[:2])] if raw is None else raw)
    for name, value in (parameters or {}).items():
        set_parameter(request.parameters[name], value)
    for name, output_parameters in outputs:
        output = request.outputs.add(name=name)
        for key, value in output_parameters.items():
            set_parameter(output.parameters[key], value)
    return request


def image(shape: list[int], **spec: Any) -> dict:
    return {"name": "image", "datatype": "BYTES", "shape": shape, **spec}


def pixels(shape: list[int], **spec: Any) -> dict:
    return {"name": "pixels", "datatype": "UINT8", "shape": shape, **spec}


INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
S224 = 224 * 224 * 3


# ---- tritonclient.grpc: health, metadata, config, infer ---------------------------------------------------


def test_tritonclient_grpc_reads_health_metadata_and_the_config_perf_analyzer_needs():
    from tritonclient.grpc.aio import InferenceServerClient

    async def scenario(address: str, stands: Stands, gateway: Any) -> None:
        client = InferenceServerClient(address)
        try:
            assert await client.is_server_live() and await client.is_server_ready()
            server = await client.get_server_metadata()
            assert (server.name, server.version, list(server.extensions)) == ("hornet-serve", "0.1.0",
                                                                             ["model_configuration"])  # fmt: skip
            assert await client.is_model_ready("hornet-tiny") and await client.is_model_ready("hornet-l-gf384", "1")
            metadata = await client.get_model_metadata("hornet-l-gf384")
            as_rest = oip.model_metadata("hornet-l-gf384", 384)
            assert (metadata.name, list(metadata.versions), metadata.platform) == ("hornet-l-gf384", ["1"], "pytorch")
            assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
                (t["name"], t["datatype"], t["shape"]) for t in as_rest["inputs"]]  # fmt: skip
            assert [t.name for t in metadata.outputs] == list(oip.OUTPUTS)
            config = (await client.get_model_config("hornet-t", as_json=True))["config"]
            assert config["max_batch_size"] == 32 and config["name"] == "hornet-t"
            assert [(t["name"], t["data_type"], t.get("optional")) for t in config["input"]] == [
                ("image", "TYPE_STRING", True), ("pixels", "TYPE_UINT8", True)]  # fmt: skip
            assert [t["name"] for t in config["output"]] == list(oip.OUTPUTS)
        finally:
            await client.close()

    run(scenario)


def test_a_batch_of_images_reaches_the_replica_in_one_call_and_comes_back_labelled():
    from tritonclient.grpc.aio import InferenceServerClient, InferInput, InferRequestedOutput

    async def scenario(address: str, stands: Stands, gateway: Any) -> None:
        client = InferenceServerClient(address)
        try:
            images = InferInput("image", [3], "BYTES")
            images.set_data_from_numpy(np.array(JPEGS, dtype=np.object_))
            outputs = [InferRequestedOutput(name) for name in ("label", "score", "class_index")]
            result = await client.infer("hornet-tiny", [images], outputs=outputs, request_id="g-1",
                                        parameters={"top_k": 3})  # fmt: skip
        finally:
            await client.close()
        response = result.get_response()
        assert (response.id, response.model_name, response.model_version) == ("g-1", "hornet-t", "1")
        assert [o.name for o in response.outputs] == ["label", "score", "class_index"]
        assert response.parameters["weights"].string_param == "random-init"
        assert result.as_numpy("class_index").tolist() == [[0, 1, 2]] * 3  # the stand-in's answer, best first
        assert result.as_numpy("score").dtype == np.float32
        assert result.as_numpy("score")[2].tolist() == pytest.approx([1 / 2, 1 / 3, 1 / 4])
        assert [label.decode() for label in result.as_numpy("label")[0]] == [LABELS[i].name for i in range(3)]
        assert stands["hornet-t"].calls == [3] and stands["hornet-t"].seen == [((224, 224, 3), 3)] * 3

    run(scenario)


def test_decoded_pixels_in_raw_or_in_uint_contents_reach_the_replica_as_they_are():
    data = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)

    async def scenario(address: str, stands: Stands, gateway: Any) -> None:
        received: list[np.ndarray] = []
        stand = stands["hornet-t"]
        stand.behaviour = lambda image, top_k: received.append(np.array(image)) or stand._answer(image, top_k)
        raw = await call(address, "ModelInfer", infer_request([pixels([2, 224, 224, 3])], raw=[data.tobytes()]))
        contents = infer_request([pixels([1, 224, 224, 3], contents={"uint_contents": data[1].ravel().tolist()})],
                                 raw=[])  # fmt: skip
        assert raw.code == (await call(address, "ModelInfer", contents)).code == grpc.StatusCode.OK
        assert [r.tolist() for r in received] == [data[0].tolist(), data[1].tolist(), data[1].tolist()]
        assert raw.response.outputs[0].shape == [2, 5]

    run(scenario)


def test_the_parameter_perf_analyzer_sends_on_every_call_is_taken():
    async def scenario(address: str, stands: Stands, gateway: Any) -> None:
        request = infer_request(parameters={"triton_enable_empty_final_response": True, "top_k": 2})
        answer = await call(address, "ModelInfer", request)
        assert answer.code == grpc.StatusCode.OK and answer.response.outputs[0].shape == [2, 2]

    run(scenario)


def test_images_in_bytes_contents():
    async def scenario(address: str, stands: Stands, gateway: Any) -> None:
        request = infer_request([image([2, 1], contents={"bytes_contents": JPEGS[:2]})], raw=[])
        answer = await call(address, "ModelInfer", request)
        assert answer.code == grpc.StatusCode.OK and stands["hornet-t"].calls == [2]

    run(scenario)


# ---- hostile input: each an INVALID_ARGUMENT (or NOT_FOUND), and the gateway serves on ----------------------


_TWO = serialise(JPEGS[:2])
HOSTILE: dict[str, tuple[Message, grpc.StatusCode, str]] = {
    "wrong datatype": (infer_request([image([2], datatype="FP32")]), INVALID, "must be BYTES"),
    "shape says 3, data holds 2": (infer_request([image([3])]), INVALID, "holds 2 elements, its shape says 3"),
    "shape says 1, data holds 2": (infer_request([image([1])]), INVALID, "bytes after its 1 elements"),
    "shape of the wrong rank": (infer_request([image([2, 2])]), INVALID, "must have shape [N] or [N, 1]"),
    "shape of zero images": (infer_request([image([0])]), INVALID, "N >= 1"),
    "negative shape": (infer_request([image([-2])]), INVALID, "N >= 1"),
    "huge shape": (infer_request([image([10**18])]), INVALID, "the limit is 32"),
    "too many dimensions": (infer_request([image([2] + [1] * 8)]), INVALID, "more than 8 dimensions"),
    "an element's length past the end": (infer_request(raw=[b"\xff\xff\xff\xff" + _TWO[4:]]), INVALID,
                                         "claims 4294967295 bytes"),
    "raw data for inputs that are not there": (infer_request(raw=[_TWO, _TWO]), INVALID, "2 entries for 1 input"),
    "raw data and contents both": (infer_request([image([2], contents={"bytes_contents": JPEGS[:2]})]), INVALID,
                                   "both contents and raw_input_contents"),
    "contents of another type": (infer_request([image([2], contents={"int_contents": [1, 2]})], raw=[]), INVALID,
                                 "BYTES data goes in contents.bytes_contents"),
    "no data": (infer_request(raw=[]), INVALID, "must hold 2 images"),
    "thousands of inputs": (infer_request([image([2])] * 5000, raw=[]), INVALID, "must list 1 entry, not 5000"),
    "no inputs": (infer_request([], raw=[]), INVALID, "must list 1 entry, not 0"),
    "thousands of outputs": (infer_request(outputs=[("score", {})] * 5000), INVALID, "not 5000"),
    "an output twice": (infer_request(outputs=[("score", {}), ("score", {})]), INVALID, "twice"),
    "unknown output": (infer_request(outputs=[("logits", {})]), INVALID, "unknown output 'logits'"),
    "unknown input": (infer_request([{"name": "input__0", "datatype": "BYTES", "shape": [2]}]), INVALID,
                      "unknown input 'input__0'"),
    "unknown request parameter": (infer_request(parameters={"priority": 1}), INVALID, "unknown request parameter"),
    "REST's binary_data_output": (infer_request(parameters={"binary_data_output": True}), INVALID,
                                  "unknown request parameter 'binary_data_output'"),
    "Triton's stream flag not a bool": (infer_request(parameters={"triton_enable_empty_final_response": 1}), INVALID,
                                        "must be bool"),
    "top_k a string": (infer_request(parameters={"top_k": "5"}), INVALID, "must be int"),
    "top_k a boolean": (infer_request(parameters={"top_k": True}), INVALID, "must be int"),
    "top_k a double": (infer_request(parameters={"top_k": 5.0}), INVALID, "must be int"),
    "top_k with no value": (infer_request(parameters={"top_k": None}), INVALID, "must be int"),
    "top_k zero": (infer_request(parameters={"top_k": 0}), INVALID, "between 1 and 100"),
    "top_k over the limit": (infer_request(parameters={"top_k": 101}), INVALID, "between 1 and 100"),
    "an input parameter": (infer_request([image([2], parameters={"shared_memory_region": "x"})]), INVALID,
                           "unknown input 'image' parameter"),
    "an output parameter": (infer_request(outputs=[("score", {"classification": 3})]), INVALID,
                            "unknown output 'score' parameter"),
    "a corrupt image": (infer_request(raw=[serialise([JPEGS[0], JPEGS[1][:100]])]), INVALID, "image 1: cannot decode"),
    "an empty image": (infer_request(raw=[serialise([JPEGS[0], b""])]), INVALID, "image 1: the image is empty"),
    "pixels at another size": (infer_request([pixels([1, 384, 384, 3])], raw=[bytes(384 * 384 * 3)]), INVALID,
                               "[N, 224, 224, 3]"),
    "pixels shorter than their shape": (infer_request([pixels([1, 224, 224, 3])], raw=[bytes(100)]), INVALID,
                                        "its shape needs 150528"),
    "pixels out of range": (infer_request([pixels([1, 224, 224, 3], contents={"uint_contents": [256] * S224})],
                                          raw=[]), INVALID, "integers 0..255"),
    "pixels in bytes_contents": (infer_request([pixels([1, 224, 224, 3], contents={"bytes_contents": [b"x"]})],
                                               raw=[]), INVALID, "contents.uint_contents"),
    "unknown model": (infer_request(model_name="resnet-50"), NOT_FOUND, "unknown model 'resnet-50'"),
    "unknown version": (infer_request(model_version="7"), NOT_FOUND, "no version '7'"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_requests_are_refused_with_their_status_and_the_gateway_serves_on(case):
    request, code, in_message = HOSTILE[case]

    async def scenario(address: str, stands: Stands, gateway: Any) -> None:
        refused = await call(address, "ModelInfer", request, [("x-request-id", "hostile-1")])
        assert (refused.code, refused.response) == (code, None) and in_message in refused.details, refused.details
        assert refused.trailing["x-request-id"] == "hostile-1"
        assert stands["hornet-t"].calls == []  # nothing reached the replica
        assert (await call(address, "ModelInfer", infer_request())).code == grpc.StatusCode.OK

    run(scenario)


NAMED = ("ModelReady", "ModelMetadata", "ModelConfig", "ModelInfer")  # field 1 is the model's name, a string


@pytest.mark.parametrize(("data", "rpcs"), [(b"\xff\xff\xff", kserve.RPCS), (b"\x0a\x02\xff\xfe", NAMED)],
                         ids=["not protobuf", "a name not UTF-8"])  # fmt: skip
def test_bytes_that_are_not_the_request_message_are_invalid_argument(data, rpcs):
    async def scenario(address: str, stands: Stands, gateway: Any) -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            for rpc in rpcs:
                pending = channel.unary_unary(f"/{kserve.SERVICE}/{rpc}")(data, metadata=(("x-request-id", rpc),))
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await pending
                assert refused.value.code() == INVALID, (rpc, refused.value.details())
                assert f"not a valid inference.{rpc}Request" in refused.value.details()
                assert dict(refused.value.trailing_metadata())["x-request-id"] == rpc
        assert (await call(address, "ModelInfer", infer_request())).code == grpc.StatusCode.OK

    run(scenario)


def test_a_request_over_the_body_limit_is_refused():
    async def scenario(address: str, stands: Stands, gateway: Any) -> None:
        refused = await call(address, "ModelInfer", infer_request([image([3])], raw=[serialise(JPEGS)]))
        assert refused.code == INVALID and "the limit is 4096" in refused.details

    run(scenario, limits={"max_body_bytes": 4096})


def test_unknown_models_and_versions_and_the_rpcs_not_served():
    async def scenario(address: str, stands: Stands, gateway: Any) -> None:
        for rpc, request in (("ModelReady", kserve.ModelReadyRequest(name="hornet-b")),
                             ("ModelMetadata", kserve.ModelMetadataRequest(name="hornet-t", version="2")),
                             ("ModelConfig", kserve.ModelConfigRequest(name="x" * 500))):  # fmt: skip
            answer = await call(address, rpc, request)
            assert answer.code == NOT_FOUND and len(answer.details) < 400, (rpc, answer.details)
        statistics = kserve.message("ModelStatisticsRequest")(name="hornet-t")
        assert (await call(address, "ModelStatistics", statistics)).code == grpc.StatusCode.UNIMPLEMENTED

    run(scenario, models=["hornet-t"])


# ---- one contract: keys, back-pressure, time limits, readiness, request ids, metrics -------------------------


def test_api_keys_and_rate_limits_with_retry_advice(tmp_path: Path):
    keys = tmp_path / "api_keys"
    keys.write_text(f"alice {hashlib.sha256(KEY.encode()).hexdigest()}\n")
    good = [("authorization", f"Bearer {KEY}")]

    async def scenario(address: str, stands: Stands, gateway: Any) -> None:
        for rpc, request in (("ModelInfer", infer_request()), ("ModelMetadata", kserve.ModelMetadataRequest(name="hornet-t")),
                             ("ModelConfig", kserve.ModelConfigRequest(name="hornet-t")),
                             ("ModelReady", kserve.ModelReadyRequest(name="hornet-t"))):  # fmt: skip
            missing = await call(address, rpc, request, [("authorization", "Bearer nope")])
            assert missing.code == grpc.StatusCode.UNAUTHENTICATED and "API key" in missing.details, rpc
        for rpc in ("ServerLive", "ServerReady", "ServerMetadata"):  # no key needed
            assert (await call(address, rpc, kserve.message(f"{rpc}Request")())).code == grpc.StatusCode.OK
        metadata = await call(address, "ModelMetadata", kserve.ModelMetadataRequest(name="hornet-t"), good)
        allowed = await call(address, "ModelInfer", infer_request(), good)  # 2 images, one token: the last of 2
        assert metadata.code == allowed.code == grpc.StatusCode.OK
        limited = await call(address, "ModelInfer", infer_request(), good)
        assert limited.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "alice" in limited.details
        retry_after = int(limited.trailing["retry-after"])
        assert retry_after >= 1 and limited.trailing[codec.RETRY_PUSHBACK] == str(retry_after * 1000)

    run(scenario, auth={"enabled": True, "keys_file": str(keys), "rate_per_s": 0.01, "burst": 2})


def test_the_request_id_comes_back_the_clients_or_serves():
    async def scenario(address: str, stands: Stands, gateway: Any) -> None:
        mine = await call(address, "ModelInfer", infer_request(), [("x-request-id", "r-42")])
        assert mine.trailing["x-request-id"] == "r-42"
        theirs = await call(address, "ServerLive", kserve.message("ServerLiveRequest")())
        assert theirs.trailing["x-request-id"] == SERVE_ID and theirs.response.live

    run(scenario)


def test_back_pressure_is_unavailable_with_retry_advice():
    async def scenario(address: str, stands: Stands, gateway: Any) -> None:
        def overloaded(image, top_k):
            raise BackPressureError(num_queued_requests=8, max_queued_requests=8)

        stands["hornet-t"].behaviour = overloaded
        answer = await call(address, "ModelInfer", infer_request())
        assert answer.code == grpc.StatusCode.UNAVAILABLE and "overloaded" in answer.details
        assert (answer.trailing["retry-after"], answer.trailing[codec.RETRY_PUSHBACK]) == ("1", "1000")

    run(scenario)


def test_a_classifier_past_the_time_limit_is_deadline_exceeded_and_the_call_cancelled():
    async def scenario(address: str, stands: Stands, gateway: Any) -> None:
        async def stall(image, top_k):
            await asyncio.sleep(5)

        stands["hornet-t"].behaviour = stall
        answer = await call(address, "ModelInfer", infer_request())
        assert answer.code == grpc.StatusCode.DEADLINE_EXCEEDED and "0.2s" in answer.details
        assert stands["hornet-t"].classify_many.cancelled == 1

    run(scenario, timeouts={"inference_s": 0.2})


def test_a_variant_that_failed_to_load_is_not_ready_and_unavailable():
    async def scenario(address: str, stands: Stands, gateway: Any) -> None:
        stands["hornet-l-gf384"].info = ModelInfo(id="hornet-l-gf384", ready=False, reason="sha256 mismatch",
                                                  precision="auto")  # fmt: skip
        ready = await call(address, "ModelReady", kserve.ModelReadyRequest(name="hornet-l-gf384"))
        server = await call(address, "ServerReady", kserve.message("ServerReadyRequest")())
        assert (ready.code, ready.response.ready, server.response.ready) == (grpc.StatusCode.OK, False, False)
        answer = await call(address, "ModelInfer", infer_request(model_name="hornet-l-gf384"))
        assert answer.code == grpc.StatusCode.UNAVAILABLE and "sha256 mismatch" in answer.details
        assert (await call(address, "ModelInfer", infer_request())).code == grpc.StatusCode.OK

    run(scenario)


def test_request_metrics_are_labelled_grpc_v2_with_the_http_status(monkeypatch):
    recorded: list[dict[str, str]] = []

    async def scenario(address: str, stands: Stands, gateway: Any) -> None:
        monkeypatch.setattr(gateway.metrics.requests, "inc", lambda tags: recorded.append(tags))
        await call(address, "ModelInfer", infer_request())
        await call(address, "ModelInfer", infer_request([image([2], datatype="FP32")]))
        await call(address, "ModelInfer", infer_request(model_name="resnet-50"))

    run(scenario)
    assert recorded == [{"model": "hornet-t", "status": "200", "protocol": "grpc_v2"},
                        {"model": "hornet-t", "status": "400", "protocol": "grpc_v2"},
                        {"model": "unknown", "status": "404", "protocol": "grpc_v2"}]  # fmt: skip


def test_a_call_in_progress_counts_for_the_drain():
    async def scenario(address: str, stands: Stands, gateway: Any) -> None:
        seen: list[int] = []

        def observed(image, top_k):
            seen.append(gateway.grpc_calls)
            return stands["hornet-t"]._answer(image, top_k)

        stands["hornet-t"].behaviour = observed
        assert (await call(address, "ModelInfer", infer_request())).code == grpc.StatusCode.OK
        assert seen == [1, 1] and gateway.grpc_calls == 0

    run(scenario)


# ---- the messages and the codec alone ---------------------------------------------------------------------


def _shape(file: descriptor_pb2.FileDescriptorProto) -> dict[str, list[tuple]]:
    """Each message's fields as the wire sees them: name, number, label, type, type name."""

    def fields(message: descriptor_pb2.DescriptorProto, prefix: str) -> dict[str, list[tuple]]:
        found = {prefix + message.name: [(f.name, f.number, f.label, f.type, f.type_name) for f in message.field]}
        for nested in message.nested_type:
            found |= fields(nested, f"{prefix}{message.name}.")
        return found

    shapes: dict[str, list[tuple]] = {}
    for message in file.message_type:
        shapes |= fields(message, "")
    shapes |= {f"rpc {s.name}.{m.name}": [(m.input_type, m.output_type)] for s in file.service for m in s.method}
    return shapes


def test_the_vendored_protos_are_those_tritonclient_is_built_from():
    from tritonclient.grpc import model_config_pb2, service_pb2

    ours = {file.name: file for file in kserve.PROTOS.file}
    for theirs in (service_pb2.DESCRIPTOR, model_config_pb2.DESCRIPTOR):
        assert _shape(ours[theirs.name]) == _shape(descriptor_pb2.FileDescriptorProto.FromString(theirs.serialized_pb))


def test_a_refusal_maps_to_its_grpc_status():
    cases = {errors.InvalidRequest("x"): INVALID, errors.PayloadTooLarge("x"): INVALID, errors.InvalidParameter("x"): INVALID,
             errors.UnsupportedMediaType("x"): INVALID, errors.Unauthorized("x"): grpc.StatusCode.UNAUTHENTICATED,
             errors.UnknownModel("x"): NOT_FOUND, errors.RateLimited("x", 3): grpc.StatusCode.RESOURCE_EXHAUSTED,
             errors.Unavailable("x", 2): grpc.StatusCode.UNAVAILABLE, errors.Timeout("x"): grpc.StatusCode.DEADLINE_EXCEEDED,
             errors.Internal("x"): grpc.StatusCode.INTERNAL}  # fmt: skip
    for error, code in cases.items():
        assert codec.status(error)[0] == code, type(error).__name__
    assert dict(codec.status(errors.RateLimited("x", 3))[1]) == {"retry-after": "3", codec.RETRY_PUSHBACK: "3000"}


_VALUES = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=4) | st.floats(allow_nan=False)
)
_TENSORS = st.fixed_dictionaries(
    {"name": st.sampled_from(["image", "pixels", "x"]), "datatype": st.sampled_from(["BYTES", "UINT8", "FP32", ""]),
     "shape": st.lists(st.integers(-3, 40), max_size=9)},
    optional={"contents": st.sampled_from(["bytes_contents", "uint_contents", "int_contents"]).flatmap(
                  lambda field: st.fixed_dictionaries({field: st.lists(
                      st.binary(max_size=8) if field == "bytes_contents" else st.integers(0, 300), max_size=40)})),
              "parameters": st.dictionaries(st.sampled_from(["top_k", "binary_data_size", "x"]), _VALUES, max_size=2)},
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=st.lists(_TENSORS, max_size=3), raw=st.lists(st.binary(max_size=64), max_size=3),
       parameters=st.dictionaries(st.sampled_from(["top_k", "priority"]), _VALUES, max_size=2),
       outputs=st.lists(st.sampled_from(["score", "label", "class_index", "logits"]), max_size=4))  # fmt: skip
def test_the_codec_refuses_whatever_it_cannot_read_with_a_4xx(inputs, raw, parameters, outputs):
    request = infer_request(inputs, raw, parameters, [(name, {}) for name in outputs])
    try:
        parsed = codec.parse_infer(request, 2, Limits())
    except errors.ApiError as exc:
        assert 400 <= exc.status < 500
    else:
        assert 1 <= len(parsed.images) <= Limits().max_batch_images
