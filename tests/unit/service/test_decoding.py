"""The one CPU decode's draft lever: how far a JPEG is DCT-scaled before the resize (service/decoding.py)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from model import get_variant, resize
from service.config import Limits
from service.decoding import DecodeRules
from tests.support.images import encode, photo

RECIPE = get_variant("hornet-t").preprocessing  # resize input: short side 256 (hornet-t 224 crop)


@pytest.fixture(scope="module")
def phone_photo() -> bytes:
    return encode(photo(4000, 3000), "JPEG", quality=90)


@pytest.mark.parametrize(
    ("limits", "opened"),
    [
        (Limits(jpeg_draft=False), (4000, 3000)),  # exact: no draft
        (Limits(), (1000, 750)),  # the default: draft with margin 2
        (Limits(jpeg_draft=True, jpeg_draft_margin=1), (500, 375)),  # 1/8: the short side stays >= 256
        (Limits(jpeg_draft=True, jpeg_draft_margin=2), (1000, 750)),  # 1/4: >= 512
        (Limits(jpeg_draft=True, jpeg_draft_margin=3), (2000, 1500)),  # 1/2: >= 768
    ],
)
def test_the_draft_margin_sets_how_far_a_jpeg_is_reduced(limits, opened, phone_photo):
    rules = DecodeRules.from_settings(limits, time_limit_s=30)
    image, plan = rules.open(phone_photo, RECIPE)
    assert plan.size == (4000, 3000) and image.size == opened
    assert rules.pixels(phone_photo, RECIPE).shape == (224, 224, 3)


def test_the_draft_margin_is_bounded():
    for margin in (0.5, 9):
        with pytest.raises(ValidationError, match="jpeg_draft_margin"):
            Limits(jpeg_draft=True, jpeg_draft_margin=margin)


def test_the_exact_path_is_the_authors_pipeline_and_the_fast_one_within_a_grey_level():
    """jpeg_draft off: the whole-image resize, bit for bit; on: the crop's region only (a PNG: no DCT scaling)."""
    image = photo(1024, 768)
    whole, png = resize(image, RECIPE), encode(image, "PNG")
    exact = DecodeRules.from_settings(Limits(jpeg_draft=False), time_limit_s=30).pixels(png, RECIPE)
    fast = DecodeRules.from_settings(Limits(), time_limit_s=30).pixels(png, RECIPE)
    assert np.array_equal(exact, whole)
    difference = np.abs(fast.astype(int) - whole)
    assert 0 < difference.max() <= 1 and difference.mean() < 0.01
