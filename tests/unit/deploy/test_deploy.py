"""Offline validation of the Kubernetes deployment (deploy/k8s): rendered with `kubectl kustomize`, checked
against the Kubernetes and KubeRay CRD schemas, and against the rules the KubeRay operator's code relies on.

The CRD schema allows fields the controller never reads and knows nothing of its behaviour, so each rule
below names the KubeRay source it comes from (ray-project/kuberay, ray-operator/controllers/ray/, the CRD
version of tests/data/ray.io_rayservices.yaml.gz). Compose and the image: test_deploy_compose.py;
Prometheus and Grafana: test_deploy_observability.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from service.daemon.ray_env import RAY_ENV
from tests.support import ROOT
from tests.support.deploy import (
    CLASSIFIER_GROUPS,
    DEPLOY,
    GATEWAY_GROUP,
    K8S,
    K8S_VERSION,
    KUBERAY_PORTS,
    ON_DEMAND_GROUP,
    OVERLAYS,
    PYPROJECT,
    Doc,
    deployments,
    groups,
    kustomize,
    one,
    overlay,
    placeable_on,
    ray_container,
    ray_resources,
    rayservice,
    rayservice_validator,
    serve_config,
    with_components,
)

# ---- rendering and schemas ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_renders_and_core_objects_validate(name):
    docs = overlay(name)
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "ConfigMap", "PodMonitor", "PrometheusRule", "RayService",
                                               "Service"]  # fmt: skip
    for doc in docs:
        if "." not in doc["apiVersion"].split("/")[0]:  # core API groups: validate against Kubernetes' schemas
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("name", OVERLAYS)
def test_rayservice_validates_against_the_kuberay_crd(name):
    service = rayservice(overlay(name))
    rayservice_validator().validate(service)
    assert service["spec"]["rayClusterConfig"]["authOptions"]["mode"] == "token"


def test_a_broken_rayservice_is_rejected_by_the_schema():
    service = rayservice(overlay("gpu"))
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = "eight"
    with pytest.raises(jsonschema.ValidationError):
        rayservice_validator().validate(service)


@pytest.mark.parametrize("name", OVERLAYS)
def test_embedded_serve_config_matches_the_checked_in_one(name):
    from ray.serve.schema import ServeDeploySchema

    embedded = serve_config(rayservice(overlay(name)))
    assert embedded == yaml.safe_load((DEPLOY / "serve" / f"{name}.yaml").read_text())
    ServeDeploySchema.model_validate(embedded)
    assert embedded["applications"][0]["args"]["weights_policy"] == "required"


def test_make_targets_named_under_deploy_exist():
    """Comments and docs under deploy/ name `make` targets: each exists in the Makefile."""
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in {".yaml", ".yml", ".md", ".sh", ".txt", ""}]
    texts = [p.read_text() for p in [*files, ROOT / "docker-compose.yml"]]
    named = {m for text in texts for m in re.findall(r"\bmake ([a-z][a-z0-9-]*)", text)}
    assert named and named <= targets, named - targets


# ---- KubeRay rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OVERLAYS)
def test_no_ray_container_sets_probes_so_kuberay_injects_its_own(name):
    """rayservice_controller.go reconcileServe submits serveConfigV2 only once the head Pod is Ready (the
    check before FetchHeadServiceURL), and no Serve proxy listens before that: a Serve readiness probe on
    the head deadlocks. common/pod.go initLivenessAndReadinessProbe injects probes only where none is set,
    gives the head none for Serve (KubeRay PR 1808) and gives RayService workers the Serve proxy check
    with utils/constant.go ServeReadinessProbeFailureThreshold (1): own probes would replace all of that."""
    for group_name, group in groups(rayservice(overlay(name))):
        container = ray_container(group)
        assert "readinessProbe" not in container and "livenessProbe" not in container, group_name


@pytest.mark.parametrize("name", OVERLAYS)
def test_dashboard_is_reachable_through_the_head_service(name):
    """rayservice_controller.go reconcileServe calls the dashboard at FetchHeadServiceURL(...,
    DashboardPortName), from the operator's Pod: common/pod.go setMissingRayStartParams defaults
    dashboard-host to 0.0.0.0 because localhost is unreachable from outside the head Pod."""
    service = rayservice(overlay(name))
    params = service["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]
    assert params.get("dashboard-host", "0.0.0.0") == "0.0.0.0"
    assert "127.0.0.1" not in json.dumps(service["spec"]["rayClusterConfig"])


@pytest.mark.parametrize("name", OVERLAYS)
def test_head_lists_every_port_the_operator_looks_up(name):
    """common/service.go getServicePorts builds the head Service from the head container's ports when any
    is listed (getPortsFromCluster), else from getDefaultPorts; utils.FetchHeadServiceURL finds the
    dashboard by the port name `dashboard`, BuildServeService needs `serve`. Names and numbers: the
    constants of utils/constant.go, which must also be what `ray start` and the Serve config use."""
    service = rayservice(overlay(name))
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]
    ports = {p["name"]: p["containerPort"] for p in ray_container(head)["ports"]}
    assert ports == KUBERAY_PORTS
    params = head["rayStartParams"]
    assert int(params.get("port", 6379)) == ports["gcs-server"]
    assert int(params.get("dashboard-port", 8265)) == ports["dashboard"]
    assert int(params.get("ray-client-server-port", 10001)) == ports["client"]
    assert int(params["metrics-export-port"]) == ports["metrics"]
    assert serve_config(service)["http_options"]["port"] == ports["serve"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_workers_name_their_serve_grpc_and_metrics_ports(name):
    """common/pod.go initLivenessAndReadinessProbe probes a RayService worker's Serve proxy on the port
    named `serve` (FindContainerPort, default 8000); DefaultWorkerPodTemplate adds `metrics` at 8080 when
    missing, so a listed one must match the worker's metrics-export-port; `grpc` is the Serve config's gRPC port,
    which the hornet-grpc Service targets by that name."""
    service = rayservice(overlay(name))
    config = serve_config(service)
    for group_name, group in list(groups(service))[1:]:
        ports = {p["name"]: p["containerPort"] for p in ray_container(group)["ports"]}
        assert ports == {"serve": config["http_options"]["port"], "grpc": config["grpc_options"]["port"],
                         "metrics": int(group["rayStartParams"]["metrics-export-port"])}, group_name  # fmt: skip


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_grpc_service_reaches_the_serving_workers_grpc_port(name):
    """KubeRay's Serve Service carries only the port named `serve` (common/service.go BuildServeService), so
    deploy/k8s/base/grpc-service.yaml is gRPC's: it selects what KubeRay marks for traffic, ray.io/serve=true
    (common/pod.go DefaultWorkerPodTemplate sets it on every RayService worker, the controller keeps it false on the
    head with excludeHeadPodFromServeSvc), by a label every worker template has, and forwards to `grpc`."""
    docs = overlay(name)
    grpc_service = one(docs, "Service")
    service = rayservice(docs)
    assert service["spec"]["excludeHeadPodFromServeSvc"] is True
    selector = grpc_service["spec"]["selector"]
    assert selector.pop("ray.io/serve") == "true"
    for group_name, group in list(groups(service))[1:]:
        labels = group["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), group_name
    (port,) = grpc_service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (serve_config(service)["grpc_options"]["port"], "grpc")


@pytest.mark.parametrize("name", OVERLAYS)
def test_pods_keep_the_labels_kuberay_selects_them_by(name):
    """utils/constant.go RayContainerIndex: the Ray container is the first one. common/pod.go labelPod lets
    template labels override app.kubernetes.io/name and app.kubernetes.io/created-by, and common/service.go
    HeadServiceLabels selects the head Pod by them (kuberay, kuberay-operator): overriding them leaves the
    head Service without endpoints."""
    for group_name, group in groups(rayservice(overlay(name))):
        labels = group["template"].get("metadata", {}).get("labels", {})
        assert not {"app.kubernetes.io/name", "app.kubernetes.io/created-by"} & set(labels), group_name
        assert not any(k.startswith("ray.io/") for k in labels), group_name
        expected = "ray-head" if group_name == "head" else "ray-worker"
        assert ray_container(group)["name"] == expected


@pytest.mark.parametrize("name", OVERLAYS)
def test_rayversion_is_the_pinned_ray(name):
    """utils/validation.go ValidateRayClusterSpec: token authentication needs rayVersion >= 2.52.0; the
    KubeRay samples (ray-service.sample.yaml): rayVersion "should match the Ray version in the image"."""
    ray_version = rayservice(overlay(name))["spec"]["rayClusterConfig"]["rayVersion"]
    assert re.search(r'"ray\[[a-z,]+\]==(.+?)"', PYPROJECT).group(1) == ray_version
    assert f"ray=={ray_version}" in (DEPLOY / "constraints.txt").read_text().split()
    assert version("ray") == ray_version
    assert tuple(int(x) for x in ray_version.split(".")) >= (2, 52, 0)


@pytest.mark.parametrize("name", OVERLAYS)
def test_images_come_from_a_registry_and_carry_rayversion(name):
    """The image's Ray must be rayVersion (see above): the image installs deploy/constraints.txt, and its tag
    names that Ray version; the GPU group runs the CUDA image, every other pod the CPU one."""
    service = rayservice(overlay(name))
    ray_version = service["spec"]["rayClusterConfig"]["rayVersion"]
    pyproject_version = re.search(r'^version = "(.+)"$', PYPROJECT, re.M).group(1)
    for group_name, group in groups(service):
        target = "gpu" if "nvidia.com/gpu" in ray_container(group)["resources"].get("limits", {}) else "cpu"
        images = [
            c["image"] for key in ("initContainers", "containers") for c in group["template"]["spec"].get(key, [])
        ]
        for image in images:
            registry, _, rest = image.partition("/")
            assert "." in registry and rest, f"{group_name}: {image} names no registry"
            assert image.endswith(f":{pyproject_version}-ray{ray_version}-{target}"), f"{group_name}: {image}"


@pytest.mark.parametrize("name", OVERLAYS)
def test_spec_passes_the_operators_validation(name):
    """utils/validation.go: ValidateRayServiceMetadata (a DNS-1035 name of at most 47 characters),
    validateRayGroupResources (no top-level `resources` next to rayStartParams num-cpus/num-gpus/resources),
    validateRayGroupLabels (no rayStartParams labels), ValidateRayServiceSpec (upgrade type)."""
    service = rayservice(overlay(name))
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", service["metadata"]["name"])
    assert len(service["metadata"]["name"]) <= 47
    assert service["spec"]["upgradeStrategy"]["type"] in ("NewCluster", "NewClusterWithIncrementalUpgrade", "None")
    for group_name, group in groups(service):
        assert "resources" not in group and "labels" not in group["rayStartParams"], group_name
        assert "redis-password" not in group["rayStartParams"], group_name


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_ray_container_runs_with_ray_env(name):
    """service/daemon/ray_env.py RAY_ENV is what every Ray process runs with (HAProxy ingress, throughput mode,
    worker niceness, inline object size, no usage stats): head and every worker group, exactly."""
    for group_name, group in groups(rayservice(overlay(name))):
        env = {e["name"]: e["value"] for e in ray_container(group).get("env", []) if e["name"].startswith("RAY_")}
        assert env == RAY_ENV, group_name


@pytest.mark.parametrize("name", OVERLAYS)
def test_head_is_control_plane_only(name):
    """num-cpus 0 keeps replicas and tasks off the head (KubeRay's samples: "to avoid any Ray actors or
    tasks being scheduled on the Ray head Pod"); excludeHeadPodFromServeSvc keeps it out of the Serve
    Service (rayservice_controller.go updateHeadPodServeLabel); it mounts nothing."""
    service = rayservice(overlay(name))
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0" and head["rayStartParams"]["num-gpus"] == "0"
    assert ray_resources(head)["CPU"] == 0 and "nvidia.com/gpu" not in json.dumps(ray_container(head)["resources"])
    assert "volumeMounts" not in ray_container(head) and "volumes" not in head["template"]["spec"]
    assert service["spec"]["excludeHeadPodFromServeSvc"] is True


@pytest.mark.parametrize("name", OVERLAYS)
def test_autoscaling_and_upgrade_strategy(name):
    """rayservice_controller.go isZeroDowntimeUpgradeEnabled: upgradeStrategy.type NewCluster starts a new
    cluster for a rayClusterConfig change (headroom: deploy/README.md). The in-tree autoscaler (common/pod.go
    BuildAutoscalerContainer, merged with autoscalerOptions) scales each group within min..max."""
    service = rayservice(overlay(name))
    cluster = service["spec"]["rayClusterConfig"]
    assert service["spec"]["upgradeStrategy"] == {"type": "NewCluster"}
    assert cluster["enableInTreeAutoscaling"] is True
    options = cluster["autoscalerOptions"]
    assert options["idleTimeoutSeconds"] > 0 and options["resources"]["limits"]["memory"]
    for group in cluster["workerGroupSpecs"]:
        least = 0 if group["groupName"] == ON_DEMAND_GROUP else 1
        assert least <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]


def test_the_on_demand_group_holds_only_variants_that_scale_to_zero():
    """Scale to zero nodes (docs/scale-to-zero.md): the on-demand group starts with no pod and may have none (the
    Ray autoscaler removes an idle pod, autoscaler/v2's idle termination, within minReplicas), and every deployment
    that runs there may have zero replicas, or a pod would stay for it. It offers what the gpu group offers, under
    its own resource; the warm variants stay on the gpu group."""
    service = rayservice(overlay("gpu-scale-to-zero"))
    by_name = dict(groups(service))
    on_demand, warm = by_name[ON_DEMAND_GROUP], by_name["gpu-classifiers"]
    assert on_demand["minReplicas"] == on_demand["replicas"] == 0 and on_demand["maxReplicas"] >= 1
    assert ray_container(on_demand)["resources"] == ray_container(warm)["resources"]
    offered = ray_resources(on_demand)
    app = serve_config(service)["applications"][0]
    placed = {name for name, actor in deployments(app).items() if placeable_on(actor, offered)}
    entries = {d["name"]: d for d in app["deployments"]}
    assert placed and all(entries[name]["autoscaling_config"]["min_replicas"] == 0 for name in placed)
    assert {"hornet-t", "hornet-l-gf384"} <= set(entries) - placed


def test_gpu_overlay_keeps_gateways_off_gpu_nodes():
    """Scaling gateways never adds a GPU node: only the classifier group asks Kubernetes for GPUs (one a
    pod, on the GPU type its nodeSelector names, tolerating the GPU taint) and offers GPUs to Ray."""
    service = rayservice(overlay("gpu"))
    by_name = dict(groups(service))
    assert set(by_name) == {"head", GATEWAY_GROUP, "gpu-classifiers"}
    gpu_group = by_name["gpu-classifiers"]
    assert ray_container(gpu_group)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert ray_resources(gpu_group)["GPU"] == 1
    spec = gpu_group["template"]["spec"]
    assert spec["nodeSelector"]["nvidia.com/gpu.product"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    for group_name in ("head", GATEWAY_GROUP):
        assert "nvidia.com/gpu" not in json.dumps(by_name[group_name]), group_name
        assert ray_resources(by_name[group_name])["GPU"] == 0


@pytest.mark.parametrize("name", OVERLAYS)
def test_each_deployment_fits_only_on_its_own_worker_group(name):
    """The serveConfigV2's deployments ask for a custom Ray resource that only their group offers
    (rayStartParams.resources, passed to `ray start` by common/pod.go generateRayStartCommand), and each
    replica fits on one pod of it: Gateway replicas on the gateway group, classifiers on the classifier
    group. A replica that fits nowhere stays pending forever; one that fits anywhere lands anywhere."""
    service = rayservice(overlay(name))
    offered = {group_name: ray_resources(group) for group_name, group in groups(service)}
    for deployment, actor in deployments(serve_config(service)["applications"][0]).items():
        expected = {GATEWAY_GROUP} if deployment == "Gateway" else CLASSIFIER_GROUPS & set(offered)
        custom = set(actor.get("resources", {}))
        assert custom, f"{deployment} asks for no custom resource: it can land on any group"
        for resource in custom:
            offering = {group_name for group_name, resources in offered.items() if resource in resources}
            assert offering and offering <= expected, f"{deployment}: {resource} is offered by {offering}"
        fits = {group_name for group_name, resources in offered.items() if placeable_on(actor, resources)}
        assert len(fits) == 1 and fits <= expected, f"{deployment} asks {actor}, fits on {fits or 'no group'}"


@pytest.mark.parametrize("name", OVERLAYS)
def test_api_keys_are_on_and_mounted_only_where_gateways_run(name):
    """The deploy configs turn API keys on, and the file auth.keys_file names exists where the Gateway replicas
    run: the gateway group mounts the `hornet-api-keys` Secret (not optional: a pod without it never starts)
    at that file's directory. The head and the classifier pods never see the keys."""
    service = rayservice(overlay(name))
    auth = serve_config(service)["applications"][0]["args"]["auth"]
    assert auth["enabled"] and auth["rate_per_s"] and auth["burst"]
    keys_dir = str(Path(auth["keys_file"]).parent)
    for group_name, group in groups(service):
        spec = group["template"]["spec"]
        secrets = {v["name"]: v["secret"] for v in spec.get("volumes", []) if "secret" in v}
        mounts = [m for m in ray_container(group).get("volumeMounts", []) if m["name"] in secrets]
        if group_name != GATEWAY_GROUP:
            assert not mounts, f"{group_name} mounts a Secret: {mounts}"
            continue
        (mount,) = [m for m in mounts if m["mountPath"] == keys_dir]
        assert mount.get("readOnly") and "subPath" not in mount  # a subPath mount never sees a rotated Secret
        secret = secrets[mount["name"]]
        assert secret["secretName"] == "hornet-api-keys" and not secret.get("optional", False)
        assert secret["defaultMode"] & 0o007 == 0, "the keys file is readable by every user of the pod"
        assert secret.get("items") in (None, [{"key": Path(auth["keys_file"]).name, "path": "keys"}])


# ---- checkpoints ---------------------------------------------------------------------------------------


def _fetch_command(name: str) -> tuple[list[str], Doc]:
    classifiers = [g for n, g in groups(rayservice(overlay(name))) if n in CLASSIFIER_GROUPS]
    (init,) = classifiers[0]["template"]["spec"]["initContainers"]
    assert all(g["template"]["spec"]["initContainers"] == [init] for g in classifiers)
    return init["command"], {e["name"]: e["value"] for e in init["env"]}


@pytest.mark.parametrize("name", OVERLAYS)
def test_classifiers_get_every_enabled_models_checkpoint(name):
    """The init container fills the classifier pods' emptyDir with the published file of every enabled
    model (names as model.get_variant(id).checkpoint_filename: the loader finds and verifies them by name),
    into the directory the Serve config's checkpoint_dir names, mounted read-only by the Ray container."""
    import model

    docs = overlay(name)
    service = rayservice(docs)
    args = serve_config(service)["applications"][0]["args"]
    _, env = _fetch_command(name)
    for classifiers in [g for n, g in groups(service) if n in CLASSIFIER_GROUPS]:
        spec = classifiers["template"]["spec"]
        (urls_map,) = [v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v]
        (config_map,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == urls_map]
        urls = [u for u in config_map["data"][Path(env["CHECKPOINT_URLS"]).name].split() if u.startswith("http")]
        assert sorted(Path(u).name for u in urls) == sorted(
            model.get_variant(m).checkpoint_filename for m in args["models"]
        )
        assert env["CHECKPOINT_DIR"] == args["checkpoint_dir"]
        mount = {"name": "checkpoints", "mountPath": args["checkpoint_dir"], "readOnly": True}
        assert mount in ray_container(classifiers)["volumeMounts"]
        assert [v for v in spec["volumes"] if v["name"] == "checkpoints"][0]["emptyDir"]


def test_init_container_fetches_and_verifies_checkpoints(http_dir, tmp_path):
    """The init container's own command, run here against a local HTTP server: a file whose sha256 matches
    the prefix in its name lands in the checkpoint directory; one that does not fails the container."""
    command, env = _fetch_command("gpu")
    assert command[0] == "python"
    www, base_url = http_dir
    good = b"a checkpoint"
    good_name = f"hornet-test-{hashlib.sha256(good).hexdigest()[:8]}.pth"
    (www / good_name).write_bytes(good)
    (www / "hornet-bad-00000000.pth").write_bytes(b"tampered")
    urls, target = tmp_path / "urls", tmp_path / "models"

    def fetch(*names: str) -> subprocess.CompletedProcess[str]:
        urls.write_text("# comment\n\n" + "".join(f"{base_url}{n}\n" for n in names))
        run_env = {**os.environ, **env, "CHECKPOINT_URLS": str(urls), "CHECKPOINT_DIR": str(target)}
        return subprocess.run([sys.executable, *command[1:]], env=run_env, capture_output=True, text=True, timeout=120)

    ok = fetch(good_name)
    assert ok.returncode == 0, ok.stderr
    assert (target / good_name).read_bytes() == good
    bad = fetch("hornet-bad-00000000.pth")
    assert bad.returncode != 0 and "hash" in bad.stderr.lower()


# ---- components ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OVERLAYS)
def test_gcs_fault_tolerance_component(name, tmp_path):
    """GCS FT with an external Redis whose password comes from a Secret. utils/validation.go
    ValidateRayClusterSpec: with gcsFaultToleranceOptions, no ray.io/ft-enabled annotation, no redis-password
    in rayStartParams, no REDIS_PASSWORD or RAY_REDIS_ADDRESS in the head container, no
    ray.io/external-storage-namespace annotation. common/pod.go configureRedisFT: without
    externalStorageNamespace each RayCluster uses its own UID, so the new cluster of an upgrade never
    reads the old one's state."""
    service = rayservice(with_components(tmp_path, name, ["gcs-ft"]))
    rayservice_validator().validate(service)
    options = service["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]
    assert options["redisAddress"]
    assert set(options["redisPassword"]) == {"valueFrom"}
    assert set(options["redisPassword"]["valueFrom"]["secretKeyRef"]) == {"name", "key"}
    assert "externalStorageNamespace" not in options
    annotations = service["metadata"].get("annotations", {})
    assert not {"ray.io/ft-enabled", "ray.io/external-storage-namespace"} & set(annotations)
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert "redis-password" not in head["rayStartParams"]
    assert not {"REDIS_PASSWORD", "RAY_REDIS_ADDRESS"} & {e["name"] for e in ray_container(head)["env"]}


def test_checkpoints_pvc_component_mounts_a_shared_claim(tmp_path):
    """The optional PVC: ReadWriteMany (every classifier pod on any node mounts it) with an explicit storage
    class, mounted read-only, and no download init container."""
    docs = with_components(tmp_path, "gpu", ["checkpoints-pvc"])
    claim = one(docs, "PersistentVolumeClaim")
    kubernetes_validate.validate(claim, K8S_VERSION, strict=True)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"] and claim["spec"]["storageClassName"]
    service = rayservice(docs)
    rayservice_validator().validate(service)
    spec = dict(groups(service))["gpu-classifiers"]["template"]["spec"]
    assert "initContainers" not in spec
    volume = {
        "name": "checkpoints",
        "persistentVolumeClaim": {"claimName": claim["metadata"]["name"], "readOnly": True},
    }
    assert spec["volumes"] == [volume]


# ---- kind end-to-end script ----------------------------------------------------------------------------

E2E = K8S / "e2e.sh"


@pytest.mark.parametrize("check", [["bash", "-n"], ["shellcheck"]])
def test_e2e_script_passes_bash_n_and_shellcheck(check):
    assert shutil.which(check[0]), f"{check[0]} is not installed: `make test` installs Debian's shellcheck"
    result = subprocess.run([*check, str(E2E)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_e2e_pins_kuberay_and_renders_the_cpu_overlay_with_random_weights():
    """The kustomization e2e.sh writes, rendered as the script renders it (a directory inside deploy/k8s):
    the cpu overlay with random weights, no checkpoint download and no Prometheus Operator objects."""
    script = E2E.read_text()
    assert re.search(r'^KUBERAY_VERSION="\$\{KUBERAY_VERSION:-\d+\.\d+\.\d+\}"', script, re.M)
    assert 'helm install kuberay-operator kuberay/kuberay-operator --version "$KUBERAY_VERSION"' in script
    kustomization = re.search(r"<<'EOF'\n(.*?)\nEOF\n", script, re.S).group(1)
    work = Path(tempfile.mkdtemp(prefix=".e2e.", dir=K8S))
    try:
        serve_patch = (K8S / "overlays" / "cpu" / "serve-config.yaml").read_text()
        (work / "serve-config.yaml").write_text(
            serve_patch.replace("weights_policy: required", "weights_policy: random")
        )
        (work / "kustomization.yaml").write_text(kustomization)
        docs = kustomize(work)
    finally:
        shutil.rmtree(work)
    assert {d["kind"] for d in docs} == {"ConfigMap", "RayService", "Service"}
    service = rayservice(docs)
    rayservice_validator().validate(service)
    assert serve_config(service)["applications"][0]["args"]["weights_policy"] == "random"
    urls = [d for d in docs if d["metadata"]["name"] == "hornet-checkpoint-urls"]
    assert urls[0]["data"] == {"checkpoint-urls": ""}
