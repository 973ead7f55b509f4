"""The compose stack under test: docker-compose.yml plus tests/containers/compose.yml, as project hornet-serve-test.

Everything it makes lives in build/containers: the secrets, a hornet-t checkpoint in the published layout and file
name (random weights: nothing can be downloaded here), and the Serve config from deploy/config/cpu.yaml.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import subprocess
import time
from dataclasses import dataclass

import httpx
import torch

from loadtest.http_load import free_port
from model import create_model, get_variant
from service.daemon.server import main as hornet_serve
from service.http.auth import KEY_PREFIX, hash_key
from tests.support import ROOT

# COMPOSE="docker compose" runs the same tests under compose v2.
COMPOSE = os.environ.get("COMPOSE", "docker-compose").split()
PROJECT = "hornet-serve-test"
WORK = ROOT / "build" / "containers"
MODEL = "hornet-t"
# deploy/images/debian.sh builds these where they are missing (tests/containers/compose.yml names them).
BASE_IMAGES = {"python": "hornet-test/debian-python:bookworm", "prometheus": "hornet-test/prometheus:bookworm"}


def run(args: list[str], *, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    """Run a command; its stdout, or an AssertionError with its output."""
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def ensure_base_images() -> None:
    for kind, tag in BASE_IMAGES.items():
        if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode != 0:
            run([str(ROOT / "deploy/images/debian.sh"), kind, tag], timeout=900)


def write_inputs() -> str:
    """The stack's files in build/containers; returns the API key the keys file accepts."""
    for folder in ("secrets", "checkpoints"):
        (WORK / folder).mkdir(parents=True, exist_ok=True)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    (WORK / "secrets/api_keys").write_text(f"container-test {hash_key(key)}\n")
    (WORK / "secrets/ray_token").write_text(secrets.token_hex(32) + "\n")
    (WORK / "secrets/grafana_admin_password").write_text(secrets.token_hex(16) + "\n")
    checkpoint = WORK / "checkpoints" / get_variant(MODEL).checkpoint_filename
    if not checkpoint.exists():
        torch.save({"model": create_model(MODEL).state_dict()}, checkpoint)
    config = io.StringIO()
    with contextlib.redirect_stdout(config):
        status = hornet_serve(["--config", "deploy/config/cpu.yaml", "--models", MODEL, "--emit-serve-config"])
    assert status == 0, "hornet-serve --emit-serve-config failed"
    (WORK / "serve.yaml").write_text(config.getvalue())
    for path in WORK.rglob("*"):  # the containers run as other users (hornet, nobody)
        path.chmod(0o755 if path.is_dir() else 0o644)
    return key


@dataclass(frozen=True)
class Stack:
    api_url: str
    prometheus_url: str
    api_key: str
    env: dict[str, str]

    @classmethod
    def on_free_ports(cls, api_key: str) -> Stack:
        http_port, grpc_port, prometheus_port = free_port(), free_port(), free_port()
        env = {**os.environ, "HORNET_HTTP_PORT": str(http_port), "HORNET_GRPC_PORT": str(grpc_port),
               "PROMETHEUS_PORT": str(prometheus_port)}  # fmt: skip
        return cls(f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{prometheus_port}", api_key, env)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def compose(self, *args: str, timeout: float = 300) -> str:
        files = ["-f", "docker-compose.yml", "-f", "tests/containers/compose.yml"]
        return run([*COMPOSE, "-p", PROJECT, *files, *args], timeout=timeout, env=self.env)

    def container(self, service: str) -> str:
        container_id = self.compose("ps", "-q", service).strip()
        assert container_id, f"no container for {service}"
        return container_id

    def inspect(self, service: str, template: str) -> str:
        return run(["docker", "inspect", "--format", template, self.container(service)]).strip()

    def wait_healthy(self, service: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        status = ""
        while time.monotonic() < deadline:
            status = self.inspect(service, "{{.State.Health.Status}}")
            if status == "healthy":
                return
            assert self.inspect(service, "{{.State.Running}}") == "true", self.compose("logs", "--tail", "80", service)
            time.sleep(3)
        raise AssertionError(
            f"{service} is {status} after {timeout_s} s:\n{self.compose('logs', '--tail', '80', service)}"
        )

    def prometheus_query(self, query: str) -> list[dict]:
        answer = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": query}, timeout=10)
        answer.raise_for_status()
        return answer.json()["data"]["result"]


def project_resources(kind: str) -> list[str]:
    """The project's containers, networks or volumes (by compose's project label) that still exist."""
    listing = {"container": ["ps", "-a"], "network": ["network", "ls"], "volume": ["volume", "ls"]}[kind]
    return run(["docker", *listing, "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"]).split()


def container_logs(container: str, timestamps: bool = False) -> str:
    """What a container wrote so far, stdout and stderr together (faster to poll than `compose logs`); with
    `timestamps`, each line starts with the time the engine took it."""
    args = ["docker", "logs", *(["--timestamps"] if timestamps else []), container]
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


def volumes() -> set[str]:
    return set(run(["docker", "volume", "ls", "-q"]).split())
