"""Settings -> the Serve config YAML that `serve deploy`, `serve run` and KubeRay's serveConfigV2 take.

What Serve changes on running replicas, without a restart, lives in each deployment's entry under
`deployments:`: replicas or autoscaling, the queue bounds, and the classifier's batching as its
`user_config` (applied by `Classifier.reconfigure`). Everything else travels in the application's
`args`, which Serve hashes into the application's code version: changing any of it (weights,
precision, device, compile, limits, ...) rebuilds the application and restarts every replica. A
deployment's `ray_actor_options` (CPUs, GPUs, resources) restarts that deployment's replicas only.
"""

from __future__ import annotations

from typing import Any

import yaml

from service.config import AutoscalingSettings, LiveBatchSettings, Settings

IMPORT_PATH = "service.app:build_app"
# Adds KServe's GRPCInferenceService to Serve's gRPC servers (the gateway replicas' and the fallback proxy's), whose
# calls Serve routes to the Gateway's methods of the same names (service/grpc/servicer.py).
GRPC_SERVICER = "service.grpc.kserve.add_GRPCInferenceServiceServicer_to_server"
# Deployment options Serve applies to running replicas; kept out of the args (see the module docstring).
LIVE_DEPLOYMENT_FIELDS = ("num_replicas", "autoscaling", "max_ongoing_requests", "max_queued_requests")
LIVE_BATCH_FIELDS = tuple(LiveBatchSettings.model_fields)


def _scaling(num_replicas: int, autoscaling: AutoscalingSettings | None) -> dict[str, Any]:
    if autoscaling is None:
        return {"num_replicas": num_replicas}
    return {"autoscaling_config": autoscaling.model_dump(exclude_none=True)}


def classifier_deployment(model_id: str, settings: Settings) -> dict[str, Any]:
    """The Serve options of one variant's classifier deployment (named after the variant)."""
    cfg = settings.classifier_for(model_id)
    actor: dict[str, Any] = {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus}
    if cfg.resources:
        actor["resources"] = dict(cfg.resources)
    return {
        "name": model_id,
        **_scaling(cfg.num_replicas, cfg.autoscaling),
        "max_ongoing_requests": cfg.max_ongoing_requests,
        "max_queued_requests": cfg.max_queued_requests,
        "user_config": cfg.batch.live().model_dump(),
        "ray_actor_options": actor,
    }


GATEWAY = "Gateway"  # the ingress deployment's name


def gateway_deployment(settings: Settings) -> dict[str, Any]:
    """The gateway's Serve options. Colocated, each of its replicas also holds every variant's classifier: it reserves
    their CPUs and GPUs too, and carries their batching and request bounds as its `user_config` (applied by
    `Gateway.reconfigure`)."""
    gw = settings.gateway
    actor: dict[str, Any] = {"num_cpus": gw.num_cpus}
    colocated: dict[str, Any] = {}
    if settings.colocated:
        classifiers = {model_id: settings.classifier_for(model_id) for model_id in settings.models}
        actor["num_cpus"] += sum(cfg.num_cpus for cfg in classifiers.values())
        if num_gpus := sum(cfg.num_gpus for cfg in classifiers.values()):
            actor["num_gpus"] = num_gpus
        colocated["user_config"] = {model_id: cfg.live().model_dump() for model_id, cfg in classifiers.items()}
    if gw.resources:
        actor["resources"] = dict(gw.resources)
    return {
        "name": GATEWAY,
        **_scaling(gw.num_replicas, gw.autoscaling),
        "max_ongoing_requests": gw.max_ongoing_requests,
        "max_queued_requests": gw.max_queued_requests,
        # Serve's own answer when the gateway's queue is full: 503 with Retry-After, as every other 503.
        "backpressure_config": {"status_code": 503, "retry_after_s": settings.timeouts.retry_after_s},
        **colocated,
        "ray_actor_options": actor,
    }


def application_args(settings: Settings) -> dict[str, Any]:
    """The settings without what the deployments' entries carry (build_app validates them as such). A
    per-variant override left empty is dropped, so that a live change leaves the args as they were."""
    args = settings.model_dump(mode="json")
    # Resolved here: `auto` looks at the live fields, which the args leave out.
    args["topology"] = "colocated" if settings.colocated else "split"
    for section in (args["classifier"], args["gateway"], *args["per_model"].values()):
        for name in LIVE_DEPLOYMENT_FIELDS:
            section.pop(name, None)
    for section in (args["classifier"], *args["per_model"].values()):
        for name in LIVE_BATCH_FIELDS:
            section.get("batch", {}).pop(name, None)
    for model, overrides in list(args["per_model"].items()):
        if overrides.get("batch") == {}:
            del overrides["batch"]
        if not overrides:
            del args["per_model"][model]
    return args


def grpc_options(settings: Settings) -> dict[str, Any]:
    """Serve's gRPC ingress: on the API's host (HAProxy's gRPC frontend binds it), at `grpc_port`. No reflection:
    Serve's would look the service up in protobuf's default descriptor pool, and service/grpc/kserve.py keeps its
    own (grpcurl takes the .proto files there instead)."""
    return {"port": settings.grpc_port, "grpc_servicer_functions": [GRPC_SERVICER], "enable_reflection": False}


def serve_config(settings: Settings) -> dict[str, Any]:
    classifiers = [classifier_deployment(m, settings) for m in settings.models] if not settings.colocated else []
    deployments = [*classifiers, gateway_deployment(settings)]
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": settings.host, "port": settings.port},
        **({"grpc_options": grpc_options(settings)} if settings.grpc_port else {}),
        "applications": [
            {
                "name": settings.app_name,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": application_args(settings),
                "deployments": deployments,
            }
        ],
    }


def render(settings: Settings, source: str) -> str:
    header = (
        f"# Generated by `hornet-serve --emit-serve-config --config {source}`: edit that file, not this one.\n"
        "# `deployments:` entries apply to running replicas (`serve deploy` again); a change in `args`\n"
        "# restarts every replica (see service/serve_config.py).\n"
    )
    return header + yaml.safe_dump(serve_config(settings), sort_keys=False)


def render_kuberay_patch(settings: Settings, source: str, name: str = "hornet") -> str:
    """A kustomize patch that sets the RayService's serveConfigV2 to this Serve config."""
    header = f"# Generated by `hornet-serve --emit-kuberay-patch --config {source}`: edit that file, not this one.\n"
    patch = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": name},
        "spec": {"serveConfigV2": yaml.safe_dump(serve_config(settings), sort_keys=False)},
    }
    return header + yaml.dump(patch, Dumper=_BlockStrings, sort_keys=False)


class _BlockStrings(yaml.SafeDumper):
    """Writes multi-line strings as `|` blocks, so the embedded Serve config stays readable."""


_BlockStrings.add_representer(
    str, lambda dumper, s: dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)
)
