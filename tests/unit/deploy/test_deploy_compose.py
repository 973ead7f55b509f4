"""Offline validation of docker-compose.yml, the image (deploy/Dockerfile) and its entry point: no Docker
engine here, so the files are checked for what the stack relies on."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from service.daemon.ray_env import HAPROXY_BINARY_ENV, RAY_ENV
from service.http.proxy_middleware import CALLBACK_ENV, CALLBACK_PATH
from tests.support import ROOT
from tests.support.deploy import (
    DEPLOY,
    deployments,
    placeable_on,
)

COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
RAY_SERVICES = ["ray-head", "ray-gpu-worker"]
# Variables of the Ray services that are not Ray settings: authentication, where the head is, placement.
NODE_VARIABLES = {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_HEAD_ADDRESS", "RAY_RESOURCES"}
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()
ENTRYPOINT = DEPLOY / "docker-entrypoint.sh"


def runtime_stage() -> str:
    return DOCKERFILE.split("AS runtime\n", 1)[1]


def image_env() -> dict[str, str]:
    """The ENV of the runtime stage, `ENV A=1 \\ B="x y"` instructions joined (quoted as a shell would)."""
    text = runtime_stage().replace("\\\n", " ")
    pairs = [p for line in text.splitlines() if line.startswith("ENV ") for p in shlex.split(line)[1:]]
    return dict(p.split("=", 1) for p in pairs)


def test_compose_file_parses_and_references_files_that_exist():
    assert {"ray-head", "ray-gpu-worker", "prometheus", "grafana", "locust"} <= set(SERVICES)
    assert SERVICES["locust"]["profiles"] == ["loadtest"] and SERVICES["ray-gpu-worker"]["profiles"] == ["gpu"]
    for name, svc in SERVICES.items():
        build = svc.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file()
            target = build.get("target")
            assert target is None or f" AS {target}\n" in DOCKERFILE, f"{name} builds missing target {target}"
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and source not in ("./checkpoints", "./loadtest/results"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    assert not any("6379" in p or "8265" in p for s in SERVICES.values() for p in s.get("ports", []))
    assert SERVICES["ray-head"]["environment"]["SERVE_CONFIG"] == "/app/serve/${HORNET_TARGET:-cpu}.yaml"


@pytest.mark.parametrize("service", RAY_SERVICES)
def test_compose_ray_services_run_with_ray_env(service):
    """service/daemon/ray_env.py RAY_ENV, exactly, besides the variables that say where and who a node is."""
    env = SERVICES[service]["environment"]
    assert {k: v for k, v in env.items() if k.startswith("RAY_") and k not in NODE_VARIABLES} == RAY_ENV


def test_compose_secrets_are_files_not_variables():
    """The Ray token and the Grafana password come from secret files (RAY_AUTH_TOKEN_PATH, Grafana's
    __FILE variables), never from a plain environment variable that `docker inspect` would show."""
    secrets = COMPOSE["secrets"]
    assert all(set(s) == {"file"} and s["file"].startswith("./secrets/") for s in secrets.values())
    for name in RAY_SERVICES:
        svc = SERVICES[name]
        assert svc["environment"]["RAY_AUTH_MODE"] == "token"
        assert svc["environment"]["RAY_AUTH_TOKEN_PATH"] == "/run/secrets/ray_token"
        assert "ray_token" in svc["secrets"]
    grafana = SERVICES["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "grafana_admin_password" in grafana["secrets"]
    for name, svc in SERVICES.items():
        variables = set(svc.get("environment", {}))
        assert not variables & {"RAY_AUTH_TOKEN", "GF_SECURITY_ADMIN_PASSWORD"}, name


def test_compose_start_order_is_health_gated():
    """Every dependency names its condition: Locust waits for the head's health check (/readyz: every model
    answering), Grafana for Prometheus's. The GPU worker cannot wait for /readyz, which needs its
    classifiers: it starts with the head and its entry point waits for the head's GCS."""
    for name, svc in SERVICES.items():
        for dependency, condition in svc.get("depends_on", {}).items():
            assert set(condition) == {"condition"}, f"{name} -> {dependency}"
    assert SERVICES["locust"]["depends_on"] == {"ray-head": {"condition": "service_healthy"}}
    assert SERVICES["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    assert "/-/ready" in " ".join(SERVICES["prometheus"]["healthcheck"]["test"])
    assert "HEALTHCHECK" in DOCKERFILE and "/readyz" in DOCKERFILE
    assert SERVICES["ray-gpu-worker"]["depends_on"] == {"ray-head": {"condition": "service_started"}}
    worker_branch = ENTRYPOINT.read_text().split("worker)", 1)[1]
    assert worker_branch.index("ray health-check") < worker_branch.index("ray start")


def test_compose_gpu_worker_builds_the_gpu_image():
    """`HORNET_TARGET=gpu docker compose --profile gpu up -d` builds the CUDA image for the GPU worker
    (pull_policy build) and serves the GPU config; the head and Locust stay on the CPU image."""
    worker = SERVICES["ray-gpu-worker"]
    args = worker["build"]["args"]
    assert re.fullmatch(r"nvidia/cuda:\S+-ubuntu\S+", args["BASE"]) and worker["image"] == "hornet-serve:gpu"
    assert args["TORCH_INDEX"] == "https://download.pytorch.org/whl/cu128"
    assert worker["pull_policy"] == "build"
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    for name in ("ray-head", "locust"):  # the Dockerfile's defaults: the slim Python base, torch's CPU build
        assert "args" not in SERVICES[name]["build"] and SERVICES[name]["pull_policy"] == "build"


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_compose_nodes_offer_what_the_serve_config_asks(target):
    """CPU: the head alone runs every deployment; GPU: the head the Gateway, the GPU worker the classifiers.
    Each deployment's custom Ray resources are offered by a node of the stack (RAY_RESOURCES), so no
    replica waits forever for a node that never comes."""
    import json

    nodes = ["ray-head"] + (["ray-gpu-worker"] if target == "gpu" else [])
    offered = {n: json.loads(SERVICES[n]["environment"]["RAY_RESOURCES"]) for n in nodes}
    (application,) = yaml.safe_load((DEPLOY / "serve" / f"{target}.yaml").read_text())["applications"]
    for deployment, actor in deployments(application).items():
        custom = dict(actor.get("resources", {}))
        assert custom, f"{deployment} asks for no custom resource"
        where = [n for n, resources in offered.items() if placeable_on({"resources": custom}, resources)]
        assert where, f"{deployment} asks {custom}; the nodes offer {offered}"
        if actor.get("num_gpus"):
            assert where == ["ray-gpu-worker"], f"{deployment} needs a GPU but may land on {where}"


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_compose_api_keys_reach_every_node_that_runs_a_gateway(target):
    """The serve config turns API keys on; every node that offers the Gateway's resources gets the keys file as
    a compose secret at auth.keys_file (a file under ./secrets, never a variable); the other nodes do not."""
    import json

    (application,) = yaml.safe_load((DEPLOY / "serve" / f"{target}.yaml").read_text())["applications"]
    auth = application["args"]["auth"]
    assert auth["enabled"]
    gateway = deployments(application)["Gateway"]
    nodes = ["ray-head"] + (["ray-gpu-worker"] if target == "gpu" else [])
    for node in nodes:
        offered = json.loads(SERVICES[node]["environment"]["RAY_RESOURCES"])
        mounted = [s for s in SERVICES[node]["secrets"] if isinstance(s, dict) and s["target"] == auth["keys_file"]]
        if placeable_on({"resources": gateway.get("resources", {})}, offered):
            (secret,) = mounted
            assert COMPOSE["secrets"][secret["source"]]["file"].startswith("./secrets/")
        else:
            assert not mounted, f"{node} runs no Gateway but gets the API keys"


def test_dockerfile_is_multi_stage_non_root_pinned_with_healthcheck():
    assert re.search(r"^ARG BASE=python:3\.12-slim-bookworm$", DOCKERFILE, re.M)
    assert re.search(r"^ARG TORCH_INDEX=https://download\.pytorch\.org/whl/cpu$", DOCKERFILE, re.M)
    assert (
        "FROM ${BASE} AS base\n" in DOCKERFILE and "FROM base AS runtime" in DOCKERFILE and "USER hornet" in DOCKERFILE
    )
    assert re.findall(r"^FROM .* AS (\S+)$", DOCKERFILE, re.M)[-1] == "runtime", "runtime must stay the default"
    assert "torch==2.13.0" in DOCKERFILE and "-c /wheels/constraints.txt" in DOCKERFILE
    assert not re.search(r"(?i)(token|password|secret)\s*=", DOCKERFILE)
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        assert line.startswith("#") or re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][\w.]*", line), line
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "*.pth", "build", "!build/wheelhouse"} <= set(ignored)


