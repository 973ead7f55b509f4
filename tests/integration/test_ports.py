"""Every listening socket of the session's service (this process and its descendants: Ray's GCS, raylet, agents
and workers, HAProxy): with the API on 127.0.0.1, each is on loopback, and service_ports names them right."""

from __future__ import annotations

import ipaddress
import os
from typing import NamedTuple

import psutil
from ray.serve._private import constants

from service.daemon.local import service_ports

from .live import FALLBACK_GRPC_PORT

# Serve 2.60 binds these on [::] whatever the API's host, and no setting moves them, so they are let be: each
# replica's inter-deployment gRPC server on [::]:0 (ray/serve/_private/replica.py:1835, `add_port_to_grpc_server(
# self._server, "[::]:0")`), one per replica; and each gRPC ingress server, the gateway replicas' (in Serve's
# direct-ingress gRPC range) and the fallback proxy's (grpc_util.py:204, start_grpc_server, `add_grpc_address(server,
# f"[::]:{grpc_options.port}")`: gRPCOptions has no host; HAProxy's gRPC frontend in front of them does follow it).
REPLICA_PROCESS = "ray::ServeReplica:"
DIRECT_INGRESS_GRPC = range(constants.RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT,
                            constants.RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT + 1)  # fmt: skip


class Listener(NamedTuple):
    pid: int
    process: str
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.address}:{self.port} (pid {self.pid}, {self.process})"


def listeners() -> list[Listener]:
    found = []
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            name = " ".join(process.cmdline()).strip()[:80] or process.name()
            found += [Listener(process.pid, name, ipv4(c.laddr.ip), c.laddr.port)
                      for c in process.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]  # fmt: skip
        except psutil.Error:  # gone since the listing
            continue
    return found


def ipv4(address: str) -> str:
    """`::ffff:127.0.0.1` (an IPv6 socket bound to an IPv4 address) as 127.0.0.1."""
    mapped = getattr(ipaddress.ip_address(address), "ipv4_mapped", None)
    return str(mapped) if mapped else address


def test_nothing_listens_beyond_loopback(service):
    assert service.settings.host == "127.0.0.1"
    found = listeners()
    wide = [s for s in found if not ipaddress.ip_address(s.address).is_loopback]
    replicas = [s for s in wide if s.process.startswith(REPLICA_PROCESS) and s.address == "::"]
    fallback_grpc = int(os.environ[FALLBACK_GRPC_PORT])  # the session's (conftest.py)
    ingress = [s for s in wide if s.address == "::"
               and ((s in replicas and s.port in DIRECT_INGRESS_GRPC) or s.port == fallback_grpc)]  # fmt: skip
    exempt = {s.pid: s for s in replicas if s not in ingress}
    offenders = [s for s in wide if exempt.get(s.pid) != s and s not in ingress]
    assert not offenders, "listening beyond loopback:\n" + "\n".join(map(str, offenders))
    assert exempt, "no replica's gRPC server on [::]: Serve has moved it, and this test can drop its exception"
    assert ingress, "no gRPC ingress server on [::]: Serve has moved them, and this test can drop its exception"
    missing = {role: where for role, where in service_ports(service.settings).items()
               if where not in {(s.address, s.port) for s in found}}  # fmt: skip
    assert not missing, f"service_ports names what nothing listens on: {missing}"
