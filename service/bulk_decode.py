"""The bulk job's CPU stage: read each input's bytes, decode and resize them exactly as the gateway does.

A file that cannot be used becomes a row with an error (type and message) and black pixels, never an exception:
the job must not crash on one bad file, nor drop it.
"""

from __future__ import annotations

import numpy as np

from model import ImageDecodeError, ImageTooLargeError, Preprocessing, get_variant, resize
from model.preprocess import DECODE_BUDGET, draft_size, load, open_image
from service.bulk_inputs import TooLarge, read_bytes
from service.config import Limits

# The gateway's error types (README, API errors) for the same causes, plus one for files that cannot be read.
INVALID_IMAGE = "invalid_image"
TOO_LARGE = "payload_too_large"
UNREADABLE = "unreadable"


class InputError(ValueError):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.type = error_type


def pixels_from_bytes(data: bytes, recipe: Preprocessing, limits: Limits, time_limit_s: float) -> np.ndarray:
    """The gateway's decode path for one image (the upload's empty-body check, then `service.decode.Decoder`:
    open with the pixel limit and the decode budget, load within the time limit, resize): uint8 (S, S, 3)."""
    if not data:
        raise InputError(INVALID_IMAGE, "the image is empty (0 bytes)")
    try:
        image, _ = open_image(data, max_pixels=limits.max_pixels, budget={**DECODE_BUDGET, **limits.decode_budget},
                              min_side=draft_size(recipe), draft=limits.jpeg_draft)  # fmt: skip
        return resize(load(image, time_limit_s=time_limit_s), recipe)
    except ImageTooLargeError as exc:  # over the pixel limit or the budget, or past the time limit
        raise InputError(TOO_LARGE, str(exc)) from None
    except ImageDecodeError as exc:
        raise InputError(INVALID_IMAGE, str(exc)) from None


def load_pixels(name: str, recipe: Preprocessing, limits: Limits, time_limit_s: float) -> np.ndarray:
    try:
        data = read_bytes(name, limits.max_body_bytes)
    except TooLarge as exc:
        raise InputError(TOO_LARGE, str(exc)) from None
    except OSError as exc:  # missing, a directory, no permission, a remote store refusing
        raise InputError(UNREADABLE, f"cannot read {name}: {exc}") from None
    return pixels_from_bytes(data, recipe, limits, time_limit_s)


def decode_batch(
    batch: dict[str, np.ndarray], *, model_id: str, limits: Limits, time_limit_s: float
) -> dict[str, np.ndarray]:
    """Ray Data batch {path} -> {path, pixels, error_type, error}; "" means no error."""
    recipe = get_variant(model_id).preprocessing
    names = [str(n) for n in batch["path"]]
    pixels = np.zeros((len(names), recipe.input_size, recipe.input_size, 3), dtype=np.uint8)
    error_types, errors = [""] * len(names), [""] * len(names)
    for i, name in enumerate(names):
        try:
            pixels[i] = load_pixels(name, recipe, limits, time_limit_s)
        except InputError as exc:
            error_types[i], errors[i] = exc.type, str(exc)
        except Exception as exc:  # the job outlives any surprise in one file; the row says what it was
            error_types[i], errors[i] = INVALID_IMAGE, f"cannot decode image: {type(exc).__name__}: {exc}"
    return {"path": np.array(names, dtype=object), "pixels": pixels,
            "error_type": np.array(error_types, dtype=object), "error": np.array(errors, dtype=object)}  # fmt: skip
