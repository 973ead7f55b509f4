"""The CPU image and the compose stack under a real Docker engine, checked through the published ports.

One stack for the module (conftest.stack); the last test stops and removes it, so the order is the file's.
"""

from __future__ import annotations

import io
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from PIL import Image

from tests.containers.stack import MODEL, PROJECT, Stack, container_logs, project_resources, volumes

DRAIN_STARTED = re.compile(r"draining \d+ gateway replica\(s\) of \S+: (\d+) requests in flight")


def classify(stack: Stack, **request) -> httpx.Response:
    return httpx.post(f"{stack.api_url}/v1/classify", params={"model": MODEL}, timeout=120, **request)


def test_the_health_check_turns_healthy(stack: Stack) -> None:
    assert stack.inspect("ray-head", "{{.State.Health.Status}}") == "healthy"
    assert stack.inspect("prometheus", "{{.State.Health.Status}}") == "healthy"


def test_containers_run_as_non_root(stack: Stack) -> None:
    assert stack.compose("exec", "-T", "ray-head", "id", "-u").strip() == "10001"
    assert stack.compose("exec", "-T", "prometheus", "id", "-u").strip() == "65534"


def test_ready_with_the_checkpoint_from_the_volume(stack: Stack) -> None:
    assert httpx.get(f"{stack.api_url}/readyz", timeout=10).status_code == 200
    models = httpx.get(f"{stack.api_url}/v1/models", headers=stack.auth, timeout=10).json()
    loaded = {card["id"]: card for card in models["models"]}
    assert set(loaded) == {MODEL}
    assert loaded[MODEL]["weights"] == "checkpoint"


def test_a_photo_is_classified_raw_and_multipart(stack: Stack, coffee_jpeg: bytes) -> None:
    raw = classify(stack, content=coffee_jpeg, headers={**stack.auth, "Content-Type": "image/jpeg"})
    multipart = classify(stack, files={"file": ("coffee.jpg", coffee_jpeg, "image/jpeg")}, headers=stack.auth)
    assert raw.status_code == 200, raw.text
    assert multipart.status_code == 200, multipart.text
    top5 = [(p["class_index"], p["label"]) for p in raw.json()["predictions"]]
    assert len(top5) == 5 and raw.json()["weights"] == "checkpoint"
    assert [(p["class_index"], p["label"]) for p in multipart.json()["predictions"]] == top5


def test_bad_input_gets_a_4xx_json_error(stack: Stack) -> None:
    answer = classify(stack, content=b"not an image at all", headers={**stack.auth, "Content-Type": "image/jpeg"})
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["error"]["type"] == "invalid_image"


def test_api_keys_come_from_the_compose_secret(stack: Stack, coffee_jpeg: bytes) -> None:
    for headers in ({}, {"Authorization": "Bearer hk_not-a-key-of-the-secret"}):
        answer = classify(stack, content=coffee_jpeg, headers={**headers, "Content-Type": "image/jpeg"})
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["type"] == "unauthorized"


def test_prometheus_holds_the_apps_latency(stack: Stack, coffee_jpeg: bytes) -> None:
    """Prometheus finds the head by compose's DNS (deploy/prometheus/prometheus.yml) and scrapes its Ray metrics."""
    classify(stack, content=coffee_jpeg, headers={**stack.auth, "Content-Type": "image/jpeg"}).raise_for_status()
    query = f'ray_hornet_request_latency_seconds_count{{model="{MODEL}"}}'
    deadline = time.monotonic() + 120
    while not (series := stack.prometheus_query(query)) and time.monotonic() < deadline:
        time.sleep(5)
    assert series, f"Prometheus has no {query} after 120 s"
    assert sum(float(s["value"][1]) for s in series) >= 1


def test_stop_answers_requests_in_flight_then_down_leaves_nothing(
    stack: Stack, coffee_jpeg: bytes, volumes_before: set[str]
) -> None:
    """Clients send 12 MP photos until the drain has counted what is in flight; every request they sent gets its
    200. They go on sending after the stop began: the drain starts a Python process that connects to Ray (seconds),
    and a request must still be on its way when it counts, or the drain went untested. Six clients: the gateway's
    heavy decode lane (one thread, eight waiting) answers a seventh and more with 503 at once."""
    photo = Image.open(io.BytesIO(coffee_jpeg)).resize((4000, 3000))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=90)
    request = {"content": buffer.getvalue(), "headers": {**stack.auth, "Content-Type": "image/jpeg"}}
    head = stack.container("ray-head")
    stopping = threading.Event()
    outcomes: list[int | str] = []

    def client() -> None:
        while not stopping.is_set():
            try:
                answer = classify(stack, **request)
                outcomes.append(
                    answer.status_code if answer.status_code == 200 else f"{answer.status_code} {answer.text}"
                )
            except httpx.HTTPError as exc:
                outcomes.append(type(exc).__name__)

    clients = [threading.Thread(target=client) for _ in range(6)]
    for thread in clients:
        thread.start()
    time.sleep(4)  # requests queue up in the gateways and the classifier
    with ThreadPoolExecutor(1) as pool:
        began = time.monotonic()
        stop = pool.submit(stack.compose, "stop", "ray-head", timeout=120)
        draining = None
        while draining is None and not stop.done() and time.monotonic() - began < 90:
            time.sleep(0.2)
            draining = DRAIN_STARTED.search(container_logs(head))
        stopping.set()
        stop.result()
    draining = draining or DRAIN_STARTED.search(container_logs(head))  # the stop may end between two reads
    stop_s = time.monotonic() - began
    for thread in clients:
        thread.join(timeout=120)
    logs = stack.compose("logs", "--no-color", "ray-head")
    assert draining, f"the drain never began:\n{logs[-3000:]}"
    print(f"stop took {stop_s:.1f} s; {draining.group(0)}; outcomes {sorted(map(str, outcomes))}")
    assert outcomes and all(outcome == 200 for outcome in outcomes), outcomes
    assert "gateways drained" in logs, logs[-3000:]
    assert int(draining.group(1)) >= 1, "no request was in flight when the drain began: the drain went untested"
    assert stack.inspect("ray-head", "{{.State.ExitCode}}") == "0"

    stack.compose("down")
    assert project_resources("container") == [] and project_resources("network") == []
    # Named volumes stay until `down -v`; an anonymous one (a VOLUME no mount covers) would be left behind.
    assert volumes() - volumes_before == set(project_resources("volume")), "anonymous volumes left behind"
    assert {name.removeprefix(f"{PROJECT}_") for name in project_resources("volume")} <= {
        "hub-cache",
        "prometheus-data",
    }
