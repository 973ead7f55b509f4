"""One real local Ray + Serve per test session (CPU), serving random-weight HorNets."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from images import encode, photo
from service.config import Settings
from service.local import local_service

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# hornet-t is set up so that tests can fill it: batches of up to 4 gathered over 50 ms, and at most
# 4 running + 8 queued requests before 503. hornet-l-gf384 checks routing and the 22k label set.
TEST_SETTINGS = {
    "models": ["hornet-t", "hornet-l-gf384"],
    "weights_policy": "random",
    "device": "cpu",
    "classifier": {
        "cpu_threads": 1,
        "batch": {"max_batch_size": 4, "batch_wait_timeout_s": 0.05, "max_concurrent_batches": 1},
        "max_ongoing_requests": 4,
        "max_queued_requests": 8,
    },
    "per_model": {"hornet-l-gf384": {"batch": {"max_batch_size": 1}, "max_queued_requests": 8}},
    "limits": {"max_body_bytes": 6_000_000, "max_pixels": 20_000_000, "max_top_k": 50, "max_header_bytes": 8192},
    "timeouts": {"inference_s": 60, "body_read_s": 5},
}


class Service:
    def __init__(self, settings: Settings, base_url: str, metrics_url: str, metrics_port: int) -> None:
        self.settings = settings
        self.base_url = base_url
        self.metrics_url = metrics_url
        self.metrics_port = metrics_port
        self.client = httpx.Client(base_url=base_url, timeout=120)

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


JPEG = encode(photo(320, 240, seed=5), "JPEG", quality=90)
JPEG_HEADERS = {"Content-Type": "image/jpeg"}


async def burst(base_url: str, n: int, path: str = "/v1/classify?model=hornet-t") -> list[httpx.Response]:
    """`n` concurrent uploads of the same small JPEG."""
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        return await asyncio.gather(*(client.post(path, content=JPEG, headers=JPEG_HEADERS) for _ in range(n)))


def poll(condition, timeout_s: float = 30, interval_s: float = 0.5):
    """The first truthy value of `condition()` within the timeout, else its last value."""
    deadline = time.time() + timeout_s
    while True:
        value = condition()
        if value or time.time() > deadline:
            return value
        time.sleep(interval_s)


def serve_actors(marker: str = "") -> set[str]:
    """Names of the live Serve actors (replicas are `SERVE_REPLICA::<app>#<deployment>#<id>`) containing marker."""
    import ray

    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and marker in a["name"]}  # fmt: skip


@pytest.fixture(scope="session")
def service():
    http_port, metrics_port = free_port(), free_port()
    settings = Settings.model_validate({**TEST_SETTINGS, "port": http_port, "metrics_export_port": metrics_port})
    # HAProxy's stats and metrics ports are fixed by default: a machine running `make serve` too would clash.
    haproxy_ports = {
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
    }
    with local_service(settings, num_cpus=4, metrics_report_interval_ms=1000, ray_env=haproxy_ports) as base_url:
        svc = Service(settings, base_url, f"http://127.0.0.1:{metrics_port}/metrics", metrics_port)
        deadline = time.time() + 60
        while svc.client.get("/readyz").status_code != 200:
            assert time.time() < deadline, "service never became ready"
            time.sleep(0.5)
        yield svc
        svc.client.close()