def test_dockerfile_installs_from_the_wheelhouse_alone_when_given_one():
    """--build-arg WHEELHOUSE=build/wheelhouse (make wheelhouse): every pip install of the image reads that folder
    and no index (tests/containers builds the image this way, where no index can be reached)."""
    installs = re.findall(r"^RUN (.*?pip install.*?)$", DOCKERFILE.replace("\\\n", " "), re.M)
    assert len(installs) == 3
    for install in installs:
        assert 'if [ -n "$WHEELHOUSE" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels; fi' in install
    assert "COPY deploy/constraints.txt ${WHEELHOUSE} /wheels/" in DOCKERFILE
    assert (
        "$(WHEELHOUSE)" in (ROOT / "Makefile").read_text()
        and "WHEELHOUSE := build/wheelhouse" in (ROOT / "Makefile").read_text()
    )


def test_image_sets_the_ray_environment_of_service_local():
    """Every `ray start` in the image (compose, KubeRay's generated command) runs with what
    service/daemon/local.py ray_environment() gives a local Ray: RAY_ENV, the proxy middleware, and the HAProxy
    wrapper at the path this image installs it (the `hornet-haproxy` script of pyproject.toml in /opt/venv)."""
    env = {k: v for k, v in image_env().items() if k.startswith("RAY_")}
    wrapper = "/opt/venv/bin/hornet-haproxy"
    assert env == {**RAY_ENV, CALLBACK_ENV: CALLBACK_PATH, HAPROXY_BINARY_ENV: wrapper}
    assert 'hornet-haproxy = "service.http.haproxy:main"' in (ROOT / "pyproject.toml").read_text()
    assert "python3 -m venv /opt/venv" in DOCKERFILE and "COPY --from=build /opt/venv /opt/venv" in DOCKERFILE


