"""Evaluation preprocessing, split where a server splits it.

    decode(bytes) -> RGB PIL image          (gateway: untrusted bytes, EXIF, odd modes, size limits)
      = open_image(bytes) -> (image, plan)  (header only: format whitelist, pixel limit, decode budget)
      + load(image) -> RGB PIL image        (the pixels, within a time limit)
    resize(image, variant) -> uint8 HxWx3   (gateway: the bicubic recipe of docs/model.md#preprocessing, bit exact)
    normalize(uint8 NxHxWx3) -> float NCHW  (replica: on the model's device)

`preprocess(image, name)` chains the last two (plus mode handling) for one image on the CPU.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from PIL import (  # the documented formats' plugins only, see FORMATS
    BmpImagePlugin,  # noqa: F401
    GifImagePlugin,  # noqa: F401
    Image,
    ImageOps,
    JpegImagePlugin,  # noqa: F401
    PngImagePlugin,  # noqa: F401
    TiffImagePlugin,  # noqa: F401
    WebPImagePlugin,  # noqa: F401
)

from model.registry import Preprocessing, get_variant

# The formats the service documents. Untrusted bytes reach no other Pillow plugin: `Image.open(formats=FORMATS)`
# tries only these, and with exactly their plugins imported above Pillow never loads (`Image.init`) the others.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# Pixels one upload may make the decoder produce, by format: about the same decode + resize time for each, as
# the formats' costs per pixel differ (docs/performance.md#measurements-behind-the-codes-settings).
DECODE_BUDGET = {"JPEG": 24_000_000, "PNG": 16_000_000, "WEBP": 12_000_000, "GIF": 24_000_000,
                 "BMP": 32_000_000, "TIFF": 16_000_000}  # fmt: skip

# A resize whose long side would exceed this many pixels crops first (see `resize`): keeps a
# 1x10000 strip from turning into a 2.5-gigapixel intermediate image.
_MAX_RESIZED_LONG_SIDE = 4096


class ImageDecodeError(ValueError):
    """Bytes that are not an image Pillow can fully decode (truncated, corrupt, not a documented format)."""


class ImageTooLargeError(ValueError):
    """An image over a limit: its pixel count, its format's decode budget (checked from the header, before
    decoding) or its decode time limit."""


class OverBudgetError(ImageTooLargeError):
    """An image that would decode more pixels than its format's budget."""


class DecodeTimeoutError(ImageTooLargeError):
    """An image whose decoding ran past its time limit."""


@dataclass(frozen=True)
class DecodePlan:
    """What decoding one upload will cost, known from its header before any pixel is decoded."""

    format: str  # one of FORMATS
    size: tuple[int, int]  # as stored
    decoded_size: tuple[int, int]  # after JPEG DCT scaling (= size for every other format)
    progressive: bool

    @property
    def pixels(self) -> int:
        """Pixels the decoder must fully produce. A progressive JPEG pays its scans over every stored pixel
        at any DCT scale (measured: 1/8 scale still costs 80% of the full decode)."""
        width, height = self.size if self.progressive else self.decoded_size
        return width * height


def draft_size(recipe: Preprocessing) -> int:
    """The JPEG draft-size rule, in one place: a JPEG may be DCT-scaled while both its sides stay at least
    the recipe's resize input (the short side for resize_crop, the input size for warp)."""
    return recipe.resize_short or recipe.input_size


class _DeadlineReader(io.BytesIO):
    """The upload as Pillow reads it while decoding: past `deadline` (time.monotonic) the next read fails.
    Pillow feeds its decoders 64 KB at a time, so a decode stops at its next chunk; a format decoded in one
    call (WebP) is bounded by its pixel budget instead."""

    deadline: float | None = None
    time_limit_s: float = 0.0

    def read(self, size: int | None = -1, /) -> bytes:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DecodeTimeoutError(f"decoding took longer than the limit of {self.time_limit_s:g} s")
        return super().read(size)


