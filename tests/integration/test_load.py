"""Batching, backpressure, timeouts, replica failure and metrics under real concurrent load."""

import asyncio
import time

import httpx
import pytest

from images import encode, photo
from service.config import Settings

from .conftest import TEST_SETTINGS

pytestmark = pytest.mark.integration

JPEG = encode(photo(320, 240, seed=5), "JPEG", quality=90)
HEADERS = {"Content-Type": "image/jpeg"}


async def _burst(base_url: str, n: int, path: str = "/v1/classify?model=hornet-t") -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        return await asyncio.gather(*(client.post(path, content=JPEG, headers=HEADERS) for _ in range(n)))


def _poll(condition, timeout_s: float = 30, interval_s: float = 0.5):
    deadline = time.time() + timeout_s
    while True:
        value = condition()
        if value or time.time() > deadline:
            return value
        time.sleep(interval_s)


def _batch_histogram(service) -> tuple[float, float]:
    """(batches of size 1, all batches) for hornet-t, summed over replicas."""
    buckets = service.metric_samples("ray_hornet_batch_size_bucket")
    counts = service.metric_samples("ray_hornet_batch_size_count")
    singles = sum(v for labels, v in buckets if labels.get("model") == "hornet-t" and float(labels["le"]) == 1.0)
    total = sum(v for labels, v in counts if labels.get("model") == "hornet-t")
    return singles, total


def test_concurrent_requests_form_real_batches(service):
    for _ in range(3):
        responses = asyncio.run(_burst(service.base_url, 4))
        assert [r.status_code for r in responses] == [200] * 4
    singles, total = _poll(lambda: (lambda s, t: (s, t) if t - s > 0 else None)(*_batch_histogram(service)))
    assert total > singles, "no batch larger than one request was ever executed"


def test_backpressure_answers_503_with_retry_after_and_recovers(service):
    responses = asyncio.run(_burst(service.base_url, 64))
    statuses = [r.status_code for r in responses]
    rejected = [r for r in responses if r.status_code == 503]
    assert rejected, f"64 concurrent requests against 4 running + 8 queued were all accepted: {statuses}"
    assert set(statuses) <= {200, 503}
    for r in rejected:
        assert r.headers["retry-after"] == "1" and r.json()["error"]["type"] == "unavailable"
    assert statuses.count(200) >= 6
    assert all(len(r.json()["predictions"]) == 5 for r in responses if r.status_code == 200)
    after = service.client.post("/v1/classify?model=hornet-t", content=JPEG, headers=HEADERS)
    assert after.status_code == 200


def test_request_metrics_by_model_and_status(service):
    service.client.post("/v1/classify?model=hornet-t", content=b"junk", headers=HEADERS)
    service.client.post("/v1/classify?model=hornet-t", content=JPEG, headers=HEADERS)

    def counts():
        samples = service.metric_samples("ray_hornet_requests_total")
        by_status = {(s["model"], s["status"]): v for s, v in samples}
        return by_status if ("hornet-t", "400") in by_status and ("hornet-t", "200") in by_status else None

    by_status = _poll(counts)
    assert by_status and by_status[("hornet-t", "200")] >= 1 and by_status[("hornet-t", "400")] >= 1
    names = {"ray_hornet_decode_seconds_count", "ray_hornet_queue_wait_seconds_count",
             "ray_hornet_inference_seconds_count", "ray_hornet_image_bytes_count",
             "ray_hornet_request_latency_seconds_count"}  # fmt: skip
    for name in names:
        assert any(s["model"] == "hornet-t" and v > 0 for s, v in service.metric_samples(name)), name


def test_a_slow_model_gets_504_within_the_configured_time(service):
    from ray import serve

    from service.app import build_app

    settings = Settings.model_validate(
        {
            **TEST_SETTINGS,
            "models": ["hornet-t"],
            "per_model": {},
            "app_name": "slow",
            "timeouts": {"inference_s": 0.001},
        }
    )
    serve.run(build_app(settings), name="slow", route_prefix="/slow")
    try:
        started = time.perf_counter()
        r = service.client.post("/slow/v1/classify", content=JPEG, headers=HEADERS)
        elapsed = time.perf_counter() - started
        assert r.status_code == 504 and r.json()["error"]["type"] == "timeout", r.text
        assert elapsed < 2.0
    finally:
        serve.delete("slow")


