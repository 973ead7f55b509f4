"""Batched inference for a server: uint8 images in, top-k class indices and softmax scores out."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Literal

import numpy as np
import torch

from model.hornet import HorNet
from model.preprocess import normalize
from model.registry import Preprocessing

Precision = Literal["fp32", "bf16", "fp16"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class BatchPredictor:
    """Runs one HorNet on one device: normalise on the device, channels_last, `inference_mode`, and an
    optional bf16/fp16 autocast (the global filter's FFT stays fp32 inside the model)."""

    def __init__(
        self,
        model: HorNet,
        recipe: Preprocessing,
        device: torch.device | str = "cpu",
        precision: Precision = "fp32",
        channels_last: bool = True,
    ) -> None:
        self.device = torch.device(device)
        self.recipe = recipe
        self.precision = precision
        self.channels_last = channels_last
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device, memory_format=memory_format)

    def _autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])

    def logits(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> float32 logits (N, classes) on the device."""
        batch = torch.as_tensor(images)
        if self.device.type == "cuda":
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        x = normalize(batch.to(self.device), self.recipe)
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        with torch.inference_mode(), self._autocast():
            return self.model(x).float()

    def predict(self, images: np.ndarray | torch.Tensor, top_k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (indices int64, softmax scores float32), each (N, k), best first."""
        with torch.inference_mode():
            probs = self.logits(images).softmax(dim=-1)
            scores, indices = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        return indices.cpu().numpy(), scores.cpu().numpy()

    def warmup(self, batch_sizes: list[int]) -> None:
        """Run each batch size once so that the first real request pays no allocator or kernel-choice cost."""
        size = self.recipe.input_size
        for n in batch_sizes:
            self.predict(np.zeros((n, size, size, 3), dtype=np.uint8))
