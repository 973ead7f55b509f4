import io

import numpy as np
import pytest
import torch
from PIL import Image

import model
from tests.support.golden import DATA, golden
from tests.support.images import encode, photo

LIMIT = 50_000_000


def test_preprocess_is_bit_exact_for_the_224_recipe():
    x, _ = golden()
    out = model.preprocess(Image.open(DATA / "public_input.png"), "hornet-t")
    assert out.dtype == torch.float32 and out.shape == (3, 224, 224)
    assert torch.equal(out, x)


def test_preprocess_is_bit_exact_for_the_384_warp():
    expected = torch.from_numpy(np.load(DATA / "preprocess_public_384.npz")["x"])
    assert torch.equal(model.preprocess(Image.open(DATA / "public_input.png"), "hornet-l-gf384"), expected)


@pytest.mark.parametrize("name", ["hornet-t", "hornet-l-gf384"])
def test_gateway_and_replica_split_gives_the_same_numbers(name):
    recipe = model.get_variant(name).preprocessing
    image_bytes = encode(photo(500, 375), "JPEG", quality=90)
    pixels = model.resize(model.decode(image_bytes, max_pixels=LIMIT), recipe)
    assert pixels.dtype == np.uint8 and pixels.shape == (recipe.input_size, recipe.input_size, 3)
    split = model.normalize(torch.from_numpy(np.stack([pixels, pixels])), recipe)
    whole = model.preprocess(Image.open(io.BytesIO(image_bytes)), name)
    assert torch.equal(split[0], whole) and torch.equal(split[1], whole)


def test_centre_crop_uses_round_half_to_even():
    # 257 wide after resize: (257 - 224) / 2 = 16.5 -> 16 with Python's round.
    image = photo(257, 256)
    out = model.resize(image, model.get_variant("hornet-t").preprocessing)
    expected = np.asarray(image.resize((257, 256), Image.BICUBIC))[16:240, 16:240]
    assert np.array_equal(out, expected)


def test_extreme_aspect_ratio_stays_bounded_and_equals_the_full_resize():
    recipe = model.get_variant("hornet-t").preprocessing
    strip = photo(20, 2000)
    out = model.resize(strip, recipe)
    full = np.asarray(strip.resize((256, 25600), Image.BICUBIC))
    top = round((25600 - 224) / 2)
    left = round((256 - 224) / 2)
    diff = np.abs(out.astype(int) - full[top : top + 224, left : left + 224].astype(int))
    # Same sampling grid; Pillow's two-pass rounding of the intermediate differs by at most 2 levels (rarely).
    assert out.shape == (224, 224, 3) and diff.max() <= 2 and diff.mean() < 0.5
    assert model.resize(photo(1, 10000), recipe).shape == (224, 224, 3)


def _decoded(image: Image.Image, fmt: str = "PNG", **options) -> np.ndarray:
    out = model.decode(encode(image, fmt, **options), max_pixels=LIMIT)
    assert out.mode == "RGB"
    return np.asarray(out)


def test_exif_orientation_is_applied():
    image = photo(300, 200)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to view
    out = _decoded(image, "JPEG", exif=exif, quality=95)
    assert out.shape == (300, 200, 3)


def test_alpha_is_composited_on_white_not_dropped():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert (_decoded(rgba) == 255).all()
    half = Image.new("RGBA", (8, 8), (0, 0, 0, 128))
    assert np.all(np.abs(_decoded(half).astype(int) - 127) <= 1)
    la = Image.new("LA", (8, 8), (0, 0))
    assert (_decoded(la) == 255).all()


def test_palette_with_and_without_transparency():
    palette = photo(64, 64).convert("P", palette=Image.ADAPTIVE, colors=16)
    assert _decoded(palette).shape == (64, 64, 3)
    transparent = palette.copy()
    transparent.info["transparency"] = 0
    out = _decoded(transparent, "PNG", transparency=0)
    index0 = np.asarray(palette) == 0
    assert index0.any() and (out[index0] == 255).all()


def test_grayscale_cmyk_and_sixteen_bit():
    gray = photo(32, 32).convert("L")
    assert np.array_equal(_decoded(gray)[..., 0], np.asarray(gray))
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red
    red = _decoded(cmyk, "JPEG", quality=100)
    assert red[..., 0].min() > 200 and red[..., 1:].max() < 60
    sixteen = Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16))
    assert (_decoded(sixteen) == 255).all()
    mid = Image.fromarray(np.full((16, 16), 257 * 100, dtype=np.uint16))
    assert (_decoded(mid) == 100).all()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_common_formats_decode(fmt):
    out = _decoded(photo(120, 90), fmt)
    assert out.shape == (90, 120, 3)


def test_truncated_and_garbage_bytes_raise_decode_errors():
    jpeg = encode(photo(400, 300), "JPEG")
    for data in (b"", b"hello world", jpeg[: len(jpeg) // 2], b"\x89PNG\r\n\x1a\n" + b"\0" * 64):
        with pytest.raises(model.ImageDecodeError):
            model.decode(data, max_pixels=LIMIT)


def test_pixel_limit_is_checked_before_decoding():
    bomb = encode(Image.new("L", (8000, 8000)), "PNG")  # a few KB, 64 megapixels
    assert len(bomb) < 200_000
    with pytest.raises(model.ImageTooLargeError, match="8000x8000 = 64000000 pixels, the limit is 50000000"):
        model.decode(bomb, max_pixels=LIMIT)
    huge = encode(Image.new("1", (12000, 12000)), "PNG")  # past Pillow's own bomb guard as well
    with pytest.raises(model.ImageTooLargeError, match="pixel"):
        model.decode(huge, max_pixels=LIMIT)


def test_jpeg_draft_mode_keeps_at_least_the_requested_size():
    big = encode(photo(2048, 1536), "JPEG", quality=90)
    out = model.decode(big, max_pixels=LIMIT, draft_size=512)
    assert out.size == (1024, 768)
    assert model.decode(encode(photo(2048, 1536), "PNG"), max_pixels=LIMIT, draft_size=512).size == (2048, 1536)


def test_jpeg_draft_mode_leaves_a_jpeg_smaller_than_the_requested_size_as_it_is():
    small = encode(photo(300, 200), "JPEG")
    assert model.decode(small, max_pixels=LIMIT, draft_size=256).size == (300, 200)
