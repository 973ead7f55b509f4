"""The session's live service as the integration tests see it: its settings, a handle on it and helpers that
need its Ray (the fixtures themselves are in conftest.py)."""

from __future__ import annotations

import asyncio

import httpx

from service.config import Settings
from tests.support.images import encode, photo

# hornet-t is set up so that tests can fill it: batches of up to 4 gathered over 50 ms, and at most
# 4 running + 8 queued requests before 503. hornet-l-gf384 checks routing and the 22k label set.
TEST_SETTINGS = {
    "models": ["hornet-t", "hornet-l-gf384"],
    "weights_policy": "random",
    "device": "cpu",
    "topology": "split",  # a deployment per variant, as the deploy configs run (test_colocated switches)
    "classifier": {
        "cpu_threads": 1,
        "decode": "gateway",
        "batch": {"max_batch_size": 4, "batch_wait_timeout_s": 0.05, "max_concurrent_batches": 1},
        "max_ongoing_requests": 4,
        "max_queued_requests": 8,
    },
    # hornet-l-gf384 decodes JPEG uploads in its replica (the default, `auto`), hornet-t in the gateway.
    "per_model": {"hornet-l-gf384": {"batch": {"max_batch_size": 1}, "max_queued_requests": 8, "decode": "replica"}},
    "limits": {"max_body_bytes": 6_000_000, "max_pixels": 20_000_000, "max_top_k": 50, "max_header_bytes": 8192},
    "timeouts": {"inference_s": 60, "body_read_s": 5},
}

JPEG = encode(photo(320, 240, seed=5), "JPEG", quality=90)
# Serve's fallback proxy's gRPC port (9500 by default; the session moves it to a free one).
FALLBACK_GRPC_PORT = "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT"
JPEG_HEADERS = {"Content-Type": "image/jpeg"}


class Service:
    def __init__(self, settings: Settings, base_url: str, metrics_url: str, metrics_port: int) -> None:
        self.settings = settings
        self.base_url = base_url
        self.metrics_url = metrics_url
        self.metrics_port = metrics_port
        self.client = httpx.Client(base_url=base_url, timeout=120)
        self.grpc_address = f"{settings.host}:{settings.grpc_port}"

    def metric_samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Samples of one exported metric family from the Ray metrics agent."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(self.metrics_url, timeout=10).text
        return [
            (s.labels, s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name
        ]

    def batches_above(self, model: str, size: int) -> tuple[float, float]:
        """(batches of `model` larger than `size`, all its batches), summed over replicas."""
        at_most = sum(v for labels, v in self.metric_samples("ray_hornet_batch_size_bucket")
                      if labels.get("model") == model and float(labels["le"]) == size)  # fmt: skip
        total = sum(
            v for labels, v in self.metric_samples("ray_hornet_batch_size_count") if labels.get("model") == model
        )
        return total - at_most, total


async def burst(base_url: str, n: int, path: str = "/v1/classify?model=hornet-t") -> list[httpx.Response]:
    """`n` concurrent uploads of the same small JPEG."""
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        return await asyncio.gather(*(client.post(path, content=JPEG, headers=JPEG_HEADERS) for _ in range(n)))
