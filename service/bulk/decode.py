"""The bulk job's CPU stage: read each input's bytes, decode and resize them exactly as the gateway does.

Where the model actors decode on their device (`BulkJob.device_decodes`), a JPEG their decoder takes goes on as
its bytes and EXIF orientation, its header checked here as the gateway checks it, and the actor decodes it
(service/replica/jpeg.py). A file that cannot be used becomes a row with an error (type and message) and black
pixels, never an exception: the job must not crash on one bad file, nor drop it.
"""

from __future__ import annotations

import numpy as np

from model import ImageDecodeError, ImageTooLargeError, Preprocessing, get_variant
from model.preprocess import exif_orientation
from service.bulk.inputs import TooLarge, read_bytes
from service.config import VariantSettings
from service.decoding import DecodeRules, device_decodable
from service.http.errors import InvalidImage, PayloadTooLarge
from service.replica.jpeg import EncodedJpeg

# The gateway's error types for the same causes, plus one for files that cannot be read.
INVALID_IMAGE = InvalidImage.type
TOO_LARGE = PayloadTooLarge.type
UNREADABLE = "unreadable"


class InputError(ValueError):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.type = error_type


def load_input(
    name: str, recipe: Preprocessing, rules: DecodeRules, max_bytes: int, device_decodes: bool
) -> np.ndarray | EncodedJpeg:
    """One input -> uint8 (S, S, 3) by the gateway's decode (service/decoding.py), or the JPEG for the device
    decoder; InputError for a file that cannot be used."""
    try:
        data = read_bytes(name, max_bytes)
        image, plan = rules.open(data, recipe)
        if device_decodes and device_decodable(image, plan):
            return EncodedJpeg(data, exif_orientation(image))
        return rules.finish(image, plan, recipe)
    except (TooLarge, ImageTooLargeError) as exc:  # over the byte or pixel limit, the budget, the time limit
        raise InputError(TOO_LARGE, str(exc)) from None
    except ImageDecodeError as exc:
        raise InputError(INVALID_IMAGE, str(exc)) from None
    except OSError as exc:  # missing, a directory, no permission, a remote store refusing
        raise InputError(UNREADABLE, f"cannot read {name}: {exc}") from None


def decode_batch(
    batch: dict[str, np.ndarray], *, variant: VariantSettings, device_decodes: bool = False
) -> dict[str, np.ndarray]:
    """Ray Data batch {path} -> {path, pixels, jpeg, orientation, error_type, error}: a row has its pixels, or
    (device_decodes) its JPEG bytes and orientation with black pixels; "" means no error."""
    recipe = get_variant(variant.model_id).preprocessing
    rules = DecodeRules.for_variant(variant)
    names = [str(n) for n in batch["path"]]
    pixels = np.zeros((len(names), recipe.input_size, recipe.input_size, 3), dtype=np.uint8)
    jpegs, orientations = [b""] * len(names), np.ones(len(names), dtype=np.int8)
    error_types, errors = [""] * len(names), [""] * len(names)
    for i, name in enumerate(names):
        try:
            loaded = load_input(name, recipe, rules, variant.limits.max_body_bytes, device_decodes)
        except InputError as exc:
            error_types[i], errors[i] = exc.type, str(exc)
            continue
        except Exception as exc:  # the job outlives any surprise in one file; the row says what it was
            error_types[i], errors[i] = INVALID_IMAGE, f"cannot decode image: {type(exc).__name__}: {exc}"
            continue
        if isinstance(loaded, EncodedJpeg):
            jpegs[i], orientations[i] = loaded.data, loaded.orientation
        else:
            pixels[i] = loaded
    return {"path": np.array(names, dtype=object), "pixels": pixels, "jpeg": np.array(jpegs, dtype=object),
            "orientation": orientations, "error_type": np.array(error_types, dtype=object),
            "error": np.array(errors, dtype=object)}  # fmt: skip
