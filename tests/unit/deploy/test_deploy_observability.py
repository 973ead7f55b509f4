"""Offline validation of the monitoring files: promtool on the Prometheus config and rules (and its unit
tests of the alerts), the PrometheusRule and PodMonitor for kube-prometheus-stack, the Grafana dashboard
(compose provisioning and the sidecar ConfigMap)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from tests.support.deploy import (
    DEPLOY,
    dashboard_metric_names,
    groups,
    one,
    overlay,
    ray_container,
    rayservice,
)

PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "hornet.json"
JOB = "hornet-ray"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed: `make test` installs Debian's prometheus"
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=PROMETHEUS)


@pytest.mark.parametrize(("check", "path"), [("config", "prometheus.yml"), ("rules", "alerts.yml")])
def test_promtool_accepts_the_prometheus_files(check, path):
    result = promtool("check", check, path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_promtools_unit_tests():
    """alerts.test.yml feeds series to every rule of alerts.yml and names the alerts (labels, summary)
    that must fire: each alert is exercised, and promtool fails on any difference."""
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"HornetNoHealthyReplica", "HornetNoScrapeTarget", "HornetQueueGrowing", "HornetGPUMemoryHigh"} <= alerts
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    fired = {t["alertname"] for test in tests for t in test["alert_rule_test"] if t["exp_alerts"]}
    assert fired == alerts
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_rule_carries_the_alerts_of_alerts_yml(tmp_path):
    """Kubernetes gets the same groups as compose, as a PrometheusRule that kube-prometheus-stack selects
    (its `release` label, as the PodMonitor's); promtool accepts its groups as a rule file."""
    rule = one(overlay("gpu"), "PrometheusRule")
    groups_ = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    assert rule["spec"]["groups"] == groups_, "copy deploy/prometheus/alerts.yml's groups into prometheusrule.yaml"
    podmonitor = one(overlay("gpu"), "PodMonitor")
    assert rule["metadata"]["labels"]["release"] == podmonitor["metadata"]["labels"]["release"]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = promtool("check", "rules", str(tmp_path / "rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_podmonitor_scrapes_every_ray_pod_with_kuberays_labels(name):
    """kube-prometheus-stack's default podMonitorSelector matches its Helm release label; the selector
    matches every Ray pod (KubeRay's common/pod.go labelPod adds ray.io/is-ray-node: "yes" to each);
    every Ray container names the `metrics` port; the ray_io_cluster relabelling of KubeRay's monitoring
    guide; the job name is the one the alerts and the compose Prometheus use."""
    docs = overlay(name)
    podmonitor = one(docs, "PodMonitor")
    assert podmonitor["metadata"]["labels"]["release"]
    selector = podmonitor["spec"]["selector"]["matchLabels"]
    assert selector.pop("ray.io/is-ray-node") == "yes"
    (endpoint,) = podmonitor["spec"]["podMetricsEndpoints"]
    for group_name, group in groups(rayservice(docs)):
        assert selector.items() <= group["template"]["metadata"]["labels"].items(), group_name
        assert endpoint["port"] in {p["name"] for p in ray_container(group)["ports"]}, group_name
    relabel = {r["targetLabel"]: r for r in endpoint["relabelings"]}
    assert relabel["ray_io_cluster"]["sourceLabels"] == ["__meta_kubernetes_pod_label_ray_io_cluster"]
    assert relabel["job"]["replacement"] == JOB
    compose_config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert [c["job_name"] for c in compose_config["scrape_configs"]] == [JOB]
    assert f'job="{JOB}"' in (PROMETHEUS / "alerts.yml").read_text()


def test_grafana_dashboard_parses_and_is_provisioned():
    assert dashboard_metric_names()
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "hornet.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "prometheus"


def test_dashboard_shows_gpus_beside_the_service():
    """GPU utilisation and memory from NVIDIA's DCGM exporter next to the service's panels; every panel
    queries the datasource uid both Grafanas have (compose provisioning; kube-prometheus-stack's default)."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "ray_hornet_requests_total"):
        assert metric in exprs
    uids = {p["datasource"]["uid"] for p in panels} | {t["datasource"]["uid"] for p in panels for t in p["targets"]}
    assert uids == {"prometheus"}


def test_dashboard_configmap_for_the_grafana_sidecar():
    """kube-prometheus-stack's Grafana sidecar loads ConfigMaps labelled grafana_dashboard: "1"."""
    (config_map,) = [
        d for d in overlay("gpu") if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["hornet.json"]) == json.loads(DASHBOARD.read_text())
