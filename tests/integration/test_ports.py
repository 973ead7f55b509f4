"""Every listening socket of the session's service (this process and its descendants: Ray's GCS, raylet, agents
and workers, HAProxy): with the API on 127.0.0.1, each is on loopback, and service_ports names them right."""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

import psutil

from service.local import service_ports

# Serve 2.60 starts each replica's inter-deployment gRPC server on [::]:0 (ray/serve/_private/replica.py:1835,
# `add_port_to_grpc_server(self._server, "[::]:0")`): no setting moves it, so one such socket per replica is let be.
REPLICA_PROCESS = "ray::ServeReplica:"


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
    exempt = {s.pid: s for s in wide if s.process.startswith(REPLICA_PROCESS) and s.address == "::"}
    offenders = [s for s in wide if exempt.get(s.pid) != s]
    assert not offenders, "listening beyond loopback:\n" + "\n".join(map(str, offenders))
    assert exempt, "no replica's gRPC server on [::]: Serve has moved it, and this test can drop its exception"
    missing = {role: where for role, where in service_ports(service.settings).items()
               if where not in {(s.address, s.port) for s in found}}  # fmt: skip
    assert not missing, f"service_ports names what nothing listens on: {missing}"
