"""Offline validation of everything under deploy/ and docker-compose.yml (no cluster, no Docker engine)."""

import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from service.serve_config import RAY_SYSTEM_CONFIG

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
OVERLAYS = ["cpu", "gpu"]
K8S_VERSION = "1.32.0"


def _kustomize(overlay: str) -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _rayservice_schema() -> dict:
    with gzip.open(ROOT / "tests" / "data" / "ray.io_rayservices.yaml.gz", "rt") as f:
        crd = yaml.safe_load(f)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_core_objects_validate(overlay):
    docs = _kustomize(overlay)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["PersistentVolumeClaim", "PodMonitor", "RayService"]
    for doc in docs:
        if "." not in doc["apiVersion"].split("/")[0]:  # core API groups: validate against Kubernetes' schemas
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rayservice_validates_against_the_kuberay_crd(overlay):
    (service,) = [d for d in _kustomize(overlay) if d["kind"] == "RayService"]
    jsonschema.validate(service, _rayservice_schema())
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["authOptions"]["mode"] == "token"
    assert cluster["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in json.dumps(head["resources"])
    for group in cluster["workerGroupSpecs"]:
        container = group["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/-/healthz"
        assert {"name": "metrics", "containerPort": 8080} in container["ports"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        gpus = container["resources"]["limits"].get("nvidia.com/gpu")
        assert (gpus == "1") == (overlay == "gpu")


def test_a_broken_rayservice_is_rejected_by_the_schema():
    (service,) = [d for d in _kustomize("gpu") if d["kind"] == "RayService"]
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = "eight"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(service, _rayservice_schema())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_embedded_serve_config_matches_the_checked_in_one(overlay):
    from ray.serve.schema import ServeDeploySchema

    (service,) = [d for d in _kustomize(overlay) if d["kind"] == "RayService"]
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert embedded == yaml.safe_load((DEPLOY / "serve" / f"{overlay}.yaml").read_text())
    ServeDeploySchema.model_validate(embedded)
    assert embedded["applications"][0]["args"]["weights_policy"] == "required"


def test_compose_file_parses_and_references_files_that_exist():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"ray-head", "ray-gpu-worker", "prometheus", "grafana", "locust"} <= set(services)
    assert services["locust"]["profiles"] == ["loadtest"]
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    for name, svc in services.items():
        target = svc.get("build", {}).get("target")
        assert target is None or f" AS {target}\n" in dockerfile, f"{name} builds missing target {target}"
    gpu = services["ray-gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    build = services["ray-head"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and source not in ("./checkpoints", "./loadtest"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    assert not any("6379" in p or "8265" in p for s in services.values() for p in s.get("ports", []))
    head_env = services["ray-head"]["environment"]
    assert head_env["RAY_AUTH_MODE"] == "token" and head_env["SERVE_CONFIG"].startswith("/app/serve/")


def test_dockerfile_is_multi_stage_non_root_pinned_with_healthcheck():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"FROM python:\S+ AS base-cpu", text) and re.search(r"FROM nvidia/cuda:\S+ AS base-gpu", text)
    assert "FROM base-${TARGET} AS runtime" in text and "USER hornet" in text and "HEALTHCHECK" in text
    assert re.findall(r"^FROM .* AS (\S+)$", text, re.M)[-1] == "runtime", "runtime must stay the default target"
    assert "torch==2.13.0" in text and "-c deploy/constraints.txt" in text
    assert not re.search(r"(?i)(token|password|secret)\s*=", text)
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        assert line.startswith("#") or re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][\w.]*", line), line
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "*.pth"} <= set(ignored)


def test_image_gives_ray_start_the_system_config_hornet_serve_uses():
    text = (DEPLOY / "Dockerfile").read_text()
    for name, value in RAY_SYSTEM_CONFIG.items():
        assert f"RAY_{name}={value} " in text, f"the image does not set RAY_{name}={value}"


@pytest.mark.parametrize(("check", "path"), [("config", "prometheus.yml"), ("rules", "alerts.yml")])
def test_promtool_accepts_the_prometheus_files(check, path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed: `make test` installs Debian's prometheus"
    result = subprocess.run(
        [promtool, "check", check, str(DEPLOY / "prometheus" / path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def dashboard_metric_names() -> set[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "hornet.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    return {name for e in exprs for name in re.findall(r"\bray_[a-z_]+", e)}


def test_grafana_dashboard_parses_and_is_provisioned():
    assert dashboard_metric_names()
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "hornet.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "prometheus"
