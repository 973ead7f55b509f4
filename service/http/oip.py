"""The Open Inference Protocol over HTTP/REST, as Triton and its clients speak it
(docs/http.md#the-open-inference-protocol-v2).

An infer body is JSON, or JSON followed by tensors in binary (Triton's binary tensor data extension: the
`Inference-Header-Content-Length` header measures the JSON, each such input's `binary_data_size` parameter its
bytes, in the order of the inputs). JSON `data` is a flat list; BYTES in JSON are base64 strings, flagged by the
input's parameter `"binary_data_encoding": "base64"`. Everything not named here is refused: unknown keys,
parameters, media types, compression. Pure: the gateway reads the body and calls `parse_infer` and
`encode_response`; the checks of the tensors themselves are service.oip's, shared with any other wire.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace

from starlette.responses import JSONResponse

from service import oip
from service.config import Limits
from service.http.errors import ApiError, InvalidRequest, UnsupportedMediaType
from service.oip import InferRequest, OutputTensor, TensorIn, check_parameters, quoted

PREFIX = "/v2"
HEADER_LENGTH = "Inference-Header-Content-Length"
BASE64 = "base64"
MEDIA_TYPES = ("application/json", "application/octet-stream")  # or none, as tritonclient sends
REQUEST_PARAMETERS = {"top_k": int, "binary_data_output": bool}
INPUT_PARAMETERS = {"binary_data_size": int, "binary_data_encoding": str}
OUTPUT_PARAMETERS = {"binary_data": bool}
_REQUEST_KEYS = ("id", "parameters", "inputs", "outputs")
_INPUT_KEYS = ("name", "shape", "datatype", "parameters", "data")
_OUTPUT_KEYS = ("name", "parameters")
_MAX_DIMS = 8


def is_oip(path: str) -> bool:
    """Whether a request path is this protocol's (its errors then take OIP's form)."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def error_response(error: ApiError) -> JSONResponse:
    """OIP's error form: `{"error": message}`, with the status and headers (Retry-After, ...) of the error."""
    return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers)


def json_length(headers: Mapping[str, str]) -> int | None:
    """Checks an infer request's headers before its body is read; the length of its JSON part, if it says one."""
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type and media_type not in MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {media_type[:64]!r}: send {' or '.join(MEDIA_TYPES)} (or none)"
        )
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise UnsupportedMediaType(f"Content-Encoding {encoding[:32]!r} is not supported: send the body uncompressed")
    value = headers.get(HEADER_LENGTH)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise InvalidRequest(f"{HEADER_LENGTH} must be a number of bytes, not {value[:32]!r}")
    return int(value)


def parse_infer(body: bytes, length: int | None, input_size: int, limits: Limits) -> InferRequest:
    """An infer request's body (`length`: its JSON part's, from `json_length`) as a checked request."""
    if not body:
        raise InvalidRequest("the body is empty: send an infer request")
    length = len(body) if length is None else length
    if not 0 < length <= len(body):
        raise InvalidRequest(f"{HEADER_LENGTH} is {length}, but the body has {len(body)} bytes")
    try:
        document = json.loads(body[:length])
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
        raise InvalidRequest(f"the request is not valid JSON ({type(exc).__name__}: {str(exc)[:100]})") from None
    request = _object(document, _REQUEST_KEYS, "the request")
    request_id = request.get("id")
    if request_id is not None and type(request_id) is not str:
        raise InvalidRequest("the request's id must be a string")
    parameters = check_parameters(request.get("parameters", {}), REQUEST_PARAMETERS, "request")
    inputs = _tensors(_list(request.get("inputs"), "inputs", 1), body[length:], limits.max_batch_images)
    outputs = [] if request.get("outputs") is None else _outputs(_list(request["outputs"], "outputs", len(oip.OUTPUTS)))
    return oip.infer_request(request_id, inputs, parameters, outputs, input_size, limits)


def _object(value: object, keys: Sequence[str], where: str) -> dict:
    if type(value) is not dict:
        raise InvalidRequest(f"{where} must be a JSON object")
    unknown = [key for key in value if key not in keys]
    if unknown:
        raise InvalidRequest(f"{where} has an unknown key {quoted(unknown[0])}; keys: {', '.join(keys)}")
    return value


def _list(value: object, what: str, most: int) -> list:
    if type(value) is not list:
        raise InvalidRequest(f"'{what}' must be a list")
    oip.check_count(what, len(value), most)
    return value


def _string(value: object, where: str) -> str:
    if type(value) is not str:
        raise InvalidRequest(f"{where} must be a string")
    return value


