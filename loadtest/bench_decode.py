"""Decode + resize cost per image for the corpus photo sizes: the service's decode (service/decoding.py) exact, with
its default JPEG draft (libjpeg-turbo's DCT scaling, margin 2) and with draft margin 1, against libjpeg-turbo called
directly through simplejpeg.

    python -m loadtest.bench_decode --sizes 1024x768,2048x1536,4000x3000

Every path gives hornet-t's model input (docs/model.md#preprocessing); the table gives ms per image on one thread
and the PSNR of each path's model input against the exact decode.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from model import get_variant, resize
from model.preprocess import draft_size
from service.config import Limits
from service.decoding import DecodeRules
from tests.support.images import encode, photo


def _simplejpeg(data: bytes, min_side: int | None) -> Image.Image:
    import simplejpeg

    if min_side is None:
        return Image.fromarray(simplejpeg.decode_jpeg(data, colorspace="RGB"))
    # The smallest DCT scale (n/8) whose short side stays at or above min_side, as Pillow's draft does.
    return Image.fromarray(simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=min_side, min_width=min_side))


def _ms_per_image(fn: Callable[[], object], seconds: float) -> float:
    fn()
    runs, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or runs < 3:
        fn()
        runs += 1
    return elapsed / runs * 1e3


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(float) - b.astype(float)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hornet-t")
    p.add_argument("--sizes", default="1024x768,2048x1536,4000x3000")
    p.add_argument("--seconds", type=float, default=2.0)
    args = p.parse_args(argv)
    recipe = get_variant(args.model).preprocessing
    min_side = draft_size(recipe)

    def service(**limits: object) -> Callable[[bytes], np.ndarray]:
        rules = DecodeRules.from_settings(Limits(max_pixels=10**9, **limits), time_limit_s=60)
        return lambda data: rules.pixels(data, recipe)

    paths: dict[str, Callable[[bytes], np.ndarray]] = {
        "exact": service(jpeg_draft=False),
        "draft x2 (default)": service(),
        "draft x1": service(jpeg_draft_margin=1),
        "simplejpeg exact": lambda d: resize(_simplejpeg(d, None), recipe),
        "simplejpeg scaled": lambda d: resize(_simplejpeg(d, min_side), recipe),
    }
    print(f"decode + resize to {recipe.input_size}px ({args.model}), one thread, ms per image (PSNR vs exact)")
    print(f"{'size':>10} {'KB':>6}" + "".join(f"{name:>24}" for name in paths))
    rows = []
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.split("x"))
        data = encode(photo(width, height, seed=3), "JPEG", quality=90)
        Image.open(io.BytesIO(data)).verify()
        reference = paths["exact"](data)
        row = {"size": size, "kb": len(data) / 1e3}
        cells = []
        for name, path in paths.items():
            ms = _ms_per_image(lambda path=path, data=data: path(data), args.seconds)
            psnr = _psnr(path(data), reference)
            row[name] = {"ms": ms, "psnr_db": psnr}
            cells.append(f"{ms:>9.1f} ms ({psnr:>5.1f} dB)")
        print(f"{size:>10} {row['kb']:>6.0f}" + "".join(f"{c:>24}" for c in cells), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
