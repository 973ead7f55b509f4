"""A closed-loop HTTP load generator that costs the machine little.

The bench runs the load generator on the same cores as the service, so every millisecond of CPU it
spends per request is taken from the model. httpx.AsyncClient spent 1.8-2.0 ms of CPU per request
here; this client, which sends pre-built HTTP/1.1 requests over keep-alive connections and parses only
the status line and the headers it needs, spends 0.25-0.3 ms.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import statistics
import struct
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import numpy as np


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class LoadResult:
    latencies_s: list[float] = field(default_factory=list)
    server_timings: list[dict[str, float]] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)
    elapsed_s: float = 0.0


def summarize(concurrency: int, load: LoadResult) -> dict:
    ms = np.array(load.latencies_s) * 1e3
    served = len(load.latencies_s)
    timings = load.server_timings or [{}]
    return {
        "concurrency": concurrency,
        "requests": served,
        "errors": sum(load.errors.values()),
        "images_per_s": served / load.elapsed_s,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        **{f"{stage}_ms": statistics.fmean(t.get(stage, 0) for t in timings) for stage in ("decode", "queue", "inference")},
    }  # fmt: skip


def build_request(url: str, body: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> bytes:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n{extra}"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("ascii") + body


TRITON_HEADER_LENGTH = "Inference-Header-Content-Length"


def triton_bytes_body(input_name: str, element: bytes) -> tuple[bytes, dict[str, str]]:
    """One BYTES element (shape [1, 1]: a batch of one) as tritonclient.http sends it with the binary tensor
    extension and no outputs named: the JSON inference header, then the element as 4-byte little-endian length
    + bytes. Returns the body and the header that says where its JSON ends."""
    raw = struct.pack("<I", len(element)) + element
    tensor = {"name": input_name, "shape": [1, 1], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
    request = {"inputs": [tensor], "parameters": {"binary_data_output": True}}
    header = json.dumps(request, separators=(",", ":")).encode()  # tritonclient's separators: the same bytes
    return header + raw, {TRITON_HEADER_LENGTH: str(len(header))}


def multipart(body: bytes, filename: str = "photo.jpg", boundary: str = "hornet-bench-boundary") -> tuple[bytes, str]:
    """`body` as the one field `file` of a multipart/form-data upload, as browsers and `curl -F` send it."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    return head.encode() + body + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def read_response(reader: asyncio.StreamReader) -> Response:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise ValueError(f"response without Content-Length: {status_line}")
    body = await reader.readexactly(int(headers["content-length"]))
    return Response(int(status_line.split(" ", 2)[1]), headers, body)


def server_timing(header: str) -> dict[str, float]:
    return {name: float(ms) for name, ms in re.findall(r"(\w+);dur=([\d.]+)", header)}


async def closed_loop(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    seconds: float,
    content_type: str = "image/jpeg",
    on_response: Callable[[], None] = lambda: None,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """`concurrency` users, each on its own connection, post the bodies in turn for `seconds`; `headers` go
    with every request (e.g. `triton_bytes_body`'s)."""
    parts = urlsplit(url)
    requests = [build_request(url, body, content_type, headers) for body in bodies]
    result = LoadResult()
    stop_at = time.perf_counter() + seconds

    async def user(first: int) -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            n = first
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                writer.write(requests[n % len(requests)])
                response = await read_response(reader)
                n += 1
                if response.status == 200:
                    result.latencies_s.append(time.perf_counter() - started)
                    result.server_timings.append(server_timing(response.headers.get("server-timing", "")))
                else:
                    result.errors[response.status] = result.errors.get(response.status, 0) + 1
                on_response()
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(user(i) for i in range(concurrency)))
    result.elapsed_s = time.perf_counter() - started
    return result


# Ports a Ray node takes by default even when free now: the dashboard agent's HTTP port (52365) lies in Linux's
# ephemeral range, and a metrics port the OS once picked there made `ray.init` refuse to start.
RAY_DEFAULT_PORTS = frozenset({6379, 8000, 8265, 8404, 9101, 10001, 52365})


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it), none that Ray takes by default, and none this
    process was given before: the OS may pick a port again once its probe socket is closed, and two roles of one
    service on the same port (HTTP and metrics) made a start fail."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in RAY_DEFAULT_PORTS and port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_ready(base_url: str, timeout_s: float, server: subprocess.Popen | None = None, path: str = "/readyz") -> None:
    """Until GET `path` answers 200; fails at once if `server` (the service's process) exits meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise RuntimeError(f"the service exited with status {server.returncode}")
        try:
            if httpx.get(f"{base_url}{path}", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise RuntimeError(f"the service was not ready within {timeout_s:.0f} s")
