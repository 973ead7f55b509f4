"""The replica's decode path on the CPU (service/replica/jpeg.py): batched decode, orientation, grayscale, the
fallbacks one image at a time, mixed batches, and what the gateway sends it (service/http/decode.py)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from model import ImageDecodeError, ImageTooLargeError, get_variant
from service.config import GatewaySettings, Limits
from service.decoding import DecodeRules
from service.http.decode import Decoder
from service.replica.jpeg import EncodedJpeg, decode_jpegs, decode_on_cpu, prepare_batch
from tests.support.images import encode, photo, psnr

RECIPE = get_variant("hornet-t").preprocessing
WARP = get_variant("hornet-l-gf384").preprocessing
RULES = DecodeRules.from_settings(Limits(jpeg_draft=False), time_limit_s=5)  # the exact path
CPU = torch.device("cpu")


def _jpeg(width: int = 640, height: int = 480, seed: int = 0, **options) -> bytes:
    return encode(photo(width, height, seed=seed), "JPEG", quality=90, **options)


def _rotated(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _jpeg(500, 300, seed=4, exif=exif)


def _gateway_sends(data: bytes, replica_decodes: bool = True) -> np.ndarray | EncodedJpeg:
    decoder = Decoder(GatewaySettings(), RULES)
    return asyncio.run(decoder.prepare(data, RECIPE, replica_decodes))


# The bound the device path keeps against the exact CPU path (service/decoding.py): the same decoded pixels,
# resized by torch's antialiased bicubic instead of Pillow's (at most a grey level or two apart).
MIN_PSNR_DB = 45


@pytest.mark.parametrize("recipe", [RECIPE, WARP], ids=["resize_crop", "warp"])
def test_a_mixed_batch_matches_the_exact_cpu_path(recipe):
    uploads = [_jpeg(seed=1), _jpeg(1024, 768, seed=2), encode(photo(300, 400, seed=3).convert("L"), "JPEG")]
    gateway_pixels = RULES.pixels(encode(photo(seed=5), "PNG"), recipe)
    items = [gateway_pixels, *(EncodedJpeg(data) for data in uploads)]
    prepared = prepare_batch(items, recipe, CPU, RULES)
    assert prepared.pixels.shape == (4, recipe.input_size, recipe.input_size, 3)
    assert prepared.pixels.dtype == torch.uint8 and not prepared.failed and prepared.fallbacks == 0
    assert torch.equal(prepared.pixels[0], torch.from_numpy(gateway_pixels))  # pixels pass through untouched
    for got, data in zip(prepared.pixels[1:], uploads, strict=True):
        assert psnr(got.numpy(), RULES.pixels(data, recipe)) >= MIN_PSNR_DB


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_orientation_the_gateway_reads_is_applied_as_the_cpu_path_applies_it(orientation):
    data = _rotated(orientation)
    sent = _gateway_sends(data)
    assert sent == EncodedJpeg(data, orientation)
    prepared = prepare_batch([sent], RECIPE, CPU, RULES)
    assert psnr(prepared.pixels[0].numpy(), RULES.pixels(data, RECIPE)) >= MIN_PSNR_DB


def test_an_image_the_device_decoder_refuses_is_decoded_on_the_cpu_alone():
    uploads = [_jpeg(seed=1), _jpeg(seed=2), _jpeg(seed=3)]

    def refuses_the_second(datas, device):  # as nvJPEG refuses an unusual chroma subsampling
        decoded = decode_jpegs(datas, device)
        decoded[1] = RuntimeError("nvjpeg: unsupported subsampling")
        return decoded

    prepared = prepare_batch([EncodedJpeg(d) for d in uploads], RECIPE, CPU, RULES, decode=refuses_the_second)
    assert prepared.fallbacks == 1 and not prepared.failed
    assert np.array_equal(prepared.pixels[1].numpy(), RULES.pixels(uploads[1], RECIPE))  # the exact path itself
    assert psnr(prepared.pixels[0].numpy(), RULES.pixels(uploads[0], RECIPE)) >= MIN_PSNR_DB


def test_an_image_no_decoder_takes_fails_alone():
    good = _jpeg(seed=1)
    corrupt = good[:600] + b"\x00" * 50  # a valid header, then nothing a decoder can use
    prepared = prepare_batch([EncodedJpeg(good), EncodedJpeg(corrupt), EncodedJpeg(good)], RECIPE, CPU, RULES)
    assert set(prepared.failed) == {1} and isinstance(prepared.failed[1], ImageDecodeError)
    assert prepared.pixels.shape[0] == 2 and prepared.fallbacks == 1
    only_bad = prepare_batch([EncodedJpeg(corrupt)], RECIPE, CPU, RULES)
    assert only_bad.pixels.shape == (0, 224, 224, 3) and set(only_bad.failed) == {0}


def test_the_gateway_sends_baseline_jpegs_and_decodes_the_rest_itself():
    baseline = _jpeg()
    assert isinstance(_gateway_sends(baseline), EncodedJpeg)
    assert isinstance(_gateway_sends(encode(photo().convert("L"), "JPEG")), EncodedJpeg)  # grayscale
    for kept in (_jpeg(progressive=True), encode(photo().convert("CMYK"), "JPEG"), encode(photo(), "PNG")):
        assert _gateway_sends(kept).shape == (224, 224, 3)
    assert _gateway_sends(baseline, replica_decodes=False).shape == (224, 224, 3)


def test_the_gateway_checks_the_header_of_what_it_sends():
    decoder = Decoder(GatewaySettings(), DecodeRules.from_settings(Limits(max_pixels=100_000), time_limit_s=5))
    with pytest.raises(ImageTooLargeError, match="the limit is 100000"):
        asyncio.run(decoder.prepare(_jpeg(640, 480), RECIPE, replica_decodes=True))
    with pytest.raises(ImageDecodeError):
        asyncio.run(decoder.prepare(b"\xff\xd8\xff" + b"\x00" * 100, RECIPE, replica_decodes=True))


def test_a_batch_of_the_gateways_pixels_never_calls_the_device_decoder():
    def no_decoder(datas, device):
        raise AssertionError("the decoder was called")

    pixels = RULES.pixels(_jpeg(seed=6), RECIPE)
    prepared = prepare_batch([pixels, pixels], RECIPE, CPU, RULES, decode=no_decoder)
    assert prepared.pixels.shape == (2, 224, 224, 3) and prepared.fallbacks == 0


def test_a_cpu_replica_decodes_as_the_gateway_does_on_every_thread_and_a_bad_image_fails_alone():
    draft = DecodeRules.from_settings(Limits(), time_limit_s=5)  # the service's default: JPEG draft
    uploads = [_jpeg(1024, 768, seed=1), _rotated(6), _jpeg(seed=3)]
    corrupt = uploads[2][:600] + b"\x00" * 50
    gateway_pixels = draft.pixels(encode(photo(seed=5), "PNG"), RECIPE)
    items = [EncodedJpeg(uploads[0]), gateway_pixels, EncodedJpeg(corrupt), EncodedJpeg(uploads[1], 6)]
    with ThreadPoolExecutor(2) as pool:
        prepared = decode_on_cpu(items, RECIPE, draft, pool)
    assert set(prepared.failed) == {2} and isinstance(prepared.failed[2], ImageDecodeError)
    assert prepared.pixels.shape == (3, 224, 224, 3) and prepared.fallbacks == 0
    for got, want in zip(
        prepared.pixels,
        [draft.pixels(uploads[0], RECIPE), gateway_pixels, draft.pixels(uploads[1], RECIPE)],
        strict=True,
    ):
        assert np.array_equal(got.numpy(), want)  # the gateway's pixels, bit for bit
