"""The deploy manifests as the tests read them: kustomize renders, the KubeRay CRD schema, the Serve configs inside."""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.support import DATA, ROOT

PYPROJECT = (ROOT / "pyproject.toml").read_text()
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ["cpu", "gpu", "gpu-scale-to-zero"]
K8S_VERSION = "1.32.0"
# utils/constant.go: the port names the operator looks up, with its defaults.
KUBERAY_PORTS = {"gcs-server": 6379, "dashboard": 8265, "client": 10001, "serve": 8000, "metrics": 8080}
# The Ray resource that keeps each deployment on its worker group (deploy/README.md, "Layout").
GATEWAY_GROUP = "gateways"
CLASSIFIER_GROUPS = {"classifiers", "gpu-classifiers", "gpu-classifiers-on-demand"}
ON_DEMAND_GROUP = "gpu-classifiers-on-demand"  # the group that may have no pod (overlay gpu-scale-to-zero)

Doc = dict[str, Any]


@functools.lru_cache
def _render(directory: str) -> tuple[str, ...]:
    out = subprocess.run(["kubectl", "kustomize", directory], check=True, capture_output=True, text=True).stdout
    return tuple(json.dumps(doc) for doc in yaml.safe_load_all(out) if doc)


def kustomize(directory: Path) -> list[Doc]:
    """The rendered objects of a kustomization (fresh copies: tests may change them)."""
    return [json.loads(doc) for doc in _render(str(directory))]


def overlay(name: str) -> list[Doc]:
    return kustomize(K8S / "overlays" / name)


def rayservice(docs: list[Doc]) -> Doc:
    (service,) = [d for d in docs if d["kind"] == "RayService"]
    return service


def one(docs: list[Doc], kind: str) -> Doc:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def groups(service: Doc) -> Iterator[tuple[str, Doc]]:
    """(group name, group spec) for the head ("head") and every worker group."""
    cluster = service["spec"]["rayClusterConfig"]
    yield "head", cluster["headGroupSpec"]
    for group in cluster["workerGroupSpecs"]:
        yield group["groupName"], group


def ray_container(group: Doc) -> Doc:
    return group["template"]["spec"]["containers"][0]


def serve_config(service: Doc) -> Doc:
    return yaml.safe_load(service["spec"]["serveConfigV2"])


@functools.lru_cache
def rayservice_schema() -> Doc:
    with gzip.open(DATA / "ray.io_rayservices.yaml.gz", "rt") as f:
        crd = yaml.load(f, Loader=yaml.CSafeLoader)  # 5x faster than safe_load on the 2 MB CRD
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return v1["schema"]["openAPIV3Schema"]


@functools.lru_cache
def rayservice_validator() -> jsonschema.protocols.Validator:
    """One validator for the CRD's schema (jsonschema.validate would check the schema itself on every call)."""
    schema = rayservice_schema()
    return jsonschema.validators.validator_for(schema)(schema)


def with_components(tmp_path: Path, base: str, components: list[str]) -> list[Doc]:
    """Render an overlay plus components the way a user's own kustomization would (relative paths only)."""
    rel = os.path.relpath(K8S, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [f"{rel}/overlays/{base}"],
                "components": [f"{rel}/components/{c}" for c in components],
            }
        )
    )
    return kustomize(tmp_path)


def ray_resources(group: Doc) -> dict[str, float]:
    """The Ray resources a worker of this group offers, as KubeRay's common/pod.go generateRayStartCommand
    computes them: num-cpus from the container's CPU limit, else its request; num-gpus from nvidia.com/gpu;
    custom ones from the quoted JSON of rayStartParams.resources (getResourcesMap trims the quotes)."""
    params = group["rayStartParams"]
    limits = ray_container(group)["resources"].get("limits", {})
    requests = ray_container(group)["resources"].get("requests", {})
    cpus = params.get("num-cpus", limits.get("cpu", requests.get("cpu", "0")))
    offered = {"CPU": float(cpus[:-1]) / 1000 if str(cpus).endswith("m") else float(cpus)}
    offered["GPU"] = float(params.get("num-gpus", limits.get("nvidia.com/gpu", 0)))
    offered.update(json.loads(params.get("resources", "{}").strip("'\"` ")))
    return offered


def dashboard_metric_names() -> set[str]:
    """Every ray_* metric the Grafana dashboard queries (the live-service test checks they are exported)."""
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "hornet.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    return {name for e in exprs for name in re.findall(r"\bray_[a-z_]+", e)}


def deployments(application: Doc) -> dict[str, Doc]:
    """Each deployment's ray_actor_options, as the Serve config's `deployments:` entries give them to Serve
    (which applies them over the code's defaults): every classifier, named by its model, and the Gateway."""
    options = {d["name"]: d.get("ray_actor_options", {}) for d in application.get("deployments", [])}
    assert set(options) == {*application["args"]["models"], "Gateway"}, "a deployment has no entry"
    return options


def placeable_on(actor: Doc, offered: dict[str, float]) -> bool:
    wanted = {"CPU": actor.get("num_cpus", 0), "GPU": actor.get("num_gpus", 0), **actor.get("resources", {})}
    return all(offered.get(name, 0) >= amount for name, amount in wanted.items())
