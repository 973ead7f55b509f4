"""HorNet architecture (Rao et al., NeurIPS 2022), module names as in the authors' checkpoints.

Module and parameter names follow the official `hornet.py` so that an official state dict loads
without renaming; the mmpretrain layout is converted in `model.checkpoint`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6
DEPTHS = (2, 3, 18, 2)
ORDERS = (2, 3, 4, 5)
MIXER_SCALE = 1.0 / 3.0


class LayerNorm2d(nn.LayerNorm):
    """Channels-first LayerNorm over dim 1 of an NCHW tensor.

    `fused=True` runs `F.layer_norm` on an NHWC view (one kernel); `fused=False` is the authors'
    explicit mean/variance formula. Both compute the same function; the flag exists for the benchmark.
    """

    def __init__(self, num_channels: int, eps: float = LN_EPS, fused: bool = True) -> None:
        super().__init__(num_channels, eps=eps)
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
            return x.permute(0, 3, 1, 2)
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GlobalLocalFilter(nn.Module):
    """Half the channels through a depthwise 3x3, half through a learnt global filter in Fourier space."""

    def __init__(self, dim: int, h: int, w: int) -> None:
        super().__init__()
        half = dim // 2
        self.dw = nn.Conv2d(half, half, kernel_size=3, padding=1, bias=False, groups=half)
        self.complex_weight = nn.Parameter(torch.randn(half, h, w, 2) * 0.02)
        self.pre_norm = LayerNorm2d(dim)
        self.post_norm = LayerNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_norm(x)
        local, glob = torch.chunk(x, 2, dim=1)
        local = self.dw(local)
        glob = self._global_filter(glob).to(local.dtype)
        batch, half, height, width = local.shape
        x = torch.stack((local, glob), dim=2).reshape(batch, 2 * half, height, width)
        return self.post_norm(x)

    def _global_filter(self, x: torch.Tensor) -> torch.Tensor:
        # The FFT and the complex product stay fp32 under any autocast: bf16/fp16 FFTs lose the filter.
        with torch.autocast(device_type=x.device.type, enabled=False):
            height, width = x.shape[-2:]
            spectrum = torch.fft.rfft2(x.float(), dim=(2, 3), norm="ortho")
            weight = self.complex_weight.float()
            if weight.shape[1:3] != spectrum.shape[2:4]:
                weight = F.interpolate(
                    weight.permute(3, 0, 1, 2), size=spectrum.shape[2:4], mode="bilinear", align_corners=True
                ).permute(1, 2, 3, 0)
            spectrum = spectrum * torch.view_as_complex(weight.contiguous())
            return torch.fft.irfft2(spectrum, s=(height, width), dim=(2, 3), norm="ortho")


def _depthwise7x7(dim: int) -> nn.Conv2d:
    return nn.Conv2d(dim, dim, kernel_size=7, padding=3, bias=True, groups=dim)


class GnConv(nn.Module):
    """Recursive gated convolution of order n (the official `gnconv`)."""

    def __init__(self, dim: int, order: int, gf_size: tuple[int, int] | None = None, scale: float = MIXER_SCALE):
        super().__init__()
        self.order = order
        self.dims = [dim // 2**k for k in reversed(range(order))]
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        mixed = sum(self.dims)
        self.dwconv = _depthwise7x7(mixed) if gf_size is None else GlobalLocalFilter(mixed, *gf_size)
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.pws = nn.ModuleList(nn.Conv2d(self.dims[k], self.dims[k + 1], 1) for k in range(order - 1))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pwa, abc = torch.split(self.proj_in(x), (self.dims[0], sum(self.dims)), dim=1)
        parts = torch.split(self.dwconv(abc) * self.scale, self.dims, dim=1)
        x = pwa * parts[0]
        for k, pw in enumerate(self.pws):
            x = pw(x) * parts[k + 1]
        return self.proj_out(x)


class Block(nn.Module):
    def __init__(self, dim: int, order: int, gf_size: tuple[int, int] | None) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.gnconv = GnConv(dim, order, gf_size)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma1 = nn.Parameter(torch.full((dim,), 1e-6))
        self.gamma2 = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.gamma1[:, None, None] * self.gnconv(self.norm1(x))
        y = self.pwconv2(self.act(self.pwconv1(self.norm2(x.permute(0, 2, 3, 1)))))
        return x + (self.gamma2 * y).permute(0, 3, 1, 2)


@dataclass(frozen=True)
class HorNetConfig:
    """What decides a HorNet's shape. `gf_sizes` holds the (h, w) global-filter shape per stage, or None
    for a depthwise 7x7 stage."""

    base_dim: int
    gf_sizes: Sequence[tuple[int, int] | None] = field(default=(None, None, None, None))
    num_classes: int = 1000

    @property
    def widths(self) -> list[int]:
        return [self.base_dim * 2**i for i in range(4)]


class HorNet(nn.Module):
    def __init__(self, config: HorNetConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.widths
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(3, widths[0], 4, stride=4), LayerNorm2d(widths[0]))]
        )
        for i in range(1, 4):
            self.downsample_layers.append(
                nn.Sequential(LayerNorm2d(widths[i - 1]), nn.Conv2d(widths[i - 1], widths[i], 2, stride=2))
            )
        self.stages = nn.ModuleList(
            nn.Sequential(*(Block(widths[i], ORDERS[i], config.gf_sizes[i]) for _ in range(DEPTHS[i])))
            for i in range(4)
        )
        self.norm = nn.LayerNorm(widths[-1], eps=LN_EPS)
        self.head = nn.Linear(widths[-1], config.num_classes)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for downsample, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(downsample(x))
        return self.norm(x.mean((-2, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def set_fused_layernorm(module: nn.Module, fused: bool) -> None:
    """Switch every channels-first LayerNorm between the fused kernel and the reference formula."""
    for m in module.modules():
        if isinstance(m, LayerNorm2d):
            m.fused = fused
