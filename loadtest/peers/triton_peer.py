"""NVIDIA Triton (PyTriton's bundled tritonserver) wrapping this project's predictor as a Python model.

    .venv-peers/bin/python -m loadtest.peers.triton_peer --model hornet-t --port 8102

Model `<model id>`: input `image` (BYTES, one encoded upload per request), outputs `indices` (INT64, top-5) and
`scores` (FP32); `POST /v2/models/<model id>/infer` as tritonclient.http sends it (loadtest.http_load's
`triton_bytes_body`). Triton's dynamic batcher gathers up to the service's max_batch_size for up to its batch
wait; this process (PyTriton's model proxy) decodes each upload of a batch, then runs the batch on the thread
that loaded the model. Ready when `GET /v2/models/<model id>/ready` answers 200. SIGINT or SIGTERM stops the
server and the model.
"""

from __future__ import annotations

import os
import signal
import sys
import sysconfig
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig

from loadtest.peers.common import TOP_K, PeerModel, arguments
from model import ImageDecodeError, ImageTooLargeError

# Triton's Python backend stub links Debian's libpython; under another build of the same Python (pyenv's) the
# model fails to load unless this Python's own libpython comes first. tritonserver inherits this environment.
_LIBDIR = sysconfig.get_config_var("LIBDIR")
if _LIBDIR:
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, (_LIBDIR, os.environ.get("LD_LIBRARY_PATH"))))


def preferred_batch_sizes(max_batch_size: int) -> list[int]:
    """Powers of two from 2 up to the largest batch: a lone request waits up to the batch window for company, as
    it does in LitServe (the service's replica starts a lone request at once when idle)."""
    sizes = [2**i for i in range(1, max_batch_size.bit_length()) if 2**i < max_batch_size]
    return [*sizes, max_batch_size] if max_batch_size > 1 else [1]


def infer_function(model: PeerModel, torch_thread: ThreadPoolExecutor) -> Callable[..., dict[str, np.ndarray]]:
    """Decodes on PyTriton's handler thread, runs the batch on `torch_thread`, the thread that loaded and warmed
    the model: the process keeps one OpenMP team. A forward on a second thread makes two, and on 2 cores libgomp
    then stops spin-waiting (service/replica/torch_lanes.py): hornet-t's batch-1 forward took 121 ms instead of
    58 here, on the second thread and on the first alike."""

    @batch
    def infer(image: np.ndarray) -> dict[str, np.ndarray]:
        try:
            pixels = [model.pixels(bytes(row[0])) for row in image]
        except (ImageDecodeError, ImageTooLargeError) as exc:  # Triton answers the whole batch with the error
            raise ValueError(str(exc)) from None
        indices, scores = torch_thread.submit(model.predict, pixels).result()
        return {"indices": indices.astype(np.int64), "scores": scores.astype(np.float32)}

    return infer


def main() -> None:
    args = arguments(__doc__ or "")
    torch_thread = ThreadPoolExecutor(1, thread_name_prefix="torch")
    model = torch_thread.submit(PeerModel.load, args.model).result()
    config = TritonConfig(http_address="127.0.0.1", http_port=args.port, allow_grpc=False, allow_metrics=False,
                          log_verbose=0)  # fmt: skip
    # Triton's own shutdown on SIGTERM too (PyTriton's serve() handles SIGINT, as KeyboardInterrupt).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # PyTriton guards the statistics API with a token by default; perf_analyzer reads it (loadtest.bench_peers).
    security = TritonSecurityConfig(restricted_endpoints=[e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"])
    with Triton(config=config, security_config=security) as triton:
        triton.bind(
            model_name=model.model_id,
            infer_func=infer_function(model, torch_thread),
            inputs=[Tensor(name="image", dtype=np.bytes_, shape=(1,))],
            outputs=[
                Tensor(name="indices", dtype=np.int64, shape=(TOP_K,)),
                Tensor(name="scores", dtype=np.float32, shape=(TOP_K,)),
            ],
            config=ModelConfig(
                max_batch_size=model.max_batch_size,
                batcher=DynamicBatcher(
                    max_queue_delay_microseconds=round(model.batch_wait_s * 1e6),
                    preferred_batch_size=preferred_batch_sizes(model.max_batch_size),
                ),
            ),
            strict=True,
        )
        print(f"triton: {model.model_id} on http://127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
