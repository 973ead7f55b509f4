"""The fidelity tool (loadtest/fidelity.py) on a few photos: its trained classifier really classifies, and each decode
path stays within the bound the service relies on (docs/performance.md#decode-fidelity)."""

import io

import numpy as np
import pytest

from loadtest import fidelity
from model.preprocess import FORMATS
from service.client import IMAGE_FORMATS, downscale
from tests.support.images import encode, photo


@pytest.fixture(scope="module")
def classifier():
    return fidelity.Classifier()


def test_the_trained_classifier_knows_a_cat(classifier):
    cat = fidelity.photos()["chelsea"]  # scikit-image's Chelsea, a tabby cat
    pixels = fidelity.PATHS["exact"](fidelity.jpeg(cat, None))
    cats = set(range(281, 286))  # ImageNet-1k: tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert cats & set(classifier.top5(pixels[None])[0][:2])


# What each path keeps at worst (docs/performance.md#decode-fidelity): the exact path is the reference; the
# client's downscale may move the crop by a pixel (its resize rounds), so its PSNR bound is low.
MIN_PSNR_DB = {"exact": float("inf"), "draft": 38, "draft-x1.5": 45, "draft-x2": 48, "replica": 50, "client": 20}


@pytest.mark.slow
def test_every_path_keeps_the_classifiers_top5_on_natural_photos(classifier):
    rows = fidelity.measure(classifier, list(fidelity.PATHS), (None, 4000), per_photo=1)
    assert {row["path"] for row in rows} == set(MIN_PSNR_DB) and all(row["images"] == 8 for row in rows)
    for row in rows:
        assert row["psnr_min_db"] >= MIN_PSNR_DB[row["path"]], row
        assert row["top5_overlap"] >= 0.9, row
    assert all(row["top1_agreement"] == 1 for row in rows if row["path"] == "exact")


def test_the_client_downscale_shrinks_big_photos_only_and_keeps_their_orientation():
    from PIL import Image

    big = encode(photo(2000, 1500, seed=1), "JPEG", quality=95)
    small = downscale(big)
    assert Image.open(io.BytesIO(small)).size == (1024, 768) and len(small) < len(big) / 2
    little = encode(photo(640, 480), "JPEG")
    assert downscale(little) == little and downscale(b"not an image") == b"not an image"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90 degrees clockwise
    sideways = encode(photo(2000, 1500, seed=2), "JPEG", exif=exif)
    upright = Image.open(io.BytesIO(downscale(sideways)))
    assert upright.size == (768, 1024) and not upright.getexif().get(0x0112)
    assert np.asarray(upright).std() > 10


def test_the_client_downscale_opens_only_the_formats_the_service_reads():
    assert IMAGE_FORMATS == FORMATS
    from PIL import Image

    big_pcx = encode(Image.new("RGB", (256, 256)).resize((1600, 1200)), "PCX")  # Pillow reads PCX; we do not
    assert downscale(big_pcx) == big_pcx
