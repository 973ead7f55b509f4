"""The deterministic weights of the golden vectors (docs/model.md#golden-vectors), in the official and mmpretrain
layouts."""

from __future__ import annotations

import json
import zlib

import numpy as np
import torch

from tests.support import DATA

_LN_PREFIXES = ("downsample_layers.0.1.", "downsample_layers.1.0.", "downsample_layers.2.0.", "downsample_layers.3.0.")


def spec_tensor(key: str, shape: list[int]) -> np.ndarray:
    rng = np.random.default_rng([7, zlib.crc32(key.encode())])
    n = rng.standard_normal(shape).astype(np.float32)
    if "gamma" in key:
        return 0.5 + 0.1 * n
    if "complex_weight" in key:
        return 0.5 * n
    if len(shape) == 1:
        is_ln = "norm" in key or key.startswith(_LN_PREFIXES)
        return 1 + 0.1 * n if is_ln and key.endswith("weight") else 0.1 * n
    return n / np.sqrt(np.prod(shape[1:]))


def official_state_dict() -> dict[str, torch.Tensor]:
    keys = json.loads((DATA / "keys_hornet-t.json").read_text())
    return {k: torch.from_numpy(np.ascontiguousarray(spec_tensor(k, s))) for k, s in keys}


def to_mmpretrain(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reverse of model.checkpoint.convert_mmpretrain, written out independently for the tests."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("head."):
            new = "head.fc." + key[len("head.") :]
        elif key.startswith("norm."):
            new = "backbone.norm3." + key[len("norm.") :]
        else:
            new = "backbone." + key.replace(".gnconv.pws.", ".gnconv.projs.")
            if new.endswith((".gamma1", ".gamma2")):
                new += ".weight"
        out[new] = value
    return out


def golden() -> tuple[torch.Tensor, torch.Tensor]:
    data = np.load(DATA / "golden_hornet-t_seed7.npz")
    return torch.from_numpy(data["x"]), torch.from_numpy(data["logits"])
