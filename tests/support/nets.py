"""Small HorNets for the checks a model's width does not change (padding, staging, warm-up, autocast)."""

from __future__ import annotations

import torch

import model


def narrow_hornet(gf_sizes: tuple = (None, None, None, None), num_classes: int = 10) -> model.HorNet:
    """hornet-t's blocks and depths at a quarter of its width (a batch costs about a tenth), seeded."""
    torch.manual_seed(0)
    return model.HorNet(model.HorNetConfig(base_dim=16, gf_sizes=gf_sizes, num_classes=num_classes)).eval()
