"""`hornet-serve` as users run it: a process with its own Ray, serving until SIGTERM, then a clean exit."""

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
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


def _start(cli: Path, port: int, metrics_port: int, log) -> subprocess.Popen:
    return subprocess.Popen(
        [str(cli), "--models", "hornet-t", "--weights", "random", "--port", str(port), "--metrics-port", str(metrics_port)],
        stdout=log, stderr=subprocess.STDOUT,
        # Its own HAProxy stats and metrics ports: the test session's service holds the ones in os.environ.
        env={**os.environ, "RAY_ADDRESS": "", "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
             "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port())},
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
