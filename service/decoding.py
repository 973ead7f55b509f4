"""The one CPU decode of an uploaded image, under the service's limits: used by all three runtimes.

`open` reads only the header (format whitelist, pixel limit, per-format decode budget, JPEG DCT scaling),
`finish` decodes the pixels within the time limit and resizes them by the variant's recipe. The gateway
runs the two halves on its decode lanes (service/http/decode.py, which picks the lane from the plan), the
bulk job calls `pixels` in its decode tasks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from model import ImageDecodeError, Preprocessing, resize
from model.preprocess import DECODE_BUDGET, DecodePlan, draft_size, load, open_image
from service.config import Limits, VariantSettings


@dataclass(frozen=True)
class DecodeRules:
    max_pixels: int
    draft: bool
    time_limit_s: float
    budget: Mapping[str, int] = field(default_factory=lambda: dict(DECODE_BUDGET))
    draft_margin: float = 1.0

    @classmethod
    def from_settings(cls, limits: Limits, time_limit_s: float) -> DecodeRules:
        budget = {**DECODE_BUDGET, **limits.decode_budget}
        return cls(limits.max_pixels, limits.jpeg_draft, time_limit_s, budget, limits.jpeg_draft_margin)

    @classmethod
    def for_variant(cls, variant: VariantSettings) -> DecodeRules:
        return cls.from_settings(variant.limits, variant.decode_time_limit_s)

    def open(self, data: bytes, recipe: Preprocessing) -> tuple[Image.Image, DecodePlan]:
        """Raises ImageDecodeError (empty, corrupt, not a whitelisted format) and ImageTooLargeError (pixels,
        budget); no pixel is decoded yet."""
        if not data:
            raise ImageDecodeError("the image is empty (0 bytes)")
        min_side = math.ceil(draft_size(recipe) * (self.draft_margin if self.draft else 1.0))
        return open_image(data, max_pixels=self.max_pixels, budget=self.budget, min_side=min_side, draft=self.draft)

    def finish(self, image: Image.Image, plan: DecodePlan, recipe: Preprocessing) -> np.ndarray:
        """An opened image -> uint8 (S, S, 3) for the recipe; DecodeTimeoutError past the time limit. With
        `draft` (the fast path) every image is resized from the crop's region only; without it the exact path
        is the authors' pipeline bit for bit."""
        decoded = load(image, time_limit_s=self.time_limit_s)
        return resize(decoded, recipe, full_size=plan.size, crop_first=self.draft)

    def pixels(self, data: bytes, recipe: Preprocessing) -> np.ndarray:
        return self.finish(*self.open(data, recipe), recipe)


def device_decodable(image: Image.Image, plan: DecodePlan) -> bool:
    """A baseline JPEG in YCbCr or grayscale: what nvJPEG decodes fast (service/replica/jpeg.py). Progressive JPEGs
    (slow there) and CMYK ones (not taken) stay on the CPU path."""
    return plan.format == "JPEG" and not plan.progressive and image.mode in ("RGB", "L")
