"""A second app with the guards turned up, beside the session's service: API keys with a token bucket per
key, and decode lanes small enough to fill (light: 2 threads + 4 waiting; heavy: 1 thread, no queue)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from loadtest.http_load import wait_ready
from service.config import Settings
from service.http.auth import hash_key
from tests.support.helpers import api_error, poll
from tests.support.images import encode, photo, webp_bomb

from .live import TEST_SETTINGS

PREFIX = "/guarded"
KEYS = {"alice": "hsk_alice-" + "a" * 32, "bob": "hsk_bob-" + "b" * 32, "mallory": "hsk_mallory-" + "m" * 32}
WRONG_KEY = "hsk_wrong-" + "w" * 32
RATE_PER_S, BURST = 2, 6
JPEG = encode(photo(320, 240, seed=5), "JPEG")
RAW = {"Content-Type": "image/jpeg"}
# 11.6 MP, just under WebP's decode budget (12 MP), in a few hundred bytes: a heavy-lane image.
WEBP_BOMB = webp_bomb(3400)


def _auth(key_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[key_id]}"}


@pytest.fixture(scope="module")
def guarded(service, tmp_path_factory):
    from ray import serve

    from service.app import build_app

    keys_file = tmp_path_factory.mktemp("auth") / "keys"
    keys_file.write_text("".join(f"{key_id} {hash_key(key)}\n" for key_id, key in KEYS.items()))
    settings = Settings.model_validate({
        **TEST_SETTINGS, "models": ["hornet-t"], "per_model": {}, "app_name": "guarded",
        "gateway": {"decode_threads": 2, "decode_queue": 4, "heavy_decode_threads": 1, "heavy_decode_queue": 0,
                    "heavy_decode_pixels": 4_000_000},
        "auth": {"enabled": True, "keys_file": str(keys_file), "rate_per_s": RATE_PER_S, "burst": BURST},
    })  # fmt: skip
    serve.run(build_app(settings.model_dump(mode="json")), name="guarded", route_prefix=PREFIX)
    wait_ready(service.base_url + PREFIX, timeout_s=120)
    client = httpx.Client(base_url=service.base_url + PREFIX, timeout=60)
    yield client
    client.close()
    serve.delete("guarded")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": f"Bearer {WRONG_KEY}"}, {"Authorization": f"Basic {KEYS['alice']}"},
     {"Authorization": "Bearer"}],
    ids=["no key", "wrong key", "basic scheme", "empty bearer"],
)  # fmt: skip
def test_without_a_valid_key_the_api_answers_401_json(guarded, headers):
    for response in (
        guarded.post("/v1/classify", content=JPEG, headers={**RAW, **headers}),
        guarded.get("/v1/models", headers=headers),
        guarded.get("/v1/models/hornet-t", headers=headers),
    ):
        assert "Bearer" in response.headers["www-authenticate"]
        api_error(response, 401, "unauthorized")


def test_health_readiness_and_the_page_need_no_key(guarded):
    assert guarded.get("/healthz").json() == {"status": "ok"}
    assert guarded.get("/readyz").json()["models"] == ["hornet-t"]
    assert "<title>hornet-serve" in guarded.get("/").text


def test_a_valid_key_classifies_and_lists(guarded):
    r = guarded.post("/v1/classify?model=hornet-t", content=JPEG, headers={**RAW, **_auth("alice")})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 5
    assert [m["id"] for m in guarded.get("/v1/models", headers=_auth("alice")).json()["models"]] == ["hornet-t"]


def test_a_key_over_its_rate_gets_429_with_retry_after_and_other_keys_do_not(guarded):
    statuses = [guarded.get("/v1/models", headers=_auth("mallory")).status_code for _ in range(BURST + 4)]
    assert statuses[:BURST] == [200] * BURST and 429 in statuses[BURST:]
    limited = guarded.get("/v1/models", headers=_auth("mallory"))
    api_error(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    assert guarded.get("/v1/models", headers=_auth("bob")).status_code == 200
    time.sleep(int(limited.headers["retry-after"]))
    assert guarded.get("/v1/models", headers=_auth("mallory")).status_code == 200


def test_metrics_count_requests_by_key_id_and_never_carry_a_key(guarded, service):
    guarded.post("/v1/classify", content=JPEG, headers={**RAW, **_auth("alice")})
    guarded.post("/v1/classify", content=JPEG, headers=RAW)

    def by_key() -> dict[tuple[str, str], float]:
        samples = service.metric_samples("ray_hornet_key_requests_total")
        return {(s["key_id"], s["status"]): v for s, v in samples if s.get("application") in (None, "guarded")}

    counts = poll(lambda: (c := by_key()).get(("alice", "200")) and c.get(("unauthenticated", "401")) and c)
    assert counts, by_key()
    exported = httpx.get(service.metrics_url, timeout=10).text
    assert not any(key in exported for key in [*KEYS.values(), WRONG_KEY])


def test_no_key_is_ever_written_to_a_log(guarded):
    import ray

    guarded.get("/v1/models", headers={"Authorization": f"Bearer {WRONG_KEY}"})
    guarded.get("/v1/models", headers=_auth("bob"))
    time.sleep(2)  # Serve buffers its request logs briefly
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    files = [p for p in logs.rglob("*") if p.is_file()]
    assert files, "no Ray logs to search"
    secrets = [key.encode() for key in [*KEYS.values(), WRONG_KEY]]
    leaked = [p.name for p in files if any(secret in p.read_bytes() for secret in secrets)]
    assert not leaked


def test_bombs_fill_only_the_heavy_lane_and_light_uploads_are_still_served(guarded, service):
    """Four WebP bombs at once: one decodes on the heavy lane, the others get 503 + Retry-After at once
    (no queue); a normal photo sent meanwhile takes the light lane and is served."""
    outcomes: list[httpx.Response] = []

    def bomb() -> None:
        with httpx.Client(base_url=guarded.base_url, timeout=60) as client:
            outcomes.append(client.post("/v1/classify", content=WEBP_BOMB,
                                        headers={"Content-Type": "image/webp", **_auth("bob")}))  # fmt: skip

    threads = [threading.Thread(target=bomb) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    light = guarded.post("/v1/classify", content=JPEG, headers={**RAW, **_auth("alice")})
    for t in threads:
        t.join(timeout=60)
    assert light.status_code == 200, light.text
    statuses = sorted(r.status_code for r in outcomes)
    assert 200 in statuses and 503 in statuses and set(statuses) <= {200, 503}, statuses
    shed = next(r for r in outcomes if r.status_code == 503)
    assert "decode-heavy queue is full" in api_error(shed, 503, "unavailable")["message"]
    assert shed.headers["retry-after"] == "1"
    refusals = poll(lambda: {s["reason"]: v for s, v in service.metric_samples("ray_hornet_decode_refusals_total")
                             if s["reason"] == "queue_full"})  # fmt: skip
    assert refusals.get("queue_full", 0) >= 1


def test_the_page_asks_for_a_key_then_lists_the_models(guarded, browser_page):
    page = browser_page
    page.goto(str(guarded.base_url))
    page.wait_for_selector("#key-form:not(.hidden)")
    page.fill("#key", WRONG_KEY)
    page.click("#key-form button")
    page.wait_for_function("document.getElementById('key-text').textContent.includes('not accepted')")
    assert page.eval_on_selector_all("#model option", "els => els.length") == 0
    page.fill("#key", KEYS["alice"])
    page.click("#key-form button")
    page.wait_for_selector("#model option", state="attached")
    assert page.eval_on_selector_all("#model option", "els => els.map(e => e.value)") == ["hornet-t"]
    assert page.is_hidden("#key-form")