def _tensors(specs: list, binary: bytes, max_images: int) -> list[TensorIn]:
    """The inputs, each given its slice of the binary part in turn; the slices must fill it exactly."""
    tensors: list[TensorIn] = []
    at = 0
    for i, spec in enumerate(specs):
        tensor, size = _tensor(spec, f"inputs[{i}]", max_images)
        if size is not None:
            if size > len(binary) - at:
                raise InvalidRequest(
                    f"input {quoted(tensor.name)} has binary_data_size {size}, but {len(binary) - at} bytes follow"
                )
            tensor = replace(tensor, raw=binary[at : at + size])
            at += size
        tensors.append(tensor)
    if at != len(binary):
        raise InvalidRequest(f"{len(binary) - at} bytes after the JSON are claimed by no input's binary_data_size")
    return tensors


def _tensor(spec: object, where: str, max_images: int) -> tuple[TensorIn, int | None]:
    """An input without its binary data, and that data's size (None: its data is in the JSON)."""
    spec = _object(spec, _INPUT_KEYS, where)
    name = _string(spec.get("name"), f"{where}.name")
    datatype = _string(spec.get("datatype"), f"{where}.datatype")
    shape = spec.get("shape")
    if type(shape) is not list or len(shape) > _MAX_DIMS or not all(type(d) is int for d in shape):
        raise InvalidRequest(f"{where}.shape must be a list of at most {_MAX_DIMS} integers")
    parameters = check_parameters(spec.get("parameters", {}), INPUT_PARAMETERS, f"input {quoted(name)}")
    size, encoding, data = parameters.get("binary_data_size"), parameters.get("binary_data_encoding"), spec.get("data")
    if (size is None) == (data is None):
        raise InvalidRequest(f"input {quoted(name)} needs either data or parameters.binary_data_size, not both")
    if encoding is not None and (encoding != BASE64 or datatype != "BYTES" or data is None):
        raise InvalidRequest(f'binary_data_encoding is "{BASE64}", for BYTES data in the JSON')
    tensor = TensorIn(name, datatype, tuple(shape))
    if size is not None:
        if size < 0:
            raise InvalidRequest(f"input {quoted(name)} has a negative binary_data_size")
        return tensor, size
    if type(data) is not list:
        raise InvalidRequest(f"input {quoted(name)}: data must be a flat list")
    if datatype != "BYTES":
        return replace(tensor, elements=data), None
    if encoding != BASE64:
        raise InvalidRequest(
            f"input {quoted(name)}: BYTES in JSON are base64 strings, with the input's parameter "
            f'"binary_data_encoding": "{BASE64}" (or send them as binary data)'
        )
    oip.check_batch(len(data), max_images)  # before decoding any: a long list of tiny strings is cheap to send
    return replace(tensor, elements=[_base64(item, name) for item in data]), None


def _base64(item: object, name: str) -> bytes:
    if type(item) is not str:
        raise InvalidRequest(f"input {quoted(name)}: each element must be a base64 string")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"input {quoted(name)}: an element is not valid base64") from None


def _outputs(specs: list) -> list[tuple[str, Mapping[str, object]]]:
    outputs = []
    for i, spec in enumerate(specs):
        spec = _object(spec, _OUTPUT_KEYS, f"outputs[{i}]")
        name = _string(spec.get("name"), f"outputs[{i}].name")
        outputs.append(
            (name, check_parameters(spec.get("parameters", {}), OUTPUT_PARAMETERS, f"output {quoted(name)}"))
        )
    return outputs


def encode_response(
    request: InferRequest, model_id: str, tensors: Sequence[OutputTensor], parameters: Mapping[str, object]
) -> tuple[bytes, dict[str, str]]:
    """The infer answer's body and headers. An output goes as binary data after the JSON where its `binary_data`
    parameter says so (default: the request's `binary_data_output`, else false), else as JSON data."""
    binary_default = request.parameters.get("binary_data_output", False)
    described: list[dict[str, object]] = []
    blobs: list[bytes] = []
    for tensor in tensors:
        entry: dict[str, object] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if request.outputs[tensor.name].get("binary_data", binary_default):
            blobs.append(tensor.raw())
            entry["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            entry["data"] = tensor.elements()
        described.append(entry)
    header: dict[str, object] = {"model_name": model_id, "model_version": oip.VERSION}
    if request.id is not None:
        header["id"] = request.id
    header |= {"parameters": dict(parameters), "outputs": described}
    text = json.dumps(header, separators=(",", ":")).encode()
    if not blobs:
        return text, {"Content-Type": "application/json"}
    return b"".join([text, *blobs]), {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(text))}
