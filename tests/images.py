"""Images the tests make themselves: natural-looking photos in every format and mode uploads come in."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    """A smooth, photo-like RGB image (gradients plus blobs, so JPEG sizes are realistic)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(1, 6, 2).tolist() + [rng.uniform(0, 6.28)]
        wave = np.sin(xx / width * fx * 3.14 + phase) * np.cos(yy / height * fy * 3.14)
        channels.append(127 + 100 * wave + rng.normal(0, 12, (height, width)))
    return Image.fromarray(np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()
