"""Batched inference for a server: uint8 images in, top-k class indices and softmax scores out.

The whole path after the upload runs on the model's device: the uint8 batch crosses the bus (from a reused,
pinned staging buffer on CUDA), normalisation, the forward, softmax and top-k run there, and only the
top-k comes back. Options for fixed-shape serving, each off by default:

- `buckets`: pad a batch up to the next bucket size, so a replica runs a few fixed shapes;
- `compile`: `torch.compile` (inductor, weights frozen as constants) per batch size, warmed in `warmup`;
- `cuda_graphs`: capture each batch size's forward (eager or compiled) as a CUDA graph at warm-up.

A batch size whose compile or capture fails falls back to eager (logged, and named in `runner_kinds`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

import numpy as np
import torch

from model.buckets import StagingPool, bucket_for, check_buckets
from model.hornet import HorNet
from model.precision import ConcretePrecision, Precision, autocast, resolve_precision
from model.registry import Preprocessing

log = logging.getLogger(__name__)

CompileMode = Literal["off", "default", "max-autotune-no-cudagraphs"]
T = TypeVar("T")
Runner = Callable[[torch.Tensor, int, int], tuple[np.ndarray, np.ndarray]]
# One compiled graph per batch size; dynamo's default limit (8) would fall back to eager after 8 sizes.
_MIN_RECOMPILE_LIMIT = 64


def tune_for_fixed_shapes(device: torch.device) -> None:
    """Process-wide: cuDNN's autotuner picks the fastest kernels once per input shape, which pays off for a
    replica that runs a few fixed batch shapes (buckets)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _compile(fn: Callable, mode: CompileMode) -> Callable:
    """Inductor with freezing (weights become constants: folded casts and prepacked kernels); the
    max-autotune mode also searches kernel configs. CUDA graphs stay ours (`cuda_graphs`), not inductor's."""
    import torch._dynamo  # only a compiling predictor pays for importing the compiler stack

    options = {"freezing": True}
    if mode == "max-autotune-no-cudagraphs":
        options |= {"max_autotune": True, "triton.cudagraphs": False}
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, _MIN_RECOMPILE_LIMIT)
    return torch.compile(fn, dynamic=False, options=options)


