"""The Open Inference Protocol over gRPC, as Triton and its clients speak it: KServe's messages to and from
service.oip, and a refusal as a gRPC status (docs/http.md#grpc).

An input's data is in raw_input_contents (one entry per input, each laid out as REST's binary data: what
tritonclient.grpc and perf_analyzer send) or in the `contents` field of its datatype (bytes_contents for BYTES,
uint_contents for UINT8). Parameters are InferParameter values, read as the Python values REST's JSON would give.
Whatever is not named here is refused, as over REST: any parameter but `top_k`, contents of another type, data in
both places. Pure: the gateway calls `parse_infer` on its decode lane; the tensors' own checks are service.oip's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from service import oip
from service.config import Limits
from service.grpc import kserve
from service.http.errors import ApiError, InvalidRequest, PayloadTooLarge
from service.oip import InferRequest, OutputTensor, TensorIn, check_parameters, quoted

# Besides top_k, Triton's own triton_enable_empty_final_response, which perf_analyzer sends with every gRPC call: it
# means something only on a decoupled model's stream, so it is taken and has no effect (as in Triton for others).
REQUEST_PARAMETERS = {"top_k": int, "triton_enable_empty_final_response": bool}
CONTENTS = {"BYTES": "bytes_contents", "UINT8": "uint_contents"}  # where each input datatype's elements go
# The statuses of service.http.errors whose gRPC code is not INVALID_ARGUMENT (4xx) or INTERNAL (5xx).
STATUS_CODES = {
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
RETRY_PUSHBACK = "grpc-retry-pushback-ms"  # gRPC's own retry advice (gRFC A6), beside `retry-after` in seconds
_MAX_DIMS = 8


def parse_infer(request: Message, input_size: int, limits: Limits) -> InferRequest:
    """A ModelInferRequest as a checked request (its model and version are the caller's)."""
    size = request.ByteSize()
    if size > limits.max_body_bytes:
        raise PayloadTooLarge(f"the request is {size} bytes, the limit is {limits.max_body_bytes}")
    oip.check_count("inputs", len(request.inputs), 1)  # before reading any: thousands of inputs cost nothing more
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidRequest(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} input: one each")
    if request.outputs:
        oip.check_count("outputs", len(request.outputs), len(oip.OUTPUTS))
    inputs = [_tensor(tensor, raw[i] if raw else None) for i, tensor in enumerate(request.inputs)]
    outputs = [(o.name, _parameters(o.parameters, {}, f"output {quoted(o.name)}")) for o in request.outputs]
    parameters = _parameters(request.parameters, REQUEST_PARAMETERS, "request")
    return oip.infer_request(request.id or None, inputs, parameters, outputs, input_size, limits)


def _tensor(tensor: Message, raw: bytes | None) -> TensorIn:
    """An input as service.oip reads it: its raw bytes, or the elements of its datatype's contents field."""
    name, datatype = tensor.name, tensor.datatype
    if len(tensor.shape) > _MAX_DIMS:
        raise InvalidRequest(f"input {quoted(name)}: its shape has more than {_MAX_DIMS} dimensions")
    _parameters(tensor.parameters, {}, f"input {quoted(name)}")
    filled = [field.name for field, _ in tensor.contents.ListFields()]
    if raw is not None and filled:
        raise InvalidRequest(f"input {quoted(name)} has data in both contents and raw_input_contents")
    field = CONTENTS.get(datatype)
    if field is not None and filled not in ([], [field]):
        raise InvalidRequest(f"input {quoted(name)}: {datatype} data goes in contents.{field} or raw_input_contents")
    elements = getattr(tensor.contents, field) if field is not None and raw is None else None
    return TensorIn(name, datatype, tuple(tensor.shape), raw=raw, elements=elements)


def _parameters(parameters: Mapping[str, Message], allowed: Mapping[str, type], where: str) -> Mapping[str, object]:
    """InferParameters as Python values (one with no value set as None, which no type allows), checked as REST's."""
    values: dict[str, object] = {}
    for name, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[name] = getattr(parameter, choice) if choice else None
    return check_parameters(values, allowed, where)


def infer_response(
    request: InferRequest, model_id: str, tensors: Sequence[OutputTensor], parameters: Mapping[str, str]
) -> Message:
    """The answer: each output's data serialised in raw_output_contents, in the order of the outputs."""
    response = kserve.ModelInferResponse(model_name=model_id, model_version=oip.VERSION, id=request.id or "")
    for name, value in parameters.items():
        response.parameters[name].string_param = value
    for tensor in tensors:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        response.raw_output_contents.append(tensor.raw())
    return response


def server_metadata(version: str) -> Message:
    return kserve.ServerMetadataResponse(name=oip.SERVER, version=version, extensions=oip.EXTENSIONS)


def model_metadata(model_id: str, input_size: int) -> Message:
    return json_format.ParseDict(oip.model_metadata(model_id, input_size), kserve.ModelMetadataResponse())


def model_config(model_id: str, input_size: int, max_batch_images: int) -> Message:
    config = json_format.ParseDict(oip.model_config(model_id, input_size, max_batch_images), kserve.ModelConfig())
    return kserve.ModelConfigResponse(config=config)


def status(error: ApiError) -> tuple[grpc.StatusCode, list[tuple[str, str]]]:
    """A refusal's gRPC status code, and its advice as trailing metadata: the headers its HTTP answer has
    (`retry-after` in seconds, ...), lower-cased as gRPC wants them, and for a retry gRPC's own pushback."""
    default = grpc.StatusCode.INVALID_ARGUMENT if error.status < 500 else grpc.StatusCode.INTERNAL
    metadata = [(name.lower(), value) for name, value in error.headers.items()]
    retry_after = error.headers.get("Retry-After")
    if retry_after is not None:
        metadata.append((RETRY_PUSHBACK, str(int(retry_after) * 1000)))
    return STATUS_CODES.get(error.status, default), metadata
