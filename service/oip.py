"""The Open Inference Protocol (KServe v2) as this service speaks it, whatever the wire: the model's tensors, their
strict checks, and the answer as output tensors.

A request carries one input: `image`, BYTES [N] or [N, 1], encoded images for the gateway's decoder, or `pixels`,
UINT8 [N, S, S, 3] at the variant's input size, decoded by the client. The answer is `class_index` INT64 [N, k],
`score` FP32 [N, k] and `label` BYTES [N, k], best first. A wire codec turns its bodies into `TensorIn`s and the
`OutputTensor`s back into bodies: REST with Triton's binary extension in service/http/oip.py; a gRPC front end
would do the same with ModelInferRequest's contents and raw_input_contents, whose BYTES layout is the same.
Every refusal is a service.http.errors.ApiError, so each protocol maps one status to its own form.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from service.config import Limits
from service.http.errors import InvalidParameter, InvalidRequest, PayloadTooLarge, UnknownModel

SERVER = "hornet-serve"
VERSION = "1"  # every variant has one version
EXTENSIONS = ("model_configuration",)  # OIP extensions on every wire (REST adds its binary_tensor_data)
IMAGE, PIXELS = "image", "pixels"
INPUTS = {IMAGE: "BYTES", PIXELS: "UINT8"}
OUTPUTS = {"class_index": "INT64", "score": "FP32", "label": "BYTES"}
CONFIG_TYPES = {"BYTES": "TYPE_STRING", "UINT8": "TYPE_UINT8", "INT64": "TYPE_INT64", "FP32": "TYPE_FP32"}
DEFAULT_TOP_K = 5
_LENGTH = struct.Struct("<I")  # a BYTES element's length prefix
_NAME_CHARS = 64  # of a client's name quoted back in a message

Images = list[bytes] | np.ndarray  # encoded files, or uint8 (N, S, S, 3)


@dataclass(frozen=True)
class TensorIn:
    """One input as a wire gave it: its serialised bytes (`raw`: Triton's binary extension, gRPC's
    raw_input_contents) or its elements, flat (JSON `data`, gRPC contents; BYTES elements as bytes)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes | None = None
    elements: Sequence[object] | None = None


@dataclass(frozen=True)
class InferRequest:
    """A checked infer request: what the classify path needs, whatever protocol it came by."""

    id: str | None
    images: Images
    top_k: int
    outputs: Mapping[str, Mapping[str, object]]  # output name -> its parameters, in the order asked for
    parameters: Mapping[str, object]


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str
    values: np.ndarray  # (N, k): int64, float32, or str objects for BYTES

    @property
    def shape(self) -> list[int]:
        return list(self.values.shape)

    def elements(self) -> list[object]:
        """Flat, row-major, as Python values (BYTES as str)."""
        return self.values.ravel().tolist()

    def raw(self) -> bytes:
        """Serialised: little-endian, row-major; each BYTES element a 4-byte little-endian length, then its bytes."""
        if self.datatype == "BYTES":
            return b"".join(_LENGTH.pack(len(b)) + b for b in (str(s).encode() for s in self.values.flat))
        return self.values.astype(self.values.dtype.newbyteorder("<"), copy=False).tobytes()


def quoted(name: str) -> str:
    return repr(name[:_NAME_CHARS])


def check_version(model_id: str, version: str) -> None:
    if version != VERSION:
        raise UnknownModel(f"model {model_id!r} has no version {quoted(version)}; its only version is {VERSION!r}")


def check_count(what: str, count: int, most: int) -> None:
    """Before reading any of them: a request names at most `most` inputs or outputs."""
    if not 1 <= count <= most:
        bounds = "1 entry" if most == 1 else f"1 to {most} entries"
        raise InvalidRequest(f"{what!r} must list {bounds}, not {count}")


