"""A corpus of real-looking uploads: JPEG and PNG photos from 200 KB to 5 MB, some of them large.

python -m loadtest.corpus loadtest/corpus        # writes the default corpus, prints the sizes
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.support.images import encode, photo

# (width, height, format): phone-camera-like JPEGs from 1 to 12 megapixels, and screenshot-like PNGs.
DEFAULT_SPECS: list[tuple[int, int, str]] = [
    (1024, 768, "JPEG"), (1280, 960, "JPEG"), (1600, 1200, "JPEG"), (1920, 1080, "JPEG"),
    (2048, 1536, "JPEG"), (3024, 4032, "JPEG"), (4000, 3000, "JPEG"),
    (640, 480, "PNG"), (800, 800, "PNG"), (1024, 768, "PNG"),
]  # fmt: skip


def make_corpus(directory: Path, specs: list[tuple[int, int, str]] = DEFAULT_SPECS) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (width, height, fmt) in enumerate(specs):
        path = directory / f"photo_{i:02d}_{width}x{height}.{'jpg' if fmt == 'JPEG' else 'png'}"
        if not path.exists():
            options = {"quality": 90} if fmt == "JPEG" else {"compress_level": 6}
            path.write_bytes(encode(photo(width, height, seed=i), fmt, **options))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    for path in make_corpus(parser.parse_args().directory):
        print(f"{path}  {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
