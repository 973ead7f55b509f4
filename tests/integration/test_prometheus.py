"""A real Prometheus server (Debian's package) scrapes the Ray metrics agent of the live service and
answers a latency quantile per model."""

import shutil
import subprocess
import time

import httpx
import pytest

from loadtest.http_load import free_port
from tests.support.images import encode, photo

QUERY = "histogram_quantile(0.95, sum by (le, model) (rate(ray_hornet_request_latency_seconds_bucket[30s])))"


@pytest.fixture
def prometheus(service, tmp_path):
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed: `make test` installs Debian's package"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: ray\n    static_configs: [{{targets: ['127.0.0.1:{service.metrics_port}']}}]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def test_prometheus_answers_a_latency_quantile_per_model(service, prometheus):
    image = encode(photo(400, 300, seed=9), "JPEG")
    deadline = time.time() + 90
    per_model: dict[str, float] = {}
    while time.time() < deadline and len(per_model) < 2:
        for model in ("hornet-t", "hornet-l-gf384"):
            r = service.client.post(
                f"/v1/classify?model={model}", content=image, headers={"Content-Type": "image/jpeg"}
            )
            assert r.status_code == 200
        try:
            answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": QUERY}, timeout=5).json()
        except httpx.TransportError:  # Prometheus still starting
            continue
        assert answer["status"] == "success"
        per_model = {
            s["metric"]["model"]: float(s["value"][1])
            for s in answer["data"]["result"]
            if s["value"][1] not in ("NaN", "+Inf")
        }
        time.sleep(1)
    assert set(per_model) == {"hornet-t", "hornet-l-gf384"}, per_model
    assert all(0 < seconds < 60 for seconds in per_model.values()), per_model


def test_every_dashboard_and_alert_query_names_an_exported_metric(service):
    import re

    import yaml

    from tests.support.deploy import (
        DEPLOY,
        dashboard_metric_names,
    )

    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alert_names = {n for g in rules["groups"] for r in g["rules"] for n in re.findall(r"\bray_[a-z_]+", r["expr"])}
    wanted = dashboard_metric_names() | alert_names
    image = encode(photo(200, 200), "PNG")
    for model in ("hornet-t", "hornet-l-gf384"):
        service.client.post(f"/v1/classify?model={model}", content=image, headers={"Content-Type": "image/png"})

    def missing() -> set[str]:
        exported = {name for name in re.findall(r"^(ray_[a-z_]+)", httpx.get(service.metrics_url).text, re.M)}
        return wanted - exported

    deadline = time.time() + 30
    while missing() and time.time() < deadline:
        time.sleep(1)
    assert not missing(), f"queried but never exported: {sorted(missing())}"