def check_parameters(parameters: object, allowed: Mapping[str, type], where: str) -> Mapping[str, object]:
    """A parameters object whose every name is allowed and whose every value has its type (a bool is no int)."""
    if type(parameters) is not dict:
        raise InvalidRequest(f"{where} parameters must be an object")
    for name, value in parameters.items():
        kind = allowed.get(name)
        if kind is None:
            raise InvalidRequest(f"unknown {where} parameter {quoted(name)}; allowed: {', '.join(allowed) or 'none'}")
        if type(value) is not kind:
            raise InvalidParameter(f"{where} parameter {name!r} must be {kind.__name__}")
    return parameters


def infer_request(
    request_id: str | None,
    inputs: Sequence[TensorIn],
    parameters: Mapping[str, object],
    outputs: Sequence[tuple[str, Mapping[str, object]]],
    input_size: int,
    limits: Limits,
) -> InferRequest:
    """Checks what the wire decoded (inputs, request parameters, requested outputs: none means all three)."""
    check_count("inputs", len(inputs), 1)
    if outputs:
        check_count("outputs", len(outputs), len(OUTPUTS))
    requested = {name: params for name, params in outputs} if outputs else {name: {} for name in OUTPUTS}
    unknown = [name for name in requested if name not in OUTPUTS]
    if unknown:
        raise InvalidRequest(f"unknown output {quoted(unknown[0])}; outputs: {', '.join(OUTPUTS)}")
    if len(requested) != len(outputs or OUTPUTS):
        raise InvalidRequest("an output is asked for twice")
    images = read_images(inputs[0], input_size, limits.max_batch_images)
    return InferRequest(request_id, images, _top_k(parameters, limits.max_top_k), requested, parameters)


def read_images(tensor: TensorIn, input_size: int, max_images: int) -> Images:
    expected = INPUTS.get(tensor.name)
    if expected is None:
        raise InvalidRequest(f"unknown input {quoted(tensor.name)}; send {IMAGE!r} (BYTES) or {PIXELS!r} (UINT8)")
    if tensor.datatype != expected:
        raise InvalidRequest(f"input {tensor.name!r} must be {expected}, not {quoted(tensor.datatype)}")
    count = _batch_size(tensor, input_size, max_images)
    if tensor.name == IMAGE:
        return _encoded(tensor, count)
    return _pixels(tensor, count, input_size)


def _batch_size(tensor: TensorIn, input_size: int, max_images: int) -> int:
    shape = tensor.shape
    if tensor.name == IMAGE:
        form, fits = "[N] or [N, 1]", len(shape) in (1, 2) and shape[1:] in ((), (1,))
    else:
        form, fits = f"[N, {input_size}, {input_size}, 3]", shape[1:] == (input_size, input_size, 3)
    if not fits or shape[0] < 1:
        raise InvalidRequest(f"input {tensor.name!r} must have shape {form} with N >= 1, not {list(shape[:8])}")
    check_batch(shape[0], max_images)
    return shape[0]


def check_batch(count: int, max_images: int) -> None:
    if count > max_images:
        raise PayloadTooLarge(f"{count} images in one request; the limit is {max_images} (limits.max_batch_images)")


def _encoded(tensor: TensorIn, count: int) -> list[bytes]:
    if tensor.raw is not None:
        return split_bytes(tensor.raw, count)
    elements = tensor.elements or ()
    images = [e for e in elements if type(e) is bytes]
    if len(images) != count or len(elements) != count:
        raise InvalidRequest(f"input 'image' must hold {count} images, as its shape says")
    return images


def split_bytes(raw: bytes, count: int) -> list[bytes]:
    """`count` BYTES elements from their serialised form, which they must fill exactly."""
    items: list[bytes] = []
    at = 0
    for i in range(count):
        if at + _LENGTH.size > len(raw):
            raise InvalidRequest(f"input 'image' holds {i} elements, its shape says {count}")
        (size,) = _LENGTH.unpack_from(raw, at)
        at += _LENGTH.size
        if size > len(raw) - at:
            raise InvalidRequest(f"element {i} of input 'image' claims {size} bytes, {len(raw) - at} remain")
        items.append(raw[at : at + size])
        at += size
    if at != len(raw):
        raise InvalidRequest(f"input 'image' has {len(raw) - at} bytes after its {count} elements")
    return items


