"""Property tests on the decoder and the preprocessing: hostile bytes only ever raise the two documented
errors; any valid image in any mode and size becomes a uint8 tensor of the variant's input size."""

import io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import model
from model.preprocess import load, open_image
from tests.support.images import encode

LIMIT = 4_000_000
RECIPES = [model.get_variant("hornet-t").preprocessing, model.get_variant("hornet-l-gf384").preprocessing]
SEEDS = [encode(Image.new("RGB", (16, 16), (200, 30, 30)), fmt) for fmt in ("PNG", "JPEG", "GIF", "WEBP", "BMP")]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_raise_only_documented_errors(data):
    try:
        image = model.decode(data, max_pixels=LIMIT)
    except (model.ImageDecodeError, model.ImageTooLargeError):
        return
    assert image.mode == "RGB"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.data())
def test_mutated_images_raise_only_documented_errors(seed, data):
    """Real image files with bytes flipped, cut or inserted: the shape of a corrupt upload."""
    buf = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, len(buf) - 1))
        if op == "flip":
            buf[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del buf[pos:]
        else:
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=64))
        if not buf:
            break
    try:
        image = model.decode(bytes(buf), max_pixels=LIMIT)
    except (model.ImageDecodeError, model.ImageTooLargeError):
        return
    pixels = model.resize(image, RECIPES[0])
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8


@pytest.mark.parametrize("recipe", RECIPES, ids=["crop224", "warp384"])
@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 700),
    height=st.integers(1, 700),
    mode=st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "1"]),
    fmt=st.sampled_from(["PNG", "TIFF", "WEBP", "JPEG"]),
    seed=st.integers(0, 2**16),
)
def test_any_valid_image_becomes_an_input_tensor(recipe, width, height, mode, fmt, seed):
    writable = {
        "JPEG": ("RGB", "L", "CMYK", "1"),
        "WEBP": ("RGB", "RGBA"),
        "PNG": ("RGB", "RGBA", "L", "LA", "P", "I;16", "1"),
    }
    if mode not in writable.get(fmt, (mode,)):
        fmt = "TIFF"  # Pillow writes every one of these modes as TIFF
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    image = base.convert(mode) if mode != "I;16" else Image.fromarray(
        rng.integers(0, 65536, (height, width), dtype=np.uint16)
    )  # fmt: skip
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    decoded = model.decode(buffer.getvalue(), max_pixels=LIMIT)
    pixels = model.resize(decoded, recipe)
    assert pixels.shape == (recipe.input_size, recipe.input_size, 3) and pixels.dtype == np.uint8
    x = model.normalize(torch.from_numpy(pixels)[None], recipe)
    assert x.shape == (1, 3, recipe.input_size, recipe.input_size) and bool(x.isfinite().all())


@settings(max_examples=80, deadline=None)
@given(
    width=st.integers(1, 900),
    height=st.integers(1, 900),
    fmt=st.sampled_from(["JPEG", "PNG", "WEBP", "GIF"]),
    progressive=st.booleans(),
    budget=st.integers(1, 400_000),
    min_side=st.integers(1, 300),
)
def test_no_image_decodes_more_pixels_than_its_budget(width, height, fmt, progressive, budget, min_side):
    options = {"progressive": progressive} if fmt == "JPEG" else {}
    data = encode(Image.new("RGB", (width, height), (40, 90, 160)), fmt, **options)
    try:
        image, plan = open_image(data, max_pixels=LIMIT, budget={fmt: budget}, min_side=min_side)
    except model.ImageTooLargeError:
        assert width * height > budget  # refused only when even the stored size is over budget
        return
    assert plan.pixels <= budget and plan.format == fmt
    assert load(image).size == plan.decoded_size
    assert plan.decoded_size == (width, height) or min(plan.decoded_size) >= min_side
