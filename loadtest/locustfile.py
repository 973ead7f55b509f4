"""Locust users for hornet-serve: real-looking photos, a weighted model mix, raw and multipart uploads,
and a small share of bad requests that must get their documented 4xx (counted as successes when they do).

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless -u 16 -r 4 -t 2m

Environment:
    HORNET_LOAD_MODELS     model mix as id:weight pairs (default "hornet-t:9,hornet-l-gf384:1")
    HORNET_LOAD_CORPUS     directory of images (default loadtest/corpus, generated when empty)
    HORNET_LOAD_BAD_SHARE  share of deliberately bad requests (default 0.05): every 1/share-th request of a user,
                           its first one included, so that even a short run sends some
    HORNET_API_KEY         sent as `Authorization: Bearer <key>` when the service requires keys
    HORNET_LOAD_LOG        a CSV file to append every request to (time, name, status, ms, ok): the soak's record
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from locust import HttpUser, between, events, task
from PIL import Image

from loadtest.corpus import make_corpus
from tests.support.images import encode, photo


def model_mix(spec: str) -> tuple[list[str], list[float]]:
    pairs = [item.split(":") for item in spec.split(",") if item.strip()]
    return [name.strip() for name, _ in pairs], [float(weight) for _, weight in pairs]


MODELS, WEIGHTS = model_mix(os.environ.get("HORNET_LOAD_MODELS", "hornet-t:9,hornet-l-gf384:1"))
BAD_SHARE = float(os.environ.get("HORNET_LOAD_BAD_SHARE", "0.05"))
BAD_EVERY = round(1 / BAD_SHARE) if BAD_SHARE > 0 else 0
CORPUS_DIR = Path(os.environ.get("HORNET_LOAD_CORPUS", Path(__file__).parent / "corpus"))
IMAGES = [(p.name, p.read_bytes()) for p in sorted(CORPUS_DIR.glob("*")) if p.is_file()] or [
    (p.name, p.read_bytes()) for p in make_corpus(CORPUS_DIR)
]
AUTH = {"Authorization": f"Bearer {os.environ['HORNET_API_KEY']}"} if os.environ.get("HORNET_API_KEY") else {}
# (what, query, body, content type, expected status)
BAD_REQUESTS = [
    ("unknown model", "model=resnet50", IMAGES[0][1], "image/jpeg", 404),
    ("not an image", "model=hornet-t", b"this is not an image", "image/jpeg", 400),
    ("top_k=0", "model=hornet-t&top_k=0", IMAGES[0][1], "image/jpeg", 422),
    ("text body", "model=hornet-t", b"hello", "text/plain", 415),
    ("undocumented format (EPS)", "model=hornet-t", encode(photo(64, 64), "EPS"), "image/eps", 400),
    ("WebP bomb over its decode budget", "model=hornet-t",
     encode(Image.new("RGB", (3500, 3500), (9, 9, 9)), "WEBP", lossless=True), "image/webp", 413),
]  # fmt: skip
LOG_PATH = os.environ.get("HORNET_LOAD_LOG")


if LOG_PATH:
    _log = open(LOG_PATH, "a", buffering=1)  # noqa: SIM115 (open for the whole run, one line per request)

    @events.request.add_listener
    def _log_request(name: str, response_time: float, response, exception, **_: object) -> None:
        status = response.status_code if response is not None else 0
        _log.write(f"{time.time():.3f},{name},{status},{response_time:.1f},{int(exception is None)}\n")


class ClassifyUser(HttpUser):
    wait_time = between(0.05, 0.2)
    sent = 0  # requests this user has sent

    @task
    def classify(self) -> None:
        self.sent += 1
        if BAD_EVERY and self.sent % BAD_EVERY == 1 % BAD_EVERY:
            self._bad_request()
            return
        model = random.choices(MODELS, WEIGHTS)[0]
        filename, data = random.choice(IMAGES)
        content_type = "image/jpeg" if filename.endswith(".jpg") else "image/png"
        url = f"/v1/classify?model={model}"
        if random.random() < 0.5:
            request = self.client.post(url, data=data, headers={"Content-Type": content_type, **AUTH},
                                       name=f"classify {model} (raw)", catch_response=True)  # fmt: skip
        else:
            request = self.client.post(url, files={"file": (filename, data, content_type)}, headers=AUTH,
                                       name=f"classify {model} (multipart)", catch_response=True)  # fmt: skip
        with request as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {response.text[:200]}")
            elif len(response.json().get("predictions", [])) != 5:
                response.failure("expected five predictions")
            else:
                response.success()

    def _bad_request(self) -> None:
        what, query, body, content_type, expected = random.choice(BAD_REQUESTS)
        with self.client.post(f"/v1/classify?{query}", data=body, headers={"Content-Type": content_type, **AUTH},
                              name=f"bad request: {what}", catch_response=True) as response:  # fmt: skip
            if response.status_code == expected and "error" in response.json():
                response.success()
            else:
                response.failure(f"expected {expected}, got {response.status_code}")
