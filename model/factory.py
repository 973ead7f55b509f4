"""`create_model`: a variant by name, with random or checkpoint weights."""

from __future__ import annotations

import torch
from torch import nn

from model import checkpoint
from model.checkpoint import CheckpointError, WeightsSource
from model.hornet import HorNet
from model.registry import get_builder, get_variant


def _init_random(model: HorNet) -> None:
    """The authors' initialisation: truncated normal (std 0.02) for conv/linear weights, zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def create_model(name: str, *, weights: WeightsSource | None = None, num_classes: int | None = None) -> HorNet:
    """A HorNet in eval mode, fp32, on the CPU.

    `weights`: None (random init), a file, an URL, a checkpoint directory, or a state dict in the
    official or mmpretrain layout, bare or wrapped. The checkpoint decides the head size and the
    global-filter shapes; `num_classes`, if given, must agree with it.
    """
    variant = get_variant(name)
    builder = get_builder(name)
    if weights is None:
        model = builder(num_classes=num_classes)
        _init_random(model)
        return model.eval()
    state_dict = checkpoint.to_official_layout(checkpoint.read_source(weights, variant))
    classes = checkpoint.head_classes(state_dict)
    if num_classes is not None and num_classes != classes:
        raise CheckpointError(f"num_classes={num_classes} but the checkpoint's head.weight has {classes} rows")
    with torch.device("meta"):
        model = builder(num_classes=classes, gf_sizes=checkpoint.gf_sizes(state_dict, variant))
    model = model.to_empty(device="cpu")
    checkpoint.load_strict(model, state_dict)
    return model.eval()
