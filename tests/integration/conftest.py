"""One real local Ray + Serve per test session (CPU), serving random-weight HorNets; every test in this
folder is marked `integration`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loadtest.http_load import free_port, wait_ready
from service.config import Settings
from service.daemon.local import local_service, serve_actors

from .live import FALLBACK_GRPC_PORT, TEST_SETTINGS, Service

HERE = Path(__file__).parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A `pytestmark` here would mark nothing (pytest reads it from test modules only): mark this folder's
    tests here, so that `-m "not integration"` leaves out every test that starts Ray."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def service():
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    settings = Settings.model_validate({**TEST_SETTINGS, "port": http_port, "grpc_port": grpc_port,
                                        "metrics_export_port": metrics_port})  # fmt: skip
    # HAProxy's stats and metrics ports and Serve's fallback gRPC proxy's are fixed by default: a machine running
    # `make serve` too would clash.
    haproxy_ports = {
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        FALLBACK_GRPC_PORT: str(free_port()),
    }
    with local_service(settings, num_cpus=4, metrics_report_interval_ms=1000, ray_env=haproxy_ports) as base_url:
        svc = Service(settings, base_url, f"http://127.0.0.1:{metrics_port}/metrics", metrics_port)
        wait_ready(base_url, timeout_s=60)
        yield svc
        svc.client.close()


@pytest.fixture(scope="module")
def replicas_at_start(service) -> set[str]:
    """Serve's replicas when a module first asks: its last test checks that none restarted since."""
    return serve_actors("SERVE_REPLICA")


@pytest.fixture
def browser_page():
    """A page in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(chromium).exists(), "chromium is not installed: `make test` installs Debian's package"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        yield page
        browser.close()
