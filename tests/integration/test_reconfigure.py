"""Live reconfiguration: a redeploy that changes only what Serve applies to running replicas (the
deployments' entries: replicas, batching through user_config) keeps every running replica."""

from __future__ import annotations

import asyncio

import httpx

from service.config import Settings
from service.daemon.local import deploy, serve_actors
from tests.support.helpers import poll

from .live import JPEG, JPEG_HEADERS, burst


def _replicas(service, model_id: str) -> int:
    cards = service.client.get("/v1/models").json()["models"]
    return next(c["replicas"] for c in cards if c["id"] == model_id)


def test_batching_and_replica_count_change_on_the_running_replicas(service):
    original: Settings = service.settings
    before = serve_actors("#hornet-t#") | serve_actors("#Gateway#") | serve_actors("#hornet-l-gf384#")
    changed = original.model_copy(
        update={"per_model": {**original.per_model, "hornet-t": {"num_replicas": 2, "batch": {"max_batch_size": 2}}}}
    )
    larger_before, _ = service.batches_above("hornet-t", 2)
    deploy(Settings.model_validate(changed.model_dump()))
    try:
        assert poll(lambda: _replicas(service, "hornet-t") == 2, timeout_s=120), "the second replica never ran"
        after = serve_actors("#hornet-t#") | serve_actors("#Gateway#") | serve_actors("#hornet-l-gf384#")
        assert before < after, f"a running replica was replaced: {sorted(before - after)}"
        for _ in range(3):
            responses = asyncio.run(burst(service.base_url, 8))
            assert [r.status_code for r in responses] == [200] * 8
        _, total = poll(lambda: (lambda above, t: (above, t) if t > 0 else None)(*service.batches_above("hornet-t", 2)))
        larger_after, _ = service.batches_above("hornet-t", 2)
        assert larger_after == larger_before, "a batch above the new max_batch_size ran after the change"
    finally:
        deploy(original)
        assert poll(lambda: _replicas(service, "hornet-t") == 1, timeout_s=120)
    assert (
        httpx.post(f"{service.base_url}/v1/classify", content=JPEG, headers=JPEG_HEADERS, timeout=60).status_code == 200
    )
