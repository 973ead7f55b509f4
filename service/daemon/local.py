"""One way to run the service on this machine: a local Ray with the project's Ray settings, then the app.

`hornet-serve`, the integration tests and the bench all start the service through `local_service`, so
all three run the same thing (the same ingress, the same Ray environment, the same proxy middleware).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from service.config import Settings
from service.daemon.ray_env import HAPROXY_BINARY_ENV, RAY_ENV, RAY_SYSTEM_CONFIG
from service.http.haproxy import REQUEST_TIMEOUT_ENV
from service.http.proxy_middleware import CALLBACK_ENV, CALLBACK_PATH
from service.serve_config import serve_config

log = logging.getLogger(__name__)


def ray_environment() -> dict[str, str]:
    """RAY_ENV plus what depends on this install: the proxy middleware and the haproxy wrapper."""
    return {**RAY_ENV, CALLBACK_ENV: CALLBACK_PATH, HAPROXY_BINARY_ENV: haproxy_wrapper()}


def apply_ray_env(overrides: Mapping[str, str] | None = None) -> None:
    """Put the project's Ray environment into this process before Ray starts: the raylet, Serve's
    controller, its proxies and every replica inherit it. A variable already set by the user wins."""
    for name, value in {**ray_environment(), **(overrides or {})}.items():
        os.environ.setdefault(name, value)


def haproxy_wrapper() -> str:
    """`hornet-haproxy` (service/http/haproxy.py), installed beside this Python."""
    return str(Path(sys.executable).with_name("hornet-haproxy"))


class PortBusy(RuntimeError):
    """A port the service needs is taken; the message names the port and, where it can tell, the holder."""


HAPROXY_PORTS = {"HAProxy stats": "RAY_SERVE_HAPROXY_STATS_PORT", "HAProxy metrics": "RAY_SERVE_HAPROXY_METRICS_PORT"}


def on_loopback(host: str) -> bool:
    """Whether the API's bind address is a loopback one."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def service_ports(settings: Settings) -> dict[str, tuple[str, int]]:
    """What the service will listen on: {role: (address, port)} (call after apply_ray_env: Serve reads the
    HAProxy ports from the environment). HAProxy's stats and metrics ports follow the API's host
    (service/http/haproxy.py); Ray binds its metrics port to loopback on a loopback node (`loopback_node`), and to
    every interface otherwise."""
    metrics_host = "127.0.0.1" if on_loopback(settings.host) else "0.0.0.0"
    ports = {"HTTP": (settings.host, settings.port), "metrics": (metrics_host, settings.metrics_export_port)}
    if settings.grpc_port:
        ports["gRPC"] = (settings.host, settings.grpc_port)
    if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        from ray.serve._private import constants

        # As Serve's processes will read them: this one may have imported Serve before they were set (tests).
        for role, name in HAPROXY_PORTS.items():
            ports[role] = (settings.host, int(os.environ.get(name, getattr(constants, name))))
    return ports


def check_ports_free(settings: Settings) -> None:
    """Raise PortBusy for the first port something already listens on, before Ray starts (otherwise the
    failure shows minutes later, deep in Serve's proxy or HAProxy's start)."""
    for role, (host, port) in service_ports(settings).items():
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT of earlier connections
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                raise PortBusy(f"the {role} port {port} is in use by {listener_of(port)}") from None


