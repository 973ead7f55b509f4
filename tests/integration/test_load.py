"""Batching, backpressure, timeouts, replica failure and metrics under real concurrent load."""

import asyncio
import threading
import time
from pathlib import Path

import httpx

from service.config import Settings
from service.daemon.local import serve_actors
from tests.support.helpers import poll

from .live import JPEG, JPEG_HEADERS, TEST_SETTINGS, burst


def test_concurrent_requests_form_real_batches(service):
    for _ in range(3):
        responses = asyncio.run(burst(service.base_url, 4))
        assert [r.status_code for r in responses] == [200] * 4
    larger = poll(lambda: service.batches_above("hornet-t", 1)[0])
    assert larger > 0, "no batch larger than one request was ever executed"


def test_backpressure_answers_503_with_retry_after_and_recovers(service):
    responses = asyncio.run(burst(service.base_url, 64))
    statuses = [r.status_code for r in responses]
    rejected = [r for r in responses if r.status_code == 503]
    assert rejected, f"64 concurrent requests against 4 running + 8 queued were all accepted: {statuses}"
    assert set(statuses) <= {200, 503}
    for r in rejected:
        assert r.headers["retry-after"] == "1" and r.json()["error"]["type"] == "unavailable"
    assert statuses.count(200) >= 6
    assert all(len(r.json()["predictions"]) == 5 for r in responses if r.status_code == 200)
    after = service.client.post("/v1/classify?model=hornet-t", content=JPEG, headers=JPEG_HEADERS)
    assert after.status_code == 200


def test_request_metrics_by_model_and_status(service):
    service.client.post("/v1/classify?model=hornet-t", content=b"junk", headers=JPEG_HEADERS)
    service.client.post("/v1/classify?model=hornet-t", content=JPEG, headers=JPEG_HEADERS)

    def counts():
        samples = service.metric_samples("ray_hornet_requests_total")
        by_status = {(s["model"], s["status"]): v for s, v in samples}
        return by_status if ("hornet-t", "400") in by_status and ("hornet-t", "200") in by_status else None

    by_status = poll(counts)
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
    serve.run(build_app(settings.model_dump(mode="json")), name="slow", route_prefix="/slow")
    try:
        started = time.perf_counter()
        r = service.client.post("/slow/v1/classify", content=JPEG, headers=JPEG_HEADERS)
        elapsed = time.perf_counter() - started
        assert r.status_code == 504 and r.json()["error"]["type"] == "timeout", r.text
        assert elapsed < 2.0
    finally:
        serve.delete("slow")


class _BackgroundLoad:
    """Closed-loop requests from `users` threads until stopped; every outcome is kept."""

    def __init__(self, base_url: str, users: int = 3) -> None:
        self.outcomes: list = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._user, args=(base_url,), daemon=True) for _ in range(users)]

    def _user(self, base_url: str) -> None:
        with httpx.Client(base_url=base_url, timeout=120) as client:
            while not self._stop.is_set():
                try:
                    r = client.post("/v1/classify?model=hornet-t", content=JPEG, headers=JPEG_HEADERS)
                    self.outcomes.append(r.status_code)
                except httpx.TransportError as exc:
                    self.outcomes.append(type(exc).__name__)

    def __enter__(self) -> "_BackgroundLoad":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=150)


def _kill_under_load_and_recover(service, deployment: str) -> tuple[float, list]:
    """Kill the only replica of `deployment` while 3 users keep sending requests; wait until a new replica
    serves. Returns the seconds that took and every outcome of the load meanwhile."""
    import ray

    marker = f"hornet#{deployment}#"
    (victim,) = serve_actors(marker)
    with _BackgroundLoad(service.base_url) as load:
        poll(lambda: len(load.outcomes) >= 3, timeout_s=30, interval_s=0.2)
        served_before = len(load.outcomes)
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        started = time.perf_counter()

        def recovered():
            return serve_actors(marker) - {victim} and load.outcomes[-3:] == [200, 200, 200]

        ok = poll(recovered, timeout_s=90, interval_s=0.5)
        seconds = time.perf_counter() - started
    outcomes = load.outcomes[served_before:]
    assert ok, f"no recovery of {deployment}; outcomes: {outcomes}"
    failed = [o for o in outcomes if o != 200]
    print(f"{deployment} replica killed under load: recovered in {seconds:.1f} s; {len(outcomes)} requests "
          f"meanwhile, {len(failed)} failed: {failed}")  # fmt: skip
    return seconds, outcomes


