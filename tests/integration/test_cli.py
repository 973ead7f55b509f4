"""`hornet-serve` as users run it: a process with its own Ray, serving until SIGTERM, then a clean exit."""

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from loadtest.http_load import free_port, wait_ready
from tests.support.helpers import poll
from tests.support.images import encode, photo


def test_cli_serves_and_shuts_down_cleanly_on_sigterm(tmp_path):
    port, metrics_port = free_port(), free_port()
    cli = Path(sys.executable).parent / "hornet-serve"
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        _serve_then_stop(cli, port, metrics_port, log, log_path)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    assert "shutting down" in log_path.read_text()


def _status(answer: Future) -> int | str:
    try:
        return answer.result().status_code
    except httpx.TransportError as exc:
        return type(exc).__name__


def _start(
    cli: Path, port: int, metrics_port: int, log, new_session: bool = False, env: dict[str, str] | None = None
) -> subprocess.Popen:
    # Its own HAProxy stats and metrics ports: the test session's service holds the ones in os.environ.
    haproxy_ports = {
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
    }
    return subprocess.Popen(
        [str(cli), "--models", "hornet-t", "--weights", "random", "--port", str(port), "--metrics-port", str(metrics_port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=new_session,
        env={**os.environ, "RAY_ADDRESS": "", **haproxy_ports, **(env or {})},
    )  # fmt: skip


def test_a_sigterm_while_the_app_deploys_stops_it_cleanly(tmp_path):
    """ray.init installs Ray's own SIGTERM handler, which ends the process at once (no drain, Ray's stack
    dump); hornet-serve installs its own right after ray.init, before the app deploys."""
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        proc = _start(Path(sys.executable).parent / "hornet-serve", free_port(), free_port(), log)
        try:
            assert poll(lambda: "Started Serve" in log_path.read_text(), timeout_s=120, interval_s=0.2)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=120) == 0, log_path.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log_path.read_text()
    assert "shutting down" in text and "SIGTERM received" not in text


def _serve_then_stop(cli, port, metrics_port, log, log_path):
    proc = _start(cli, port, metrics_port, log)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(base, timeout_s=180, server=proc)
        except RuntimeError as exc:
            pytest.fail(f"{exc}\n{log_path.read_text()[-3000:]}")
        # From /readyz's first 200 on, the ingress may still reload (docs/http.md#connection-close-after-a-reload):
        # clients that follow HTTP lose no request to it.
        outcomes = _hammer(base, seconds=10)
        closed = sum(connection == "close" for _, connection in outcomes)
        print(f"{len(outcomes)} requests from the first ready on, {closed} answered with Connection: close")
        assert {status for status, _ in outcomes} == {200}, outcomes
        # /readyz can answer before hornet-serve has finished starting (Serve still waits for its proxies); a
        # SIGTERM then stops it cleanly (test above) without a drain. Drain is promised once it says ready.
        assert poll(lambda: "hornet-serve ready on" in log_path.read_text(), timeout_s=120, interval_s=0.5)
        image = encode(photo(), "PNG")
        r = httpx.post(f"{base}/v1/classify", content=image, headers={"Content-Type": "image/png"})
        assert r.status_code == 200 and r.json()["weights"] == "random-init"
        # Requests in flight when SIGTERM arrives are drained, not dropped.
        with ThreadPoolExecutor(8) as pool:
            in_flight = [pool.submit(httpx.post, f"{base}/v1/classify", content=image,
                                     headers={"Content-Type": "image/png"}, timeout=60) for _ in range(8)]  # fmt: skip
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            statuses = [_status(f) for f in in_flight]
        assert statuses == [200] * 8, f"{statuses}\n{log_path.read_text()[-4000:]}"
        assert proc.wait(timeout=90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def _hammer(base: str, seconds: float, clients: int = 3) -> list[tuple[int | str, str | None]]:
    """Keep-alive clients (httpx, which follows `Connection: close`), each classifying one image after another for
    `seconds`: every answer's status (or error) and Connection header."""
    image = encode(photo(160, 120), "JPEG")

    def client() -> list[tuple[int | str, str | None]]:
        outcomes: list[tuple[int | str, str | None]] = []
        deadline = time.monotonic() + seconds
        with httpx.Client(base_url=base, timeout=60) as http:
            while time.monotonic() < deadline:
                try:
                    answer = http.post("/v1/classify", content=image, headers={"Content-Type": "image/jpeg"})
                    outcomes.append((answer.status_code, answer.headers.get("connection")))
                except httpx.TransportError as exc:
                    outcomes.append((type(exc).__name__, None))
        return outcomes

    with ThreadPoolExecutor(clients) as pool:
        return [outcome for each in [pool.submit(client) for _ in range(clients)] for outcome in each.result()]


def test_a_process_group_sigterm_leaves_no_process_and_the_port_to_the_next_start(tmp_path):
    """A supervisor (or `timeout`) that stops hornet-serve with its whole process group: every process of its
    Ray instance, HAProxy included, is gone afterwards, and a new hornet-serve starts on the same ports."""
    ports = {"port": free_port(), "metrics_port": free_port()}
    haproxy_ports = {
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
    }
    for attempt in range(2):
        family = _serve_then_stop_the_group(tmp_path / f"serve-{attempt}.log", ports, haproxy_ports)
        _, alive = psutil.wait_procs(family, timeout=15)
        assert not alive, [(p.pid, p.name()) for p in alive]


def _serve_then_stop_the_group(log_path: Path, ports: dict[str, int], env: dict[str, str]) -> list[psutil.Process]:
    """Start hornet-serve in a session of its own, SIGTERM its process group once ready; its processes then."""
    cli = Path(sys.executable).parent / "hornet-serve"
    with open(log_path, "w") as log:
        proc = _start(cli, ports["port"], ports["metrics_port"], log, new_session=True, env=env)
        try:
            wait_ready(f"http://127.0.0.1:{ports['port']}", timeout_s=180, server=proc)
            assert poll(lambda: "hornet-serve ready on" in log_path.read_text(), timeout_s=120, interval_s=0.5)
            family = psutil.Process(proc.pid).children(recursive=True)
            assert any(p.name() == "haproxy" for p in family), [p.name() for p in family]
            os.killpg(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=120) == 0, log_path.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return family


def test_a_busy_port_is_refused_at_once_naming_the_holder(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        started = time.monotonic()
        run = subprocess.run(
            [str(Path(sys.executable).parent / "hornet-serve"), "--models", "hornet-t", "--weights", "random",
             "--port", str(port), "--metrics-port", str(free_port())],
            capture_output=True, text=True, timeout=120, env={**os.environ, "RAY_ADDRESS": ""},
        )  # fmt: skip
    assert run.returncode == 4, run.stderr[-2000:]
    assert f"the HTTP port {port} is in use by pid {os.getpid()} (" in run.stderr
    assert "Started a local Ray" not in run.stderr + run.stdout  # refused before Ray starts
    assert time.monotonic() - started < 30
