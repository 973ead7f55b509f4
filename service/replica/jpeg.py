"""JPEG decode in the replica, on the model's device, so that a GPU is not fed by the gateway's CPU decode.

The gateway checks an upload's header as always (format, pixels, budget, orientation) and, for a JPEG the device
decoder takes, sends its bytes instead of pixels (`EncodedJpeg`). The replica decodes a batch's JPEGs in one call
(nvJPEG through torchvision on CUDA; Pillow on the CPU, the same batched path for CPU replicas and the tests),
orients and resizes each on the device (model.preprocess.orient, resize_tensor), and runs the batch. An image the
device decoder refuses falls back to the CPU decode (service/decoding.py) alone; one that no decoder takes fails
alone, as a 400: one image never fails a batch.

A CPU replica that decodes (`decode_on_cpu`) runs the gateway's own decode instead (the same pixels as
`decode: gateway`: JPEG draft, orientation, limits), on every core at once before the batch's forward.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from model import ImageDecodeError, ImageTooLargeError, Preprocessing
from model.preprocess import orient, resize_tensor
from service.decoding import DecodeRules

log = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class EncodedJpeg:
    """An upload the replica decodes: its bytes and the EXIF orientation the gateway read from its header."""

    data: bytes
    orientation: int = 1


Decoded = torch.Tensor | Exception  # uint8 (3, H, W) on the device, or why this image could not be decoded


def decode_jpegs(datas: list[bytes], device: torch.device) -> list[Decoded]:
    """Each JPEG as uint8 RGB (3, H, W) on `device`, or the exception the decoder raised for it."""
    if device.type == "cuda":
        return _nvjpeg(datas, device)
    return [_guarded(lambda data=data: _pillow(data, device)) for data in datas]


def _pillow(data: bytes, device: torch.device) -> torch.Tensor:
    with Image.open(io.BytesIO(data), formats=("JPEG",)) as image:
        pixels = np.array(image.convert("RGB"))
    return torch.from_numpy(pixels).permute(2, 0, 1).to(device)


def _nvjpeg(datas: list[bytes], device: torch.device) -> list[Decoded]:
    """One batched torchvision call; if it fails, each image alone, so that only the bad ones fall back."""
    from torchvision.io import ImageReadMode, decode_jpeg

    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in datas]
    try:
        return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        return [_guarded(lambda one=one: decode_jpeg(one, mode=ImageReadMode.RGB, device=device)) for one in encoded]


def _guarded(decode: Callable[[], torch.Tensor]) -> Decoded:
    try:
        return decode()
    except Exception as exc:  # a decoder's refusal of one image, whatever its type, falls back for that image
        return exc


@dataclass(frozen=True)
class Prepared:
    """A batch's model input on the device, the images that failed (by position) and the device decoder's refusals."""

    pixels: torch.Tensor  # uint8 (N_ok, S, S, 3)
    failed: dict[int, ValueError]  # ImageDecodeError or ImageTooLargeError (the CPU decode's time limit)
    fallbacks: int


def prepare_batch(
    items: list[np.ndarray | EncodedJpeg],
    recipe: Preprocessing,
    device: torch.device,
    rules: DecodeRules,
    decode: Callable[[list[bytes], torch.device], list[Decoded]] = decode_jpegs,
) -> Prepared:
    """Pixels from the gateway pass through; JPEGs are decoded together on the device (`decode`), oriented and
    resized there."""
    jpegs = [i for i, item in enumerate(items) if isinstance(item, EncodedJpeg)]
    # A batch of the gateway's pixels never touches the decoder (nor, on CUDA, torchvision).
    decoded = dict(zip(jpegs, decode([items[i].data for i in jpegs], device), strict=True)) if jpegs else {}
    inputs: list[torch.Tensor] = []
    failed: dict[int, ValueError] = {}
    fallbacks = 0
    for i, item in enumerate(items):
        if not isinstance(item, EncodedJpeg):
            inputs.append(torch.as_tensor(item).to(device))
            continue
        image = decoded[i]
        if isinstance(image, torch.Tensor):
            inputs.append(resize_tensor(orient(image, item.orientation), recipe))
            continue
        fallbacks += 1
        log.info("device decode refused an image (%s: %s); decoding it on the CPU", type(image).__name__, image)
        try:  # the exact CPU path, with the gateway's limits: EXIF orientation and all
            inputs.append(torch.from_numpy(rules.pixels(item.data, recipe)).to(device))
        except (ImageDecodeError, ImageTooLargeError) as exc:
            failed[i] = exc
    size = recipe.input_size
    pixels = torch.stack(inputs) if inputs else torch.empty((0, size, size, 3), dtype=torch.uint8, device=device)
    return Prepared(pixels, failed, fallbacks)


def decode_on_cpu(items: list[np.ndarray | EncodedJpeg], recipe: Preprocessing, rules: DecodeRules,
                  pool: Executor) -> Prepared:  # fmt: skip
    """A CPU replica's batch: each JPEG through the gateway's decode (`rules.pixels`), the batch's images in
    parallel on `pool` (Pillow releases the GIL while it decodes and resizes); pixels from the gateway pass."""

    def one(item: np.ndarray | EncodedJpeg) -> torch.Tensor | ValueError:
        if not isinstance(item, EncodedJpeg):
            return torch.as_tensor(item)
        try:
            return torch.from_numpy(rules.pixels(item.data, recipe))
        except (ImageDecodeError, ImageTooLargeError) as exc:
            return exc

    results = list(pool.map(one, items))
    inputs = [r for r in results if isinstance(r, torch.Tensor)]
    failed = {i: r for i, r in enumerate(results) if not isinstance(r, torch.Tensor)}
    size = recipe.input_size
    pixels = torch.stack(inputs) if inputs else torch.empty((0, size, size, 3), dtype=torch.uint8)
    return Prepared(pixels, failed, fallbacks=0)
