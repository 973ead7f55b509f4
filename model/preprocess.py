"""Evaluation preprocessing, split where a server splits it.

    decode(bytes) -> RGB PIL image          (gateway: untrusted bytes, EXIF, odd modes, size limits)
    resize(image, variant) -> uint8 HxWx3   (gateway: SPEC.md's bicubic recipe, bit exact)
    normalize(uint8 NxHxWx3) -> float NCHW  (replica: on the model's device)

`preprocess(image, name)` chains the last two (plus mode handling) for one image on the CPU.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps

from model.registry import Preprocessing, get_variant

# A resize whose long side would exceed this many pixels crops first (see `resize`): keeps a
# 1x10000 strip from turning into a 2.5-gigapixel intermediate image.
_MAX_RESIZED_LONG_SIDE = 4096


class ImageDecodeError(ValueError):
    """Bytes that are not an image Pillow can fully decode (truncated, corrupt, unknown format)."""


class ImageTooLargeError(ValueError):
    """An image whose pixel count exceeds the configured limit (checked before decoding pixels)."""


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
        image = ImageOps.exif_transpose(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("RGB", "L") and "transparency" in image.info
    ):
        return _composite_on_white(image)
    if image.mode.startswith("I") or image.mode == "F":
        return _sixteen_bit_to_rgb(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def decode(data: bytes, *, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """Untrusted bytes -> RGB image. `draft_size` lets libjpeg decode a large JPEG at 1/2, 1/4 or 1/8
    scale, keeping both sides at least `draft_size`; off by default (it changes the pixels)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"image is {width}x{height} = {width * height} pixels, the limit is {max_pixels}"
                )
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            return to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(str(exc)) from exc
    except ImageTooLargeError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(
            "cannot decode image: not a format this service reads (JPEG, PNG, WebP, GIF, BMP, TIFF)"
        ) from None
    except Exception as exc:  # Pillow raises many types on hostile input; all mean "not a usable image"
        raise ImageDecodeError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc


def _centre_crop_resize(image: Image.Image, short: int, crop: int) -> Image.Image:
    width, height = image.size
    if width <= height:
        new_w, new_h = short, int(short * height / width)
    else:
        new_w, new_h = int(short * width / height), short
    top, left = round((new_h - crop) / 2), round((new_w - crop) / 2)
    if max(new_w, new_h) <= _MAX_RESIZED_LONG_SIDE:
        return image.resize((new_w, new_h), Image.BICUBIC).crop((left, top, left + crop, top + crop))
    # Resize only the source region that lands in the crop (same sampling grid, bounded memory).
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
    return image.resize((crop, crop), Image.BICUBIC, box=box)


def resize(image: Image.Image, recipe: Preprocessing) -> np.ndarray:
    """An RGB image -> uint8 (H, W, 3) at the variant's input size, by its evaluation recipe."""
    if image.mode != "RGB":
        image = to_rgb(image)
    size = recipe.input_size
    if recipe.mode == "warp":
        out = image.resize((size, size), Image.BICUBIC)
    else:
        out = _centre_crop_resize(image, recipe.resize_short, size)
    return np.array(out, dtype=np.uint8)


def normalize(batch: torch.Tensor, recipe: Preprocessing) -> torch.Tensor:
    """uint8 (N, H, W, 3) on any device -> float32 (N, 3, H, W), channels_last in memory, normalised."""
    mean = torch.tensor(recipe.mean, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(recipe.std, device=batch.device).view(1, 3, 1, 1)
    return (batch.permute(0, 3, 1, 2).float() - mean) / std


def preprocess(image: Image.Image, name: str) -> torch.Tensor:
    """SPEC.md's evaluation pipeline for one image: float32 (3, H, W), normalised."""
    recipe = get_variant(name).preprocessing
    pixels = torch.from_numpy(resize(to_rgb(image), recipe))
    return normalize(pixels[None], recipe)[0].contiguous()
