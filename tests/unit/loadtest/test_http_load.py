"""loadtest.http_load: free_port never hands out a port a Ray node takes by default, nor one twice; the Triton binary tensor body
is laid out as tritonclient.http lays it out."""

from __future__ import annotations

import json
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


class _OsPicksTheSameTwice(socket.socket):
    script = [40124, 40124, 40125]

    def getsockname(self):
        return ("127.0.0.1", self.script.pop(0))


def test_a_port_is_handed_out_once_even_when_the_os_picks_it_again(monkeypatch):
    monkeypatch.setattr(http_load.socket, "socket", _OsPicksTheSameTwice)
    monkeypatch.setattr(http_load, "_HANDED_OUT", set())
    assert [http_load.free_port(), http_load.free_port()] == [40124, 40125]


def test_triton_binary_body_is_the_json_header_then_the_length_prefixed_element():
    element = bytes(range(256)) + b"\x00" * 44  # 300 bytes: the length needs both low bytes, little-endian
    body, headers = http_load.triton_bytes_body("image", element)
    json_length = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:json_length])
    assert header == {
        "inputs": [{"name": "image", "shape": [1, 1], "datatype": "BYTES", "parameters": {"binary_data_size": 304}}],
        "parameters": {"binary_data_output": True},
    }
    assert body[json_length:] == b"\x2c\x01\x00\x00" + element
    assert body[:json_length].endswith(b"}}") and b" " not in body[:json_length]  # tritonclient's compact JSON
    request = http_load.build_request("http://127.0.0.1:9/v2/models/m/infer", body, "application/octet-stream", headers)
    head, _, sent = request.partition(b"\r\n\r\n")
    assert sent == body
    assert f"Inference-Header-Content-Length: {json_length}\r\n".encode() in head + b"\r\n"
    assert f"Content-Length: {len(body)}\r\n".encode() in head + b"\r\n"