def listener_of(port: int) -> str:
    """The process listening on TCP `port`, as `pid 123 (haproxy)`, from /proc (Linux; another user's
    processes may be hidden)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for row in f.readlines()[1:]:
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in fd_dir.iterdir()):
                pid = fd_dir.parent.name
                return f"pid {pid} ({(fd_dir.parent / 'comm').read_text().strip()})"
    return "another process"


def deploy(settings: Settings) -> None:
    """Deploy (or redeploy) the app from its generated Serve config, the way `serve deploy` and KubeRay do,
    and wait until it runs. On a redeploy Serve applies what the config's `deployments:` entries change
    to the running replicas, and restarts them only for a change in `args` (service/serve_config.py)."""
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    client = serve_start()
    client.deploy_apps(ServeDeploySchema.model_validate(serve_config(settings)))
    # No time limit (deploy_apps' own wait gives up after 60 s, and a 384 px model warms up for minutes on a
    # small CPU); a failed deployment raises with Serve's message.
    client._wait_for_application_running(settings.app_name)
    client.wait_for_proxies_serving(wait_for_applications_running=True)


def serve_actors(marker: str = "") -> set[str]:
    """Names of the live Serve actors (replicas are `SERVE_REPLICA::<app>#<deployment>#<id>`) containing marker."""
    import ray

    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and marker in a["name"]}  # fmt: skip


def held_requests(_replica: object) -> int:
    """Run in a Serve replica actor (`__ray_call__`): what its deployment holds, by its own count (`in_flight()`:
    the Gateway's HTTP requests, a Classifier's queued and running images)."""
    from ray import serve

    deployment = serve.get_replica_context().servable_object
    return deployment.in_flight() if deployment is not None else 0  # None: still starting, it holds nothing


def drain_gateways(app_name: str, timeout_s: float) -> None:
    """Wait (at most `timeout_s`) until no replica of the app holds a request.

    Deleting an app stops all of its deployments at once: each replica finishes what it has, but a classifier
    that stopped first leaves a gateway's later call waiting for a replica that never comes (a 504 after
    `timeouts.inference_s`). So the app drains first, by the replicas' own counts (Serve's count of a replica's
    ongoing requests read 0 while requests were on their way): each gateway's requests, from their arrival until
    the response is sent, and each classifier's queue, which callers other than the gateways may fill. Two zeros
    in a row, 0.5 s apart, cover a request still on its way from the ingress (HAProxy holds a body until it
    has all of it)."""
    import ray

    replicas = [ray.get_actor(name, namespace="serve") for name in serve_actors(f"SERVE_REPLICA::{app_name}#")]

    def in_flight() -> int:
        return sum(ray.get([replica.__ray_call__.remote(held_requests) for replica in replicas], timeout=10))

    started = time.monotonic()
    ongoing = in_flight()
    log.info("draining %s: %d replica(s), %d requests in flight", app_name, len(replicas), ongoing)
    zeros = 0
    while True:
        zeros = zeros + 1 if ongoing == 0 else 0
        if zeros == 2 or time.monotonic() - started >= timeout_s:
            break
        time.sleep(0.5)
        ongoing = in_flight()
    log.info("%s drained in %.1f s (%d requests still in flight)", app_name, time.monotonic() - started, ongoing)


@contextmanager
def loopback_node(loopback: bool) -> Iterator[None]:
    """While `ray.init` starts the node: on a loopback API, Ray's single-machine mode (node 127.0.0.1), in which
    the GCS, the raylet, the agents, the workers and the metrics port listen on loopback only.

    Ray turns a loopback `_node_ip_address` into the machine's routable address (ray/_private/services.py,
    `resolve_ip_for_localhost`) unless that mode is on. Its switch, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, is read
    when Ray is first imported (before this, in a test session), and left in os.environ it would stop a later
    `ray start --address` from joining: so the flag it sets is set here, for the start only."""
    from ray._private import ray_constants

    enabled = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = enabled and not loopback
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = enabled


@contextmanager
def local_service(
    settings: Settings,
    *,
    num_cpus: int | None = None,
    metrics_report_interval_ms: int = 5000,
    quiet: bool = False,
    ray_env: Mapping[str, str] | None = None,
    on_ray_started: Callable[[], None] | None = None,
) -> Iterator[str]:
    """Check the ports, start Ray and the app; yield the base URL; on exit drain the gateways, delete the app (each replica
    finishes its ongoing requests before it stops), then stop Serve and Ray.

    `on_ray_started` runs right after `ray.init`, before the app deploys: `ray.init` installs Ray's own
    SIGTERM handler (which ends the process at once), and the app may answer before this yields."""
    apply_ray_env(ray_env)
    check_ports_free(settings)
    # Derived from the settings, not a default: an earlier service in this process (tests) must not leave its own.
    os.environ[REQUEST_TIMEOUT_ENV] = str(settings.timeouts.body_read_s)
    import ray  # after the environment: Serve reads its settings when first imported
    from ray import serve

    with loopback_node(on_loopback(settings.host)):
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level="ERROR" if quiet else "INFO",
            log_to_driver=not quiet,
            _metrics_export_port=settings.metrics_export_port,
            _system_config={**RAY_SYSTEM_CONFIG, "metrics_report_interval_ms": metrics_report_interval_ms},
        )
    if on_ray_started:
        on_ray_started()
    try:
        config = serve_config(settings)
        serve.start(http_options=config["http_options"], grpc_options=config.get("grpc_options"))
        deploy(settings)
        yield f"http://{settings.host}:{settings.port}"
        timeouts = settings.timeouts  # the longest a request may take: its body, then a cold start or an inference
        drain_gateways(
            settings.app_name, timeout_s=max(timeouts.inference_s, timeouts.cold_start_s) + timeouts.body_read_s
        )
        serve.delete(settings.app_name)
    finally:
        serve.shutdown()
        ray.shutdown()
