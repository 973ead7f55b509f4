"""loadtest.http_load.free_port never hands out a port a Ray node takes by default."""

from __future__ import annotations

import socket

from loadtest import http_load


class _OsPicks(socket.socket):
    """A socket whose OS-picked port comes from a script: first Ray's dashboard agent port, then a free one."""

    script = [52365, 40123]

    def getsockname(self):
        return ("127.0.0.1", self.script.pop(0))


def test_a_port_ray_takes_by_default_is_never_handed_out(monkeypatch):
    monkeypatch.setattr(http_load.socket, "socket", _OsPicks)
    assert http_load.free_port() == 40123
    assert 52365 in http_load.RAY_DEFAULT_PORTS
