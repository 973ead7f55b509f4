"""The CPU image and the compose stack under a real Docker engine, checked through the published ports.

One stack for the module (conftest.stack); the last test stops and removes it, so the order is the file's.
"""

from __future__ import annotations

import io
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
from PIL import Image

from tests.containers.stack import MODEL, PROJECT, Stack, container_logs, project_resources, volumes

DRAIN_STARTED = re.compile(r"draining \S+: \d+ replica\(s\), \d+ requests in flight")


def logged_at(pattern: re.Pattern[str], logs: str) -> float:
    """When the engine took the first line matching `pattern` (`docker logs --timestamps`), as time.time()."""
    line = next((line for line in logs.splitlines() if pattern.search(line)), None)
    assert line, f"nothing in the log matches {pattern.pattern!r}:\n{logs[-3000:]}"
    stamp = line.split(" ", 1)[0]  # RFC 3339 with nanoseconds: 2026-12-04T14:16:20.359035114Z
    return datetime.fromisoformat(stamp[:26] + "+00:00").timestamp()


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
    """Clients send 12 MP photos until the drain has begun; every request they sent gets its 200, and some were on
    their way when it began (the clients' clock against the engine's timestamp of the drain's first log line).
    They go on sending after the stop began: the drain starts a Python process that connects to Ray (seconds).
    Six clients: the gateway's heavy decode lane (one thread, eight waiting) answers a seventh and more with 503."""
    photo = Image.open(io.BytesIO(coffee_jpeg)).resize((4000, 3000))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=90)
    request = {"content": buffer.getvalue(), "headers": {**stack.auth, "Content-Type": "image/jpeg"}}
    head = stack.container("ray-head")
    stopping = threading.Event()
    requests: list[tuple[float, float, int | str]] = []  # sent, answered (time.time()), outcome

    def client() -> None:
        while not stopping.is_set():
            sent = time.time()
            try:
                answer = classify(stack, **request)
                outcome = answer.status_code if answer.status_code == 200 else f"{answer.status_code} {answer.text}"
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            requests.append((sent, time.time(), outcome))

    clients = [threading.Thread(target=client) for _ in range(6)]
    for thread in clients:
        thread.start()
    time.sleep(4)  # requests queue up in the gateways and the classifier
    with ThreadPoolExecutor(1) as pool:
        began = time.monotonic()
        stop = pool.submit(stack.compose, "stop", "ray-head", timeout=120)
        while not DRAIN_STARTED.search(container_logs(head)) and not stop.done() and time.monotonic() - began < 90:
            time.sleep(0.2)
        stopping.set()
        stop.result()
    stop_s = time.monotonic() - began
    for thread in clients:
        thread.join(timeout=120)
    logs = container_logs(head, timestamps=True)
    drain_began = logged_at(DRAIN_STARTED, logs)
    serve_stopped = logged_at(re.compile("serve shut down"), logs)
    outcomes = [outcome for _, _, outcome in requests]
    on_their_way = [(sent, answered) for sent, answered, _ in requests if sent < drain_began < answered]
    print(f"stop took {stop_s:.1f} s; {len(on_their_way)} requests on their way when the drain began "
          f"({DRAIN_STARTED.search(logs).group(0)}); outcomes {sorted(map(str, outcomes))}")  # fmt: skip
    assert outcomes and all(outcome == 200 for outcome in outcomes), outcomes
    assert on_their_way, f"no request was on its way when the drain began: it went untested\n{logs[-3000:]}"
    assert max(answered for _, answered, _ in requests) < serve_stopped, "Serve shut down before the last answer"
    assert " drained in " in logs, logs[-3000:]
    assert stack.inspect("ray-head", "{{.State.ExitCode}}") == "0"

    stack.compose("down")
    assert project_resources("container") == [] and project_resources("network") == []
    # Named volumes stay until `down -v`; an anonymous one (a VOLUME no mount covers) would be left behind.
    assert volumes() - volumes_before == set(project_resources("volume")), "anonymous volumes left behind"
    assert {name.removeprefix(f"{PROJECT}_") for name in project_resources("volume")} <= {
        "hub-cache",
        "prometheus-data",
    }