def _pixels(tensor: TensorIn, count: int, input_size: int) -> np.ndarray:
    size = count * input_size * input_size * 3
    if tensor.raw is not None:
        if len(tensor.raw) != size:
            raise InvalidRequest(f"input 'pixels' has {len(tensor.raw)} bytes, its shape needs {size}")
        flat = np.frombuffer(tensor.raw, np.uint8)
    else:
        elements = tensor.elements or ()
        if len(elements) != size or not all(type(v) is int and 0 <= v <= 255 for v in elements):
            raise InvalidRequest(f"input 'pixels' must hold {size} integers 0..255, as its shape says")
        flat = np.array(elements, np.uint8)
    return flat.reshape(count, input_size, input_size, 3)


def _top_k(parameters: Mapping[str, object], max_top_k: int) -> int:
    top_k = parameters.get("top_k", DEFAULT_TOP_K)
    if type(top_k) is not int or not 1 <= top_k <= max_top_k:
        raise InvalidParameter(f"top_k must be an integer between 1 and {max_top_k}")
    return top_k


def output_tensors(
    indices: Sequence[Sequence[int]],
    scores: Sequence[Sequence[float]],
    label_of: Callable[[int], str],
    names: Sequence[str],
) -> list[OutputTensor]:
    """The answer for N images (each row best first) as the outputs asked for, in their order."""
    index = np.array(indices, np.int64)
    values = {
        "class_index": index,
        "score": np.array(scores, np.float32),
        "label": np.array([[label_of(i) for i in row] for row in index.tolist()], object),
    }
    return [OutputTensor(name, OUTPUTS[name], values[name]) for name in names]


def model_metadata(model_id: str, input_size: int) -> dict[str, object]:
    """OIP's model metadata (the same fields in REST's JSON and gRPC's ModelMetadataResponse)."""

    def tensor(name: str, datatype: str, shape: list[int]) -> dict[str, object]:
        return {"name": name, "datatype": datatype, "shape": shape}

    # `image` as Triton describes a batched input of dims [1] (model_config): [N, 1], one file per row ([N] is taken
    # too). perf_analyzer takes the shape past the batch dimension from here, and refuses an empty one.
    return {
        "name": model_id,
        "versions": [VERSION],
        "platform": "pytorch",
        "inputs": [
            tensor(IMAGE, INPUTS[IMAGE], [-1, 1]),
            tensor(PIXELS, INPUTS[PIXELS], [-1, input_size, input_size, 3]),
        ],
        "outputs": [tensor(name, datatype, [-1, -1]) for name, datatype in OUTPUTS.items()],
    }


def model_config(model_id: str, input_size: int, max_batch_images: int) -> dict[str, object]:
    """Triton's model configuration (its JSON form; gRPC's ModelConfig has the same fields), as much of it as clients
    read: perf_analyzer takes `max_batch_size` (above 0: the first dimension of the metadata's shapes is the batch,
    which `dims` leave out) and each input's `optional` (a request sends one of the two inputs)."""

    def tensor(name: str, datatype: str, dims: list[int], **extra: object) -> dict[str, object]:
        return {"name": name, "data_type": CONFIG_TYPES[datatype], "dims": dims, **extra}

    return {
        "name": model_id,
        "platform": "pytorch",
        "max_batch_size": max_batch_images,
        "input": [
            tensor(IMAGE, INPUTS[IMAGE], [1], reshape={"shape": []}, optional=True),  # [N, 1], taken as [N]
            tensor(PIXELS, INPUTS[PIXELS], [input_size, input_size, 3], optional=True),
        ],
        "output": [tensor(name, datatype, [-1]) for name, datatype in OUTPUTS.items()],
    }
