"""The stand-in for a cluster on one machine: a Ray head and a second Ray node as separate processes
(`ray start`, `ray start --address`), the Serve config deployed with `serve deploy`, and the classifier
replica placed on the second node by a custom resource only that node has."""

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import yaml

from loadtest.http_load import free_port, wait_ready
from service.config import Settings
from service.daemon.local import ray_environment
from service.serve_config import serve_config
from tests.support.helpers import poll
from tests.support.images import encode, photo

BIN = Path(sys.executable).parent


def _run(*args: str, env: dict) -> None:
    subprocess.run([str(BIN / args[0]), *args[1:]], check=True, env=env, capture_output=True, timeout=180)


def _belongs_to(pid_dir: Path, token: bytes, temp_dir: str) -> bool:
    try:
        if token in (pid_dir / "environ").read_bytes():
            return True
        return any(os.readlink(fd).startswith(temp_dir) for fd in (pid_dir / "fd").iterdir())
    except OSError:
        return False


def _stop_cluster(token: str, temp_dir: str) -> None:
    """Kill this cluster's processes only (`ray stop` would stop the test session's Ray too): those that
    inherited this test's auth token, or (the agents, which get a fresh environment) hold files in its
    temp dir."""
    needle = f"RAY_AUTH_TOKEN={token}".encode()
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _belongs_to(p, needle, temp_dir)]
    for pid in pids:
        if pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_replica_on_a_second_ray_node_serves_requests(tmp_path):
    gcs, dashboard, http = free_port(), free_port(), free_port()
    token = secrets.token_hex(32)
    temp_dir = tempfile.mkdtemp(prefix="hornet-ray-", dir="/tmp")  # short: Ray puts unix sockets in it
    env = {
        **os.environ, **ray_environment(), "RAY_ADDRESS": "",
        # Token authentication, as the deploy manifests run it: every node and CLI call must present it.
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
        # This cluster's HAProxy beside the test session's (the rest of RAY_ENV comes with os.environ).
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()), "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
    }  # fmt: skip
    settings = Settings.model_validate({
        "models": ["hornet-t"], "weights_policy": "random", "device": "cpu", "port": http,
        "classifier": {"cpu_threads": 1, "resources": {"second_node": 1}},
    })  # fmt: skip
    config = tmp_path / "serve.yaml"
    # Both "nodes" share one host, so only one of them can hold the HTTP port: the head's ingress.
    config.write_text(yaml.safe_dump({**serve_config(settings), "proxy_location": "HeadOnly"}))
    head = [
        "ray", "start", "--head", f"--port={gcs}", "--num-cpus=2", f"--dashboard-port={dashboard}",
        "--dashboard-host=127.0.0.1", f"--metrics-export-port={free_port()}", "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
    ]  # fmt: skip
    worker = [
        "ray", "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=1", '--resources={"second_node": 1}',
        f"--metrics-export-port={free_port()}", "--disable-usage-stats",
    ]  # fmt: skip
    try:
        _run(*head, env=env)
        _run(*worker, env=env)
        _run("serve", "deploy", str(config), f"--address=http://127.0.0.1:{dashboard}", env=env)
        wait_ready(f"http://127.0.0.1:{http}", timeout_s=240)
        r = httpx.post(f"http://127.0.0.1:{http}/v1/classify", content=encode(photo(256, 256), "JPEG"),
                       headers={"Content-Type": "image/jpeg"}, timeout=30)  # fmt: skip
        assert r.status_code == 200 and len(r.json()["predictions"]) == 5, r.text

        # Only the second node has `second_node`: the replica that answered cannot run anywhere else. `ray status`
        # shows resource use as the nodes last reported it: wait for the report.
        def status() -> str:
            return subprocess.run([str(BIN / "ray"), "status", f"--address=127.0.0.1:{gcs}"], env=env,
                                  capture_output=True, text=True, timeout=60).stdout  # fmt: skip

        assert poll(lambda: "1.0/1.0 second_node" in status(), timeout_s=60, interval_s=2), status()
    finally:
        _stop_cluster(token, temp_dir)