def test_a_killed_replica_is_replaced_and_the_service_recovers(service):
    _, outcomes = _kill_under_load_and_recover(service, "hornet-t")
    assert set(outcomes) <= {200, 503}, outcomes
    assert len([o for o in outcomes if o != 200]) <= 30, outcomes
    other = service.client.post("/v1/classify?model=hornet-l-gf384", content=JPEG, headers=JPEG_HEADERS)
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
    serve.run(build_app(settings.model_dump(mode="json")), name="badckpt", route_prefix="/badckpt")
    try:
        c = service.client
        ready = c.get("/badckpt/readyz")
        assert ready.status_code == 503 and "hornet-s failed to load: cannot read checkpoint" in ready.text
        assert "hornet-s.pth" in ready.text
        cards = {m["id"]: m for m in c.get("/badckpt/v1/models").json()["models"]}
        assert cards["hornet-t"]["ready"] and cards["hornet-t"]["weights"] == "checkpoint"
        assert not cards["hornet-s"]["ready"] and "cannot read checkpoint" in cards["hornet-s"]["not_ready_reason"]
        ok = c.post("/badckpt/v1/classify?model=hornet-t", content=JPEG, headers=JPEG_HEADERS)
        assert ok.status_code == 200 and ok.json()["weights"] == "checkpoint"
        down = c.post("/badckpt/v1/classify?model=hornet-s", content=JPEG, headers=JPEG_HEADERS)
        assert down.status_code == 503 and "cannot read checkpoint" in down.json()["error"]["message"]
        assert down.headers["retry-after"] == "1"
    finally:
        serve.delete("badckpt")


def model_state(name: str) -> dict:
    from model import create_model

    return create_model(name).state_dict()


def test_a_killed_gateway_replica_is_replaced_and_the_service_recovers(service):
    _, outcomes = _kill_under_load_and_recover(service, "Gateway")
    assert set(outcomes) <= {200, 503}, outcomes  # the proxy's own 500 for a dead replica becomes a 503
    assert len([o for o in outcomes if o != 200]) <= 30, outcomes


def _replica_rss_mb() -> dict[int, float]:
    """Resident memory of every Serve replica process of the app (Ray titles them ServeReplica:<app>:...)."""
    rss = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"ServeReplica:hornet:" in (proc / "cmdline").read_bytes():
                kb = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("VmRSS"))
                rss[int(proc.name)] = int(kb.split()[1]) / 1024
        except (OSError, StopIteration):
            continue
    return rss


async def _open_loop(base_url: str, rate_per_s: float, seconds: float) -> list[httpx.Response]:
    """Requests sent on a fixed schedule, whether or not earlier ones have been answered."""
    async with httpx.AsyncClient(base_url=base_url, timeout=180,
                                 limits=httpx.Limits(max_connections=None)) as client:  # fmt: skip
        tasks = []
        for _ in range(int(rate_per_s * seconds)):
            tasks.append(
                asyncio.create_task(client.post("/v1/classify?model=hornet-t", content=JPEG, headers=JPEG_HEADERS))
            )
            await asyncio.sleep(1 / rate_per_s)
        return await asyncio.gather(*tasks)


def test_an_open_loop_burst_far_above_capacity_sheds_load_and_recovers(service):
    def single_latency() -> float:
        t0 = time.perf_counter()
        assert service.client.post("/v1/classify?model=hornet-t", content=JPEG, headers=JPEG_HEADERS).status_code == 200
        return time.perf_counter() - t0

    baseline = min(single_latency() for _ in range(3))
    rss_before = _replica_rss_mb()
    responses = asyncio.run(_open_loop(service.base_url, rate_per_s=80, seconds=4))  # ~10x hornet-t's capacity
    rss_after = _replica_rss_mb()
    statuses = [r.status_code for r in responses]
    accepted = [r for r in responses if r.status_code == 200]
    shed = [r for r in responses if r.status_code == 503]
    assert set(statuses) <= {200, 503}, statuses
    assert shed and accepted
    assert all(r.headers["retry-after"] == "1" for r in shed)
    assert all(len(r.json()["predictions"]) == 5 for r in accepted)
    growth = {pid: rss_after[pid] - rss_before[pid] for pid in rss_before if pid in rss_after}
    assert growth and max(growth.values()) < 300, growth
    after = min(single_latency() for _ in range(3))
    print(f"open loop 80 req/s x 4 s: {len(accepted)} served, {len(shed)} shed with 503; replica RSS growth "
          f"max {max(growth.values()):.0f} MB; single-request latency {baseline * 1e3:.0f} ms before, "
          f"{after * 1e3:.0f} ms after")  # fmt: skip
    assert after < 3 * baseline + 0.1
