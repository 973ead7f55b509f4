"""The ports `local_service` will listen on, and where, by the API's host (the live check of a running service is
tests/integration/test_ports.py)."""

from __future__ import annotations

import pytest

from service.config import Settings
from service.daemon.local import on_loopback, service_ports


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_every_port_listens_where_the_api_does(monkeypatch, host):
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
    monkeypatch.setenv("RAY_SERVE_HAPROXY_STATS_PORT", "18404")
    monkeypatch.setenv("RAY_SERVE_HAPROXY_METRICS_PORT", "19101")
    ports = service_ports(Settings(host=host, port=8000, grpc_port=8001, metrics_export_port=8080))
    assert ports == {"HTTP": (host, 8000), "metrics": (host, 8080), "gRPC": (host, 8001), "HAProxy stats": (host, 18404),
                     "HAProxy metrics": (host, 19101)}  # fmt: skip
    assert "gRPC" not in service_ports(Settings(host=host, grpc_port=0))


def test_loopback_hosts():
    hosts = ["127.0.0.1", "127.0.0.2", "localhost", "::1", "0.0.0.0", "::", "192.0.2.2", "example.org"]
    assert [host for host in hosts if on_loopback(host)] == ["127.0.0.1", "127.0.0.2", "localhost", "::1"]
