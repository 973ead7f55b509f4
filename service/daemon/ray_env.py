"""The Ray settings every Ray process of the service runs with: `hornet-serve`, the tests, the bench, the
image (`ray start`), compose and the KubeRay pods. One table, so a deploy test can check each place.

What each entry gained is measured in docs/performance.md#measurements-behind-the-codes-settings.
"""

from __future__ import annotations

# Ray passes objects up to this size inside the call instead of through the object store. At the
# default (100 KiB) every 224x224x3 image (150 KB) took the object store, at twice the cost of a call.
MAX_DIRECT_CALL_OBJECT_SIZE = 1 << 20
RAY_SYSTEM_CONFIG = {"max_direct_call_object_size": MAX_DIRECT_CALL_OBJECT_SIZE}
HAPROXY_BUFFER_BYTES = 1 << 20
GRPC_MAX_MESSAGE_BYTES = 32 << 20

# Environment variables for every Ray process (`ray.init` passes the system config itself; a `ray start`
# reads RAY_<name> instead).
RAY_ENV: dict[str, str] = {
    "RAY_max_direct_call_object_size": str(MAX_DIRECT_CALL_OBJECT_SIZE),
    # Ray Serve's HAProxy ingress instead of the Python HTTP proxy: it takes about 40% of the CPU outside the
    # model off every request.
    # `hornet-haproxy` (service/http/haproxy.py) gives it the service's error contract.
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    # A request whose gateway replica dies before answering is replayed on another one (or on Serve's fallback
    # proxy) instead of haproxy closing a keep-alive connection with no answer; classification has no side
    # effects, so a replay is safe. haproxy replays only what fits its buffer: uploads up to 1 MiB (a 1024x768
    # JPEG is 0.1-0.3 MB); buffers are taken per request in flight, not per connection. The retries go to the
    # same (dead) replica until haproxy marks it down after 3 errors (Ray's `error-limit 3`), and only then to
    # another one: 5 retries, each a refused connection that costs nothing (tests/unit/service/http/test_haproxy.py).
    "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response",
    "RAY_SERVE_HAPROXY_RETRIES": "5",
    "RAY_SERVE_HAPROXY_TUNE_BUFSIZE": str(HAPROXY_BUFFER_BYTES),
    # The largest message Serve's gRPC ingress takes in (2 GiB by default, all of it in memory before the gateway
    # sees it): a little over limits.max_body_bytes' default (20 MiB), which the gateway checks below it.
    "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": str(GRPC_MAX_MESSAGE_BYTES),
    # gRPC between deployments, user code on the replica's main loop, buffered request logs.
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # Idle manners: Serve's controller loop at 2 Hz instead of 10 (deploys, replica state changes and autoscaling
    # decisions follow up to 0.4 s later; health checks keep their own period), and Serve's cached request
    # metrics exported once a second instead of ten times by every replica and handle (Prometheus scrapes every
    # 15 s). With Ray's metrics report every 5 s (service/daemon/local.py) they keep an idle service quiet (measured:
    # docs/performance.md#measurements-behind-the-codes-settings).
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
    "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000",
    # A stopping gateway replica serves on for this long so that HAProxy stops sending it requests (30 s by
    # default, for load balancers Serve does not know). HAProxy drops it at the reload that follows its removal,
    # well within this (docs/performance.md#measurements-behind-the-codes-settings), or at worst after a failed
    # health check; a request that still finds the port closed is retried (RETRY_ON). It was most of a stop.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
    # Ray starts workers at nice 15: replicas would yield to Ray's own daemons on a busy node.
    "RAY_worker_niceness": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
# The haproxy Serve runs: `hornet-haproxy` (service/http/haproxy.py) gives its own errors the service's
# JSON contract. Its path depends on the install (the image: /opt/venv/bin/hornet-haproxy).
HAPROXY_BINARY_ENV = "RAY_SERVE_HAPROXY_BINARY_PATH"
