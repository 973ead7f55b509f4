"""Custom metrics, recorded through `ray.serve.metrics` so that every Ray node's metrics agent exports
them (`--metrics-export-port`), correct with any number of replicas. Ray prefixes the names with `ray_`
on export, e.g. `ray_hornet_request_latency_seconds_bucket`. One bucket layout per histogram."""

from __future__ import annotations

from dataclasses import dataclass

from ray.serve.metrics import Counter, Histogram

_LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30]
_BATCH_BUCKETS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64]
_BYTES_BUCKETS = [1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7]
_START_BUCKETS = [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300]


@dataclass
class Outcome:
    """What a classify request's metrics are tagged with, filled in as its stages run."""

    model: str = "unknown"
    status: int = 500  # on gRPC, the HTTP status the same answer has over REST
    key_id: str | None = None
    protocol: str = "http_v1"  # http_v2, grpc_v2: the Open Inference Protocol's REST and gRPC


@dataclass(frozen=True)
class GatewayMetrics:
    request_latency: Histogram
    requests: Counter
    decode: Histogram
    image_bytes: Histogram
    decode_refusals: Counter
    key_requests: Counter

    @classmethod
    def create(cls) -> GatewayMetrics:
        return cls(
            request_latency=Histogram(
                "hornet_request_latency_seconds",
                description="End-to-end latency of a classify request (/v1/classify, /v2 infer) in the gateway.",
                boundaries=_LATENCY_BUCKETS, tag_keys=("model", "status", "protocol"),
            ),
            requests=Counter(
                "hornet_requests", description="Classify requests by model, HTTP status and protocol.",
                tag_keys=("model", "status", "protocol"),
            ),
            decode=Histogram(
                "hornet_decode_seconds", description="Image decode and resize time in the gateway.",
                boundaries=_LATENCY_BUCKETS, tag_keys=("model",),
            ),
            image_bytes=Histogram(
                "hornet_image_bytes", description="Size of uploaded images in bytes.",
                boundaries=_BYTES_BUCKETS, tag_keys=("model",),
            ),
            decode_refusals=Counter(
                "hornet_decode_refusals",
                description="Uploads the decoder refused, by reason: invalid, pixels, budget, time_limit, queue_full.",
                tag_keys=("reason",),
            ),
            key_requests=Counter(
                "hornet_key_requests",
                description="Classify requests by API key id, HTTP status and protocol (auth on).",
                tag_keys=("key_id", "status", "protocol"),
            ),
        )  # fmt: skip


@dataclass(frozen=True)
class ClassifierMetrics:
    queue_wait: Histogram
    inference: Histogram
    batch_size: Histogram
    decode_fallbacks: Counter
    replica_start: Histogram

    @classmethod
    def create(cls) -> ClassifierMetrics:
        return cls(
            replica_start=Histogram(
                "hornet_replica_start_seconds",
                description="A classifier replica's start, construction to ready (weights, warm-up). cold=true: its "
                "variant had no running replica (a cold start: its count is the variant's cold starts).",
                boundaries=_START_BUCKETS, tag_keys=("model", "cold"),
            ),
            queue_wait=Histogram(
                "hornet_queue_wait_seconds", description="Time a request waits in the replica for its batch to start.",
                boundaries=_LATENCY_BUCKETS, tag_keys=("model",),
            ),
            inference=Histogram(
                "hornet_inference_seconds", description="Forward time of one batch (normalise, model, top-k).",
                boundaries=_LATENCY_BUCKETS, tag_keys=("model",),
            ),
            batch_size=Histogram(
                "hornet_batch_size", description="Requests per executed batch.",
                boundaries=_BATCH_BUCKETS, tag_keys=("model",),
            ),
            decode_fallbacks=Counter(
                "hornet_replica_decode_fallbacks",
                description="JPEGs the replica's device decoder refused, by reason: device_refused (decoded on the "
                "replica's CPU instead), undecodable (no decoder took it: a 400).",
                tag_keys=("model", "reason"),
            ),
        )  # fmt: skip