def test_image_has_the_tools_kuberay_runs_in_the_ray_container():
    """common/pod.go initLivenessAndReadinessProbe: a RayService worker's readiness probe runs
    utils/constant.go BaseWgetHealthCommand (`wget ... | grep success`) through bash, and BuildPod runs
    the generated `ray start` with /bin/bash: the base stage installs wget (and python3) where the base lacks
    them, on the Debian/Ubuntu bases the image is built on."""
    base_stage = DOCKERFILE.split("AS base\n", 1)[1].split("\nFROM ", 1)[0]
    assert "command -v wget" in base_stage and re.search(r"apt-get install[^\n]*\$missing", base_stage)
    bases = [
        re.search(r"^ARG BASE=(\S+)$", DOCKERFILE, re.M).group(1),
        SERVICES["ray-gpu-worker"]["build"]["args"]["BASE"],
    ]
    for base in bases:
        assert re.match(r"(python:\S+-(bookworm|trixie)|nvidia/cuda:\S+-ubuntu)", base), base


@pytest.mark.parametrize("check", [["sh", "-n"], ["shellcheck"]])
def test_entrypoint_passes_sh_n_and_shellcheck(check):
    assert shutil.which(check[0]), f"{check[0]} is not installed: `make test` installs Debian's shellcheck"
    result = subprocess.run([*check, str(ENTRYPOINT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_entrypoint_starts_ray_with_the_nodes_resources(tmp_path):
    """The entry point passes RAY_RESOURCES to `ray start` unchanged, and RAY_NUM_CPUS where it is set (a stand-in
    `ray` records its arguments; `serve` and the wait loop are stubbed the same way). Its SIGTERM drain runs for
    real in tests/containers."""
    log = tmp_path / "calls"
    for tool in ("ray", "serve"):
        stub = tmp_path / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n[ "$1" != status ]\n')
        stub.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "SERVE_CONFIG": "/app/serve/cpu.yaml", "RAY_RESOURCES": '{"a": 1}'}
    subprocess.run(["sh", str(ENTRYPOINT), "head"], env=env, check=True, timeout=30)
    calls = log.read_text().splitlines()
    assert calls[0].startswith("ray start --head") and '--resources={"a": 1}' in calls[0]
    assert calls[1] == "serve deploy /app/serve/cpu.yaml"
    assert "--num-cpus" not in calls[0]
    log.unlink()
    subprocess.run(["sh", str(ENTRYPOINT), "head"], env={**env, "RAY_NUM_CPUS": "4"}, check=True, timeout=30)
    assert log.read_text().splitlines()[0].endswith(" --num-cpus=4")
    env["RAY_HEAD_ADDRESS"] = "ray-head:6379"
    log.unlink()
    subprocess.run(["sh", str(ENTRYPOINT), "worker"], env=env, check=True, timeout=30)
    calls = log.read_text().splitlines()
    assert calls[0] == "ray health-check --address ray-head:6379"
    assert calls[1].startswith("ray start --address=ray-head:6379") and '--resources={"a": 1}' in calls[1]


def test_compose_one_liner_matches_the_readme():
    """The GPU one-liner the deploy README gives is the one the compose file documents."""
    one_liner = "HORNET_TARGET=gpu docker compose --profile gpu up -d"
    assert one_liner in (ROOT / "docker-compose.yml").read_text()
    assert one_liner in (DEPLOY / "README.md").read_text()
