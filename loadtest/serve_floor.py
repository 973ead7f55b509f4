"""The floor under the serving overhead: what Ray Serve itself costs one request on this machine.

An app shaped like hornet-serve (HTTP proxy -> FastAPI ingress -> one replica call with an array the
size of a 224x224 image) that does no other work: no decoding, no model. Its latency at concurrency 1
is the part of the service's overhead that no change inside hornet-serve can remove, and its CPU per request
under load is what Ray Serve itself costs each request, by process. The same ingress answering by itself, with no
replica call, measured right after, leaves the cost of the hop from the gateway to a replica: what folding the two
into one process could save.
"""

import asyncio
import statistics
import time

import httpx
import numpy as np
from fastapi import FastAPI, Request
from ray import serve
from ray.serve.handle import DeploymentHandle

from loadtest.http_load import closed_loop
from loadtest.process_cpu import cpu_seconds_by_role, service_cpu_ms

APP_NAME, ROUTE = "serve-floor", "/serve-floor"
ALONE_APP_NAME, ALONE_ROUTE = "serve-floor-alone", "/serve-floor-alone"
app = FastAPI()
alone_app = FastAPI()


# No CPU reservation: the service under test already holds the machine's logical CPUs.
@serve.deployment(ray_actor_options={"num_cpus": 0})
class Echo:
    def __call__(self, pixels: np.ndarray) -> int:
        return int(pixels.shape[0])


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class Ingress:
    def __init__(self, echo: DeploymentHandle) -> None:
        self.echo = echo

    @app.post("/")
    async def post(self, request: Request) -> dict:
        body = await request.body()
        rows = await self.echo.remote(np.zeros((224, 224, 3), dtype=np.uint8))
        return {"bytes": len(body), "rows": rows}


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(alone_app)
class IngressAlone:
    """The same ingress, answering by itself."""

    @alone_app.post("/")
    async def post(self, request: Request) -> dict:
        body = await request.body()
        return {"bytes": len(body), "rows": 224}


def _wait_for_route(url: str, timeout_s: float = 60) -> None:
    """Until the ingress routes the new app (HAProxy reloads its config when an app is added)."""
    deadline = time.time() + timeout_s
    while True:
        try:
            if httpx.post(url, content=b"x", timeout=10).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.time() > deadline:
            raise RuntimeError(f"{url} was never routed")
        time.sleep(0.5)


def _loaded_cpu_ms(url: str, body: bytes, seconds: float, concurrency: int) -> tuple[float, dict[str, float]]:
    """(requests/s, CPU ms per request by process role) of `concurrency` users for `seconds`."""
    before = cpu_seconds_by_role()
    loaded = asyncio.run(closed_loop(url, [body], concurrency, seconds))
    spent = cpu_seconds_by_role() - before
    if loaded.errors:
        raise RuntimeError(f"the empty pipeline answered errors: {loaded.errors}")
    requests = len(loaded.latencies_s)
    return requests / loaded.elapsed_s, {role: cpu / requests * 1e3 for role, cpu in spent.items()}


def measure_floor(port: int, body: bytes, seconds: float, concurrency: int = 16) -> dict:
    """On the Serve instance already running: the empty pipeline's p50 latency (ms) at concurrency 1, and at
    `concurrency` its rate and the CPU ms each process role spends per request (what Ray Serve itself costs);
    then the ingress alone at `concurrency`, and the hop's CPU per request (the pipeline's less the ingress's)."""
    serve.run(Ingress.bind(Echo.bind()), name=APP_NAME, route_prefix=ROUTE)
    try:
        url = f"http://127.0.0.1:{port}{ROUTE}/"
        _wait_for_route(url)
        asyncio.run(closed_loop(url, [body], 1, 1.0))  # warm-up
        single = asyncio.run(closed_loop(url, [body], 1, seconds))
        if single.errors:
            raise RuntimeError(f"the empty pipeline answered errors: {single.errors}")
        rate, cpu_ms = _loaded_cpu_ms(url, body, seconds, concurrency)
    finally:
        serve.delete(APP_NAME)
    serve.run(IngressAlone.bind(), name=ALONE_APP_NAME, route_prefix=ALONE_ROUTE)
    try:
        url = f"http://127.0.0.1:{port}{ALONE_ROUTE}/"
        _wait_for_route(url)
        asyncio.run(closed_loop(url, [body], concurrency, 1.0))  # warm-up
        _, alone_cpu_ms = _loaded_cpu_ms(url, body, seconds, concurrency)
    finally:
        serve.delete(ALONE_APP_NAME)
    return {
        "c1_p50_ms": statistics.median(single.latencies_s) * 1e3,
        "concurrency": concurrency,
        "requests_per_s": rate,
        "cpu_ms_per_request": cpu_ms,
        "ingress_alone_cpu_ms_per_request": alone_cpu_ms,
        "hop_cpu_ms": service_cpu_ms(cpu_ms) - service_cpu_ms(alone_cpu_ms),
    }