class BatchPredictor:
    """Runs one HorNet on one device (see the module docstring). Thread-safe: concurrent `predict` calls
    each stage into their own buffer; captured graphs serve one call at a time."""

    def __init__(
        self,
        model: HorNet,
        recipe: Preprocessing,
        device: torch.device | str = "cpu",
        precision: Precision = "fp32",
        channels_last: bool = True,
        *,
        buckets: Sequence[int] | None = None,
        compile: CompileMode = "off",
        cuda_graphs: bool = False,
        max_top_k: int = 100,
    ) -> None:
        self.device = torch.device(device)
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs needs a CUDA device, not {self.device}")
        self.recipe = recipe
        self.precision: ConcretePrecision = resolve_precision(precision, self.device)
        self.channels_last = channels_last
        self.buckets = check_buckets(buckets) if buckets is not None else None
        self.compile = compile
        self.cuda_graphs = cuda_graphs
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device, memory_format=self.memory_format)
        # Static paths (compile, graphs) compute this many classes and slice; eager computes what is asked.
        self.max_top_k = min(max_top_k, model.num_classes)
        self._mean = torch.tensor(recipe.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(recipe.std, device=self.device).view(1, 3, 1, 1)
        size = recipe.input_size
        self._staging = StagingPool((size, size, 3), pin_memory=self.device.type == "cuda")
        self._runners: dict[int, Runner] = {}
        self.runner_kinds: dict[int, str] = {}
        self._runners_lock = threading.Lock()
        # The graphs of all batch sizes share one memory pool, so one graph's intermediates may overlay another's
        # outputs: a replay and the copy of its outputs hold this lock across all sizes.
        self._graph_pool = torch.cuda.graph_pool_handle() if cuda_graphs else None
        self._graph_lock = threading.Lock()

    @property
    def shape_specific(self) -> bool:
        """Whether a batch size runs slower the first time it runs: compiled code, CUDA graphs and cuDNN's
        algorithm choice are made per shape. On the CPU in eager mode a new batch size costs what it costs later
        (docs/performance.md#measurements-behind-the-codes-settings), so warming one size is enough there."""
        return self.static or self.device.type != "cpu"

    @property
    def static(self) -> bool:
        """Whether batches run through per-size compiled code or graphs (fixed top-k, see `max_top_k`)."""
        return self.compile != "off" or self.cuda_graphs

    def _normalized(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC on the device -> float32 NCHW normalised (model.preprocess.normalize's formula)."""
        x = (batch.permute(0, 3, 1, 2).float() - self._mean) / self._std
        return x.contiguous(memory_format=self.memory_format)

    def _forward(self, batch: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.precision):
            logits = self.model(self._normalized(batch))
        return logits.float().softmax(dim=-1).topk(k, dim=-1)

    def logits(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> float32 logits (N, classes) on the device (always eager, never padded)."""
        batch = torch.as_tensor(images)
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        with torch.inference_mode(), autocast(self.device, self.precision):
            return self.model(self._normalized(batch.to(self.device, non_blocking=True))).float()

    def predict(self, images: np.ndarray | torch.Tensor, top_k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (indices int64, softmax scores float32), each (N, k), best first."""
        batch = torch.as_tensor(images)
        if batch.dtype != torch.uint8 or batch.dim() != 4:
            raise ValueError(f"expected uint8 (N, H, W, 3) images, got {batch.dtype} {tuple(batch.shape)}")
        k = min(top_k, self.model.num_classes)
        if self.static and k > self.max_top_k:
            raise ValueError(f"top_k={top_k} is above this predictor's max_top_k={self.max_top_k}")
        largest = self.buckets[-1] if self.buckets else len(batch)
        if len(batch) > largest:
            parts = [self.predict(batch[i : i + largest], k) for i in range(0, len(batch), largest)]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        n, size = len(batch), bucket_for(len(batch), self.buckets)
        with torch.inference_mode():  # graphs are captured and code compiled in it too, as they will run
            runner = self._runner(size)
            on_device = batch.device == self.device  # decoded there (service/replica/jpeg.py), or a CPU replica
            if on_device and size == n:
                return runner(batch, n, k)
            if on_device and self.device.type != "cpu":
                padded = torch.zeros((size, *batch.shape[1:]), dtype=torch.uint8, device=self.device)
                padded[:n] = batch
                return runner(padded, n, k)
            with self._staging.take(size) as host:
                host[:n].copy_(batch)
                return runner(host, n, k)

    def warmup(self, batch_sizes: Sequence[int] | None = None) -> None:
        """Run (and compile or capture) every batch size the given sizes map to, the buckets by default, so
        that the first real request pays no compile, capture, allocator or kernel-choice cost."""
        sizes = batch_sizes if batch_sizes is not None else self.buckets
        if sizes is None:
            raise ValueError("warmup needs batch sizes when the predictor has no buckets")
        size = self.recipe.input_size
        for n in dict.fromkeys(bucket_for(n, self.buckets) for n in sizes):
            self.predict(np.zeros((n, size, size, 3), dtype=np.uint8), self.max_top_k)

    def _runner(self, size: int) -> Runner:
        runner = self._runners.get(size)
        if runner is None:
            with self._runners_lock:
                runner = self._runners.get(size) or self._build_runner(size)
                self._runners[size] = runner
        return runner

    def _build_runner(self, size: int) -> Runner:
        """Eager, then compiled if asked (and it works), then captured as a CUDA graph if asked (and it works)."""
        notes: list[str] = []
        kind, runner = "eager", self._eager_runner(self._forward)

        def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self._forward(x, self.max_top_k)

        if self.compile != "off":
            compiled = self._attempt("compile", notes, lambda: self._compiled(forward, size))
            if compiled is not None:
                kind, forward = "compiled", compiled
                runner = self._eager_runner(lambda x, k: compiled(x))
        if self.cuda_graphs:
            from model.cuda_graph import CudaGraphRunner

            shape = (size, self.recipe.input_size, self.recipe.input_size, 3)
            graph = self._attempt(
                "CUDA graph capture",
                notes,
                lambda: CudaGraphRunner(forward, shape, self.device, self._graph_pool, self._graph_lock),
            )
            if graph is not None:
                kind, runner = ("compiled+cuda-graph" if kind == "compiled" else "cuda-graph"), graph
        self.runner_kinds[size] = kind + "".join(f" ({note})" for note in notes)
        return runner

    def _eager_runner(self, fn: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]) -> Runner:
        def run(host: torch.Tensor, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
            scores, indices = fn(host.to(self.device, non_blocking=True), k)
            return indices[:n, :k].cpu().numpy(), scores[:n, :k].cpu().numpy()

        return run

    def _compiled(self, forward: Callable, size: int) -> Callable:
        """`forward` compiled for batches of `size` (compiling happens at this first call)."""
        compiled = _compile(forward, self.compile)
        with self._staging.take(size) as host:
            compiled(host.zero_().to(self.device))
        return compiled

    @staticmethod
    def _attempt(what: str, notes: list[str], fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except Exception as exc:  # a backend that cannot handle this model must cost speed, never the replica
            log.warning("%s failed, running without it: %s: %s", what, type(exc).__name__, exc)
            notes.append(f"{what} failed: {type(exc).__name__}")
            return None
