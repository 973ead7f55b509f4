"""The bulk job's KubeRay RayJob (deploy/k8s/bulk), offline: rendered with `kubectl kustomize`, validated, and its
entrypoint parsed by the real CLI.

No RayJob CRD is stored with the project (tests/data holds KubeRay's RayService CRD only). So:
- `spec.rayClusterSpec` is validated against the RayService CRD's `spec.rayClusterConfig` schema: both fields
  are the same Go type, `RayClusterSpec` (ray-project/kuberay, ray-operator/apis/ray/v1/rayjob_types.go
  `RayClusterSpec *RayClusterSpec json:"rayClusterSpec"`, rayservice_types.go `RayClusterSpec RayClusterSpec
  json:"rayClusterConfig"`), so the pod templates, groups and authOptions get the CRD's full schema;
- the rest of `spec` is checked against RAYJOB_SPEC below, written from `RayJobSpec` in rayjob_types.go
  (field names, JSON types and enums as of kuberay commit 0057210), with unknown fields refused.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import subprocess
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from model import get_variant
from service.bulk.cli import parse_args
from service.bulk.job import make_job
from service.config import Settings
from service.daemon.ray_env import RAY_ENV
from tests.support import ROOT
from tests.support.deploy import (
    K8S_VERSION,
    Doc,
    rayservice_schema,
)

BULK = ROOT / "deploy" / "k8s" / "bulk"

_INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_POLICY = {"type": "object", "properties": {"policy": {"enum": ["DeleteCluster", "DeleteWorkers", "DeleteSelf",
                                                                "DeleteNone"]}}}  # fmt: skip
RAYJOB_SPEC = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "activeDeadlineSeconds": {**_INT32, "minimum": 1},
        "backoffLimit": _INT32,
        "rayClusterSpec": {"type": "object"},  # the CRD's RayClusterSpec schema, checked separately
        "submitterPodTemplate": {"type": "object"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "clusterSelector": {"type": "object", "additionalProperties": {"type": "string"}},
        "submitterConfig": {"type": "object", "additionalProperties": False, "properties": {"backoffLimit": _INT32}},
        "managedBy": {"enum": ["ray.io/kuberay-operator", "kueue.x-k8s.io/multikueue"]},
        "deletionStrategy": {"type": "object", "properties": {"onSuccess": _POLICY, "onFailure": _POLICY}},
        "entrypoint": {"type": "string"},
        "runtimeEnvYAML": {"type": "string"},
        "jobId": {"type": "string"},
        "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode"]},
        "entrypointResources": {"type": "string"},
        "entrypointNumCpus": {"type": "number"},
        "entrypointNumGpus": {"type": "number"},
        "ttlSecondsAfterFinished": _INT32,
        "shutdownAfterJobFinishes": {"type": "boolean"},
        "suspend": {"type": "boolean"},
        "schedule": {"type": "string"},
    },
}


@functools.lru_cache
def _rendered() -> str:
    return subprocess.run(["kubectl", "kustomize", str(BULK)], check=True, capture_output=True, text=True).stdout


def _render() -> list[Doc]:
    """The rendered objects (fresh copies: tests change them)."""
    return [doc for doc in yaml.safe_load_all(_rendered()) if doc]


def _rayjob() -> Doc:
    (job,) = [d for d in _render() if d["kind"] == "RayJob"]
    return job


@functools.lru_cache
def _ray_cluster_validator() -> jsonschema.protocols.Validator:
    """The RayService CRD's `rayClusterConfig` schema (the CRD as test_deploy reads it, once per session; its
    check against the metaschema done once)."""
    schema = rayservice_schema()["properties"]["spec"]["properties"]["rayClusterConfig"]
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    return validator(schema)


def _validate(job: Doc) -> None:
    assert job["apiVersion"] == "ray.io/v1" and job["metadata"]["name"]
    jsonschema.validate(job["spec"], RAYJOB_SPEC)
    _ray_cluster_validator().validate(job["spec"]["rayClusterSpec"])


def _groups(job: Doc) -> list[tuple[str, Doc]]:
    cluster = job["spec"]["rayClusterSpec"]
    return [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]


def _entrypoint(job: Doc) -> tuple[str, Any]:
    argv = shlex.split(job["spec"]["entrypoint"])
    return argv[0], parse_args(argv[1:])


def test_bulk_kustomization_renders_and_validates():
    docs = _render()
    assert sorted(d["kind"] for d in docs) == ["PersistentVolumeClaim", "RayJob"]
    (claim,) = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    kubernetes_validate.validate(claim, K8S_VERSION, strict=True)
    _validate(_rayjob())


@pytest.mark.parametrize(
    "path, value",
    [
        (["spec", "entrypoints"], "typo"),
        (["spec", "submissionMode"], "K8sMode"),
        (["spec", "shutdownAfterJobFinishes"], "yes"),
        (["spec", "rayClusterSpec", "workerGroupSpecs", 0, "maxReplicas"], "four"),
        (["spec", "rayClusterSpec", "authOptions", "mode"], "password"),
    ],
)
def test_a_broken_rayjob_is_rejected(path, value):
    job = _rayjob()
    target = job
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        _validate(job)


def test_entrypoint_is_the_bulk_cli_with_paths_the_pods_mount():
    job = _rayjob()
    program, args = _entrypoint(job)
    scripts = re.findall(r'^([\w-]+) = "([\w.:]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert (program, "service.bulk.cli:main") in scripts
    assert args.weights == "required" and args.device == "cuda"
    for name, group in _groups(job):
        spec = group["template"]["spec"]
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert mounts[args.checkpoint_dir] == "checkpoints", name
        data = next(path for path, volume in mounts.items() if "persistentVolumeClaim" in volumes[volume])
        assert args.source.startswith(data + "/") and args.out.startswith(data + "/"), name
        (fetch,) = spec["initContainers"]
        fetched = re.search(r'get_variant\("([\w-]+)"\)', fetch["command"][-1]).group(1)
        assert get_variant(fetched).id == get_variant(args.model).id, name  # the checkpoint the run needs
        assert fetch["volumeMounts"] == [{"name": "checkpoints", "mountPath": args.checkpoint_dir}]


def test_one_model_actor_per_gpu_and_cpus_left_to_decode():
    job = _rayjob()
    _, args = _entrypoint(job)
    workers = [g for name, g in _groups(job) if name != "head"]
    gpus = sum(g["replicas"] * int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
               for g in workers)  # fmt: skip
    cpus = sum(g["replicas"] * float(g["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
               for g in workers)  # fmt: skip
    for g in workers:
        assert g["minReplicas"] == g["replicas"] == g["maxReplicas"]  # a fixed cluster: actors known at start
    overrides = {"device": args.device, "precision": args.precision, "batch_size": args.batch_size}
    bulk = make_job(Settings(weights_policy="random"), get_variant(args.model).id, gpus, overrides)
    assert (bulk.concurrency, bulk.num_gpus, bulk.precision) == (gpus, 1.0, "bf16")
    assert bulk.cpus_needed < cpus / 2  # most of every GPU pod's CPUs decode
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # no decode task or actor on the head


def test_pods_follow_the_services_ray_setup():
    """As the RayService (tests/unit/deploy/test_deploy.py names the KubeRay source of each rule): token authentication,
    the pinned Ray, RAY_ENV on every Ray container, KubeRay's port names on the head, no label that KubeRay
    selects pods by, and a run that cleans up after itself."""
    job = _rayjob()
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"
    ray_pin = re.search(r'"ray\[[a-z,]+\]==(.+?)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert cluster["rayVersion"] == ray_pin
    assert job["spec"]["shutdownAfterJobFinishes"] is True and job["spec"]["submissionMode"] == "K8sJobMode"
    for name, group in _groups(job):
        container = group["template"]["spec"]["containers"][0]
        assert container["name"] == ("ray-head" if name == "head" else "ray-worker")
        assert {e["name"]: e["value"] for e in container["env"]} == RAY_ENV, name
        labels = group["template"].get("metadata", {}).get("labels", {})
        assert not {"app.kubernetes.io/name", "app.kubernetes.io/created-by"} & set(labels), name
        assert group["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        assert re.fullmatch(r"\S+:\S*ray" + re.escape(ray_pin) + r"\S*", container["image"]), container["image"]
    head = cluster["headGroupSpec"]
    ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert {"gcs-server": 6379, "dashboard": 8265, "client": 10001}.items() <= ports.items()
    assert head["rayStartParams"].get("dashboard-host", "0.0.0.0") == "0.0.0.0"
    assert json.dumps(job).count("nvidia.com/gpu") and "nvidia.com/gpu" not in json.dumps(head)