def test_a_killed_replica_is_replaced_and_the_service_recovers(service):
    import ray

    def replicas() -> set[str]:
        named = ray.util.list_named_actors(all_namespaces=True)
        return {a["name"] for a in named if a["namespace"] == "serve" and "hornet#hornet-t#" in a["name"]}

    (victim,) = replicas()
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    outcomes = []

    def recovered():
        r = service.client.post("/v1/classify?model=hornet-t", content=JPEG, headers=HEADERS)
        outcomes.append(r.status_code)
        return r.status_code == 200 and replicas() - {victim}

    assert _poll(recovered, timeout_s=90, interval_s=1), f"no recovery; statuses seen: {outcomes}"
    assert set(outcomes) <= {200, 503}, outcomes
    other = service.client.post("/v1/classify?model=hornet-l-gf384", content=JPEG, headers=HEADERS)
    assert other.status_code == 200


def test_a_bad_checkpoint_takes_out_only_its_variant_and_says_why(service, tmp_path):
    import torch
    from ray import serve

    from service.app import build_app

    good, bad = tmp_path / "hornet-t.pth", tmp_path / "hornet-s.pth"
    torch.save(model_state("hornet-t"), good)
    bad.write_bytes(good.read_bytes()[:1000])  # truncated: unreadable
    settings = Settings.model_validate({
        **TEST_SETTINGS, "models": ["hornet-t", "hornet-s"], "app_name": "badckpt", "weights_policy": "required",
        "per_model": {"hornet-t": {"weights": str(good)}, "hornet-s": {"weights": str(bad)}},
    })  # fmt: skip
    serve.run(build_app(settings), name="badckpt", route_prefix="/badckpt")
    try:
        c = service.client
        ready = c.get("/badckpt/readyz")
        assert ready.status_code == 503 and "hornet-s failed to load: cannot read checkpoint" in ready.text
        assert "hornet-s.pth" in ready.text
        cards = {m["id"]: m for m in c.get("/badckpt/v1/models").json()["models"]}
        assert cards["hornet-t"]["ready"] and cards["hornet-t"]["weights"] == "checkpoint"
        assert not cards["hornet-s"]["ready"] and "cannot read checkpoint" in cards["hornet-s"]["not_ready_reason"]
        ok = c.post("/badckpt/v1/classify?model=hornet-t", content=JPEG, headers=HEADERS)
        assert ok.status_code == 200 and ok.json()["weights"] == "checkpoint"
        down = c.post("/badckpt/v1/classify?model=hornet-s", content=JPEG, headers=HEADERS)
        assert down.status_code == 503 and "cannot read checkpoint" in down.json()["error"]["message"]
        assert down.headers["retry-after"] == "1"
    finally:
        serve.delete("badckpt")


def model_state(name: str) -> dict:
    from model import create_model

    return create_model(name).state_dict()


def test_a_killed_gateway_replica_is_replaced_and_the_service_recovers(service):
    import ray

    def gateways() -> set[str]:
        named = ray.util.list_named_actors(all_namespaces=True)
        return {a["name"] for a in named if a["namespace"] == "serve" and "hornet#Gateway#" in a["name"]}

    (victim,) = gateways()
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    outcomes = []

    def recovered():
        try:
            r = service.client.post("/v1/classify?model=hornet-t", content=JPEG, headers=HEADERS)
            outcomes.append(r.status_code)
        except httpx.TransportError as exc:
            outcomes.append(type(exc).__name__)
            return False
        return r.status_code == 200 and gateways() - {victim}

    assert _poll(recovered, timeout_s=90, interval_s=1), f"no recovery; outcomes: {outcomes}"
    failed = [o for o in outcomes if o != 200]
    print(f"gateway kill: {len(failed)} failed requests before recovery: {failed}")
    assert len(failed) <= 60
