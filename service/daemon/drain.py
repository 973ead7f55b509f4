"""`python -m service.daemon.drain`: stop the Serve apps of a running Ray cluster without dropping a request.

`hornet-serve` drains its own app on exit (`service.daemon.local.local_service`); a cluster started with `ray start`
and `serve deploy` (the image's entry point under docker compose) runs this on SIGTERM, before `ray stop`:
each app's replicas finish what they hold, by their own counts (`local.drain_gateways`), then Serve shuts down.
"""

from __future__ import annotations

import argparse
import logging

from service.config import configure_logging
from service.daemon.local import drain_gateways

log = logging.getLogger("service.daemon.drain")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.daemon.drain", description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="auto", help="the Ray cluster (default: the one on this node)")
    parser.add_argument(
        "--timeout-s", type=float, default=60.0, help="the longest wait for one app's gateways (default: 60)"
    )
    parser.add_argument(
        "--leave-serve-running",
        action="store_true",
        help="only wait for the gateways (a worker node that stops while the head stays)",
    )
    args = parser.parse_args(argv)
    configure_logging()
    import ray
    from ray import serve

    ray.init(address=args.address, logging_level=logging.WARNING)
    for app in serve.status().applications:
        drain_gateways(app, timeout_s=args.timeout_s)
    if not args.leave_serve_running:
        serve.shutdown()
        log.info("serve shut down")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
