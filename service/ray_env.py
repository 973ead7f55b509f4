"""The Ray settings every Ray process of the service runs with: `hornet-serve`, the tests, the bench, the
image (`ray start`), compose and the KubeRay pods. One table, so a deploy test can check each place.

Each entry is measured in the README's Performance section (`make bench`).
"""

from __future__ import annotations

# Ray passes objects up to this size inside the call instead of through the object store. At the
# default (100 KiB) every 224x224x3 image took the object store: measured on 2 cores, a replica call
# with a 150 KB array took 5.6 ms instead of 2.6 ms.
MAX_DIRECT_CALL_OBJECT_SIZE = 1 << 20
RAY_SYSTEM_CONFIG = {"max_direct_call_object_size": MAX_DIRECT_CALL_OBJECT_SIZE}

# Environment variables for every Ray process (`ray.init` passes the system config itself; a `ray start`
# reads RAY_<name> instead).
RAY_ENV: dict[str, str] = {
    "RAY_max_direct_call_object_size": str(MAX_DIRECT_CALL_OBJECT_SIZE),
    # Ray Serve's HAProxy ingress stays off: it cut the CPU outside the model from 43-46 to 25-29 ms per
    # request and the empty pipeline from 26 to 9 ms (README, Performance), but a request in flight on a
    # gateway replica that dies gets its connection closed with no answer instead of the JSON 503 + Retry-After
    # the service promises (3 of 9-15 requests in tests/integration/test_load.py; neither L7 retries nor
    # fresh server connections changed that). Set it to 1 to trade that for the speed: `hornet-haproxy`
    # (service/haproxy_errors.py) then gives HAProxy's own errors the JSON contract.
    "RAY_SERVE_ENABLE_HA_PROXY": "0",
    # gRPC between deployments, user code on the replica's main loop, buffered request logs.
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # Ray starts workers at nice 15: replicas would yield to Ray's own daemons on a busy node.
    "RAY_worker_niceness": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
# The haproxy Serve runs: `hornet-haproxy` (service/haproxy_errors.py) gives its own errors the service's
# JSON contract. Its path depends on the install (the image: /opt/venv/bin/hornet-haproxy).
HAPROXY_BINARY_ENV = "RAY_SERVE_HAPROXY_BINARY_PATH"
