"""A one-line description of the machine a benchmark ran on (printed and stored with the numbers)."""

from __future__ import annotations

import os
import platform

import torch


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cpu_bf16_support() -> str:
    """The SIMD features that decide whether bf16 autocast can be faster than fp32 on this CPU."""
    info = _cpuinfo()
    found = [f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f" {f}" in info]
    return ",".join(found) or "none"


def describe() -> dict[str, str]:
    info = {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "cpu_flags": cpu_bf16_support(),
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
