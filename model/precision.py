"""Which float precision a replica runs in: `auto` picks the fastest one the device does well.

CPU: bf16 where the CPU has bf16 instructions (AVX512-BF16 or AMX), else fp32 (without them bf16 is emulated
and slower than fp32). CUDA: bf16 where the GPU supports it (Ampere and later), else fp16.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from functools import cache
from typing import Literal, get_args

import torch

Precision = Literal["auto", "fp32", "bf16", "fp16"]
ConcretePrecision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(ConcretePrecision)
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_fast_bf16(flags: frozenset[str] | None = None) -> bool:
    """AVX512-BF16 or AMX-BF16, from the flags given, else from /proc/cpuinfo and torch's own CPU probe."""
    if flags is not None:
        return bool(flags & BF16_CPU_FLAGS)
    probes = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return bool(cpu_flags() & BF16_CPU_FLAGS) or any(probe() for probe in probes if probe is not None)


def resolve_precision(requested: Precision, device: torch.device | str) -> ConcretePrecision:
    """`auto` -> the precision for this device (see the module docstring); any other value is returned as is."""
    if requested != "auto":
        if requested not in PRECISIONS:
            raise ValueError(f"unknown precision {requested!r}; use auto or one of {', '.join(PRECISIONS)}")
        return requested
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast(device: torch.device, precision: ConcretePrecision) -> AbstractContextManager:
    """Autocast for bf16/fp16, nothing for fp32. The weight-cast cache is off: it only helps a training step
    that reuses a weight, and a CUDA graph capture must not keep cached casts."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision], cache_enabled=False)
