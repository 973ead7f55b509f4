"""The decoder's guards against hostile uploads: only the documented formats reach a Pillow plugin, each
format has a decode budget checked from the header, and decoding stops at its time limit."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import model
from model.preprocess import DECODE_BUDGET, FORMATS, DecodeTimeoutError, draft_size, load, open_image
from tests.support.images import encode, photo, psd, webp_bomb

LIMIT = 100_000_000
PIL_DIR = Path(Image.__file__).parent
ALLOWED_PLUGINS = {f"{name}ImagePlugin.py" for name in ("Jpeg", "Png", "WebP", "Gif", "Bmp", "Tiff")}


def _saved(fmt: str, mode: str = "RGB") -> Callable[[], bytes]:
    return lambda: encode(photo(32, 32).convert(mode), fmt)


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>'
# Formats Pillow (or another library) would read, none of them documented: (name, bytes, Pillow reads it).
REFUSED = [
    ("EPS", _saved("EPS"), True),
    ("PDF", _saved("PDF"), False),
    ("PSD", psd, True),
    ("ICO", _saved("ICO"), True),
    ("SVG", lambda: SVG, False),
    ("AVIF", _saved("AVIF"), True),
    ("JPEG2000", _saved("JPEG2000"), True),
    ("ICNS", _saved("ICNS"), True),
    ("DDS", _saved("DDS"), True),
    ("TGA", _saved("TGA"), True),
    ("PCX", _saved("PCX"), True),
    ("PPM", _saved("PPM"), True),
    ("QOI", _saved("QOI"), True),
    ("SGI", _saved("SGI"), True),
    ("SPIDER", _saved("SPIDER", "F"), True),
    ("XBM", _saved("XBM", "1"), True),
]


def _plugins_run(action: Callable[[], object]) -> tuple[set[str], BaseException | None]:
    """Run `action` under a profiler; return the Pillow plugin files any of whose code ran, and what it raised."""
    files: set[str] = set()

    def profile(frame, event, arg):  # noqa: ARG001
        if event == "call" and frame.f_code.co_filename.endswith("ImagePlugin.py"):
            files.add(Path(frame.f_code.co_filename).name)

    sys.setprofile(profile)
    try:
        action()
        raised = None
    except Exception as exc:
        raised = exc
    finally:
        sys.setprofile(None)
    return files, raised


@pytest.mark.parametrize(("fmt", "make", "pillow_reads"), REFUSED, ids=[r[0] for r in REFUSED])
def test_an_undocumented_format_is_refused_and_its_plugin_never_runs(fmt, make, pillow_reads):
    data = make()
    ran, raised = _plugins_run(lambda: model.decode(data, max_pixels=LIMIT))
    assert isinstance(raised, model.ImageDecodeError) and "not a format this service reads" in str(raised)
    assert ran <= ALLOWED_PLUGINS, f"{fmt} bytes reached {ran - ALLOWED_PLUGINS}"
    # The control: the same bytes through a plain Image.open do reach their plugin.
    opened, _ = _plugins_run(lambda: Image.open(io.BytesIO(data)).load())
    if pillow_reads:
        assert Image.open(io.BytesIO(data)).format == fmt
        assert opened - ALLOWED_PLUGINS, f"the control did not run the {fmt} plugin"


def test_eps_never_starts_ghostscript(tmp_path):
    """The issue's report: an EPS upload made Pillow look for Ghostscript. A fake `gs` on PATH leaves a file
    when it runs; the plain Pillow path runs it, the service's decoder does not (each in a fresh process)."""
    bin_dir, sentinel = tmp_path / "bin", tmp_path / "gs-ran"
    bin_dir.mkdir()
    gs = bin_dir / "gs"
    gs.write_text(f"#!/bin/sh\ntouch {sentinel}\nexit 1\n")
    gs.chmod(0o755)
    eps = tmp_path / "x.eps"
    eps.write_bytes(_saved("EPS")())
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": os.pathsep.join(sys.path)}

    def run(code: str) -> str:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = run(
        "import sys; from PIL import Image\n"
        "import model\n"
        f"data = open({str(eps)!r}, 'rb').read()\n"
        "try:\n    model.decode(data, max_pixels=10**8)\nexcept model.ImageDecodeError as e:\n    print('refused', e)\n"
        "print(sorted(m for m in sys.modules if m.endswith('ImagePlugin')))\n"
    )
    assert out.startswith("refused") and not sentinel.exists()
    assert "PIL.EpsImagePlugin" not in out, "the service imported more plugins than the documented formats"
    run(f"from PIL import Image\ntry:\n    Image.open({str(eps)!r}).load()\nexcept Exception:\n    pass\n")
    assert sentinel.exists(), "the control never ran the fake Ghostscript"


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_documented_format_decodes(fmt):
    assert model.decode(encode(photo(64, 48), fmt), max_pixels=LIMIT, budget=DECODE_BUDGET).size == (64, 48)


def test_a_tiny_webp_bomb_is_over_budget_before_any_pixel_is_decoded():
    bomb = webp_bomb(6000)  # the 1.4 KB file that took 1.6 s to decode
    assert len(bomb) < 4000
    started = time.perf_counter()
    with pytest.raises(model.ImageTooLargeError, match="budget for WEBP is 12000000"):
        open_image(bomb, max_pixels=LIMIT, budget=DECODE_BUDGET)
    assert time.perf_counter() - started < 0.1


def test_the_budget_is_by_format():
    png, jpeg = encode(photo(100, 100), "PNG"), encode(photo(100, 100), "JPEG")
    with pytest.raises(model.ImageTooLargeError, match="10000 pixels, the budget for PNG is 9999"):
        open_image(png, max_pixels=LIMIT, budget={"PNG": 9999})
    assert open_image(jpeg, max_pixels=LIMIT, budget={"PNG": 9999})[1].pixels == 10_000


def test_a_baseline_jpeg_over_budget_is_dct_scaled_to_fit_a_progressive_one_is_refused():
    baseline = encode(photo(2400, 1600), "JPEG", quality=90)
    image, plan = open_image(baseline, max_pixels=LIMIT, budget={"JPEG": 1_000_000}, min_side=256)
    assert (plan.size, plan.decoded_size, plan.pixels) == ((2400, 1600), (1200, 800), 960_000)
    assert load(image).size == (1200, 800)
    progressive = encode(photo(2400, 1600), "JPEG", quality=90, progressive=True)
    with pytest.raises(model.ImageTooLargeError, match="progressive JPEG must decode 3840000 pixels"):
        open_image(progressive, max_pixels=LIMIT, budget={"JPEG": 1_000_000}, min_side=256)


def test_dct_scaling_never_goes_below_what_the_recipe_needs():
    jpeg = encode(photo(600, 500), "JPEG")
    recipe = model.get_variant("hornet-t").preprocessing  # resize_short 256: 1/2 scale (300x250) is too small
    with pytest.raises(model.ImageTooLargeError, match="budget for JPEG is 100000"):
        open_image(jpeg, max_pixels=LIMIT, budget={"JPEG": 100_000}, min_side=draft_size(recipe))


def test_a_decode_past_its_time_limit_stops_early():
    noise = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    png = encode(Image.fromarray(noise), "PNG", compress_level=1)
    started = time.perf_counter()
    model.decode(png, max_pixels=LIMIT)
    full_s = time.perf_counter() - started
    started = time.perf_counter()
    with pytest.raises(DecodeTimeoutError, match="longer than the limit of 0.02 s"):
        model.decode(png, max_pixels=LIMIT, time_limit_s=0.02)
    assert time.perf_counter() - started < full_s / 2
