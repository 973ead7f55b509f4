from __future__ import annotations

import functools
import http.server
import threading

import pytest


@pytest.fixture
def http_dir(tmp_path):
    """A local HTTP server on 127.0.0.1 serving a fresh directory: yields (directory, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch.hub cache for this test."""
    import torch

    directory = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(directory))
    return directory / "checkpoints"