def _jpeg_scale(size: tuple[int, int], pixels_allowed: float, min_side: int, draft: bool) -> int:
    """The DCT scale (1, 2, 4 or 8) to decode a JPEG at: with `draft` the largest one that keeps both sides at
    least `min_side` (1 for an image already smaller); otherwise the smallest one within `pixels_allowed` (1 if
    none is)."""
    width, height = size
    usable = [s for s in (1, 2, 4, 8) if min(width, height) // s >= min_side]
    if draft:
        return usable[-1] if usable else 1
    return next((s for s in usable if -(-width // s) * -(-height // s) <= pixels_allowed), 1)


def open_image(
    data: bytes,
    *,
    max_pixels: int,
    budget: Mapping[str, int] | None = None,
    min_side: int = 1,
    draft: bool = False,
) -> tuple[Image.Image, DecodePlan]:
    """Untrusted bytes -> an opened (not yet decoded) image of a documented format and its decode plan.

    Refused before any pixel is decoded: anything but FORMATS (no other Pillow plugin sees the bytes), more
    than `max_pixels`, or more pixels to decode than the format's `budget`. A baseline JPEG over its budget
    is DCT-scaled (1/2, 1/4, 1/8) to fit while both sides stay at least `min_side`; `draft` scales every
    JPEG as far as that allows (faster, changes the pixels)."""
    reader = _DeadlineReader(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(reader, formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(str(exc)) from exc
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(f"cannot decode image: not a format this service reads ({', '.join(FORMATS)})") from None
    except Exception as exc:  # Pillow raises many types on hostile input; all mean "not a usable image"
        raise ImageDecodeError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(f"image is {width}x{height} = {width * height} pixels, the limit is {max_pixels}")
    fmt = "JPEG" if image.format == "MPO" else str(image.format)  # MPO: a camera JPEG with extra frames
    allowed = (budget or {}).get(fmt, max_pixels)
    progressive = fmt == "JPEG" and bool(image.info.get("progressive"))
    plan = DecodePlan(fmt, image.size, image.size, progressive)
    if fmt == "JPEG" and (draft or plan.pixels > allowed):
        scale = _jpeg_scale(image.size, allowed, min_side, draft)
        if scale > 1:
            image.draft("RGB", (width // scale, height // scale))
            plan = DecodePlan(fmt, plan.size, image.size, progressive)
    if plan.pixels > allowed:
        kind = "progressive JPEG" if progressive else fmt
        raise OverBudgetError(
            f"a {width}x{height} {kind} must decode {plan.pixels} pixels, the budget for {fmt} is {allowed}"
        )
    return image, plan


def load(image: Image.Image, *, time_limit_s: float | None = None) -> Image.Image:
    """Decode an image from `open_image` into RGB, stopping with DecodeTimeoutError past `time_limit_s`."""
    reader = image.fp
    if time_limit_s is not None and isinstance(reader, _DeadlineReader):
        reader.deadline, reader.time_limit_s = time.monotonic() + time_limit_s, time_limit_s
    try:
        image.load()
        return to_rgb(image)
    except ImageTooLargeError:
        raise
    except Exception as exc:  # truncated or corrupt data shows only now
        raise ImageDecodeError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc


def _composite_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _sixteen_bit_to_rgb(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    if image.mode != "F":  # integer modes: 16-bit range; 'F' is taken as already on the 0-255 scale
        values = values / 257.0
    gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB, as a photo viewer would show it: EXIF orientation applied, alpha composited
    on white, palettes expanded, CMYK converted, 16-bit and float grayscale scaled to 8 bits."""
    with contextlib.suppress(Exception):  # a broken EXIF block must not cost the image; keep it unrotated
        ImageOps.exif_transpose(image, in_place=True)  # not a copy of every image that needs no turn
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("RGB", "L") and "transparency" in image.info
    ):
        return _composite_on_white(image)
    if image.mode.startswith("I") or image.mode == "F":
        return _sixteen_bit_to_rgb(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def decode(
    data: bytes,
    *,
    max_pixels: int,
    draft_size: int | None = None,
    budget: Mapping[str, int] | None = None,
    time_limit_s: float | None = None,
) -> Image.Image:
    """Untrusted bytes -> RGB image (`open_image`, then `load`). `draft_size` lets libjpeg decode a large JPEG
    at 1/2, 1/4 or 1/8 scale, keeping both sides at least `draft_size`; off by default (it changes the pixels)."""
    image, _ = open_image(
        data, max_pixels=max_pixels, budget=budget, min_side=draft_size or 1, draft=draft_size is not None
    )
    return load(image, time_limit_s=time_limit_s)


def _centre_crop_resize(
    image: Image.Image, short: int, crop: int, source: tuple[float, float], crop_first: bool
) -> Image.Image:
    """`source`: the extent of the image's content in its own pixels (smaller than its size after DCT scaling)."""
    width, height = source
    if width <= height:
        new_w, new_h = short, int(short * height / width)
    else:
        new_w, new_h = int(short * width / height), short
    top, left = round((new_h - crop) / 2), round((new_w - crop) / 2)
    if not crop_first and source == image.size and max(new_w, new_h) <= _MAX_RESIZED_LONG_SIDE:
        return image.resize((new_w, new_h), Image.BICUBIC).crop((left, top, left + crop, top + crop))
    # Resize only the source region that lands in the crop (same sampling grid, bounded memory).
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
    return image.resize((crop, crop), Image.BICUBIC, box=box)


def resize(
    image: Image.Image, recipe: Preprocessing, full_size: tuple[int, int] | None = None, *, crop_first: bool = False
) -> np.ndarray:
    """An RGB image -> uint8 (H, W, 3) at the variant's input size, by its evaluation recipe.

    By default the authors' pipeline bit for bit: resize the whole image, then crop (the golden vectors).
    `crop_first` resizes only the region that lands in the crop, on the same sampling grid: about half the
    work for a 4:3 photo, at most one grey level apart (Pillow rounds its two passes' intermediate image
    differently over a smaller region).

    `full_size`: the size the image had before a JPEG decoder's DCT scaling (`open_image` with `draft`). The
    geometry (short side, crop) then follows the full image, as the exact path computes it, and the reduced
    image is sampled where the full one would be: a decoded size rounds up to whole pixels, so without this a
    reduced decode's crop lands a pixel off."""
    if image.mode != "RGB":
        image = to_rgb(image)
    size = recipe.input_size
    source = _content_extent(image.size, full_size) if full_size else image.size
    if recipe.mode == "warp":
        out = image.resize((size, size), Image.BICUBIC, box=(0, 0, *source))
    else:
        out = _centre_crop_resize(image, recipe.resize_short, size, source, crop_first)
    return np.array(out, dtype=np.uint8)


def _content_extent(size: tuple[int, int], full_size: tuple[int, int]) -> tuple[float, float]:
    """The full image's extent in the pixels of its DCT-scaled decode (1/2, 1/4 or 1/8, each side rounded up)."""
    width, height = size
    full_w, full_h = full_size if (width >= height) == (full_size[0] >= full_size[1]) else full_size[::-1]
    scale = next((s for s in (1, 2, 4, 8) if -(-full_w // s) == width and -(-full_h // s) == height), None)
    return (full_w / scale, full_h / scale) if scale else (float(width), float(height))


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8) from an opened image's header; 1 where it has none, or a broken one (as `to_rgb`
    keeps such an image unrotated)."""
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - any broken EXIF block
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


# EXIF orientation -> the transform Pillow's ImageOps.exif_transpose applies, on a (C, H, W) tensor.
_ORIENT = {
    2: lambda x: x.flip(2),
    3: lambda x: x.flip(1, 2),
    4: lambda x: x.flip(1),
    5: lambda x: x.transpose(1, 2),
    6: lambda x: x.rot90(-1, (1, 2)),
    7: lambda x: x.transpose(1, 2).flip(1, 2),
    8: lambda x: x.rot90(1, (1, 2)),
}


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """A (C, H, W) image as stored -> as meant to be seen, by its EXIF orientation (1-8; others: unchanged)."""
    transform = _ORIENT.get(orientation)
    return transform(image) if transform else image


def resize_tensor(image: torch.Tensor, recipe: Preprocessing) -> torch.Tensor:
    """uint8 (3, H, W) on any device -> uint8 (S, S, 3) by the recipe's geometry, with torch's antialiased bicubic
    (Pillow's filter, a = -0.5): `resize` on the device that decoded the image, a grey level or two apart."""
    _, height, width = image.shape
    size = recipe.input_size
    if recipe.mode == "warp":
        return _bicubic(image, size, size).permute(1, 2, 0)
    short = recipe.resize_short
    new_w, new_h = (short, int(short * height / width)) if width <= height else (int(short * width / height), short)
    top, left = round((new_h - size) / 2), round((new_w - size) / 2)
    return _bicubic(image, new_h, new_w)[:, top : top + size, left : left + size].permute(1, 2, 0)


def _bicubic(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    resized = torch.nn.functional.interpolate(
        image[None].float(), size=(height, width), mode="bicubic", antialias=True, align_corners=False
    )
    return resized[0].round_().clamp_(0, 255).to(torch.uint8)


def normalize(batch: torch.Tensor, recipe: Preprocessing) -> torch.Tensor:
    """uint8 (N, H, W, 3) on any device -> float32 (N, 3, H, W), channels_last in memory, normalised."""
    mean = torch.tensor(recipe.mean, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(recipe.std, device=batch.device).view(1, 3, 1, 1)
    return (batch.permute(0, 3, 1, 2).float() - mean) / std


def preprocess(image: Image.Image, name: str) -> torch.Tensor:
    """The evaluation pipeline (docs/model.md#preprocessing) for one image: float32 (3, H, W), normalised."""
    recipe = get_variant(name).preprocessing
    pixels = torch.from_numpy(resize(to_rgb(image), recipe))
    return normalize(pixels[None], recipe)[0].contiguous()
