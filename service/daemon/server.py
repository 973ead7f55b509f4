"""The `hornet-serve` server process: a local Ray, the Serve app on it, until SIGINT/SIGTERM (then a clean
shutdown). `hornet-serve` (service/daemon/cli.py) starts it in a session of its own and passes signals on."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from model import CheckpointError
from service.config import Device, Settings, WeightsPolicy, choices, configure_logging, load_settings
from service.daemon.local import PortBusy, deploy, local_service
from service.replica.weights import WeightsUnavailable, check_required_weights
from service.serve_config import render, render_kuberay_patch

log = logging.getLogger("hornet-serve")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="hornet-serve",
        description=__doc__,
        epilog="exit status: 0 stopped, 2 invalid configuration, 3 weights unavailable, 4 a port in use",
    )
    p.add_argument("--config", help="YAML settings file (also $HORNET_SERVE_CONFIG)")
    p.add_argument("--models", help="comma-separated variant ids to enable, e.g. hornet-t,hornet-l-gf384")
    p.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default 8000)")
    p.add_argument("--grpc-port", type=int, help="gRPC port of the KServe inference service (default 8001; 0: off)")
    p.add_argument("--weights", choices=choices(WeightsPolicy), help="weights policy (default auto)")
    p.add_argument("--checkpoint-dir", help="directory with checkpoints (air-gapped installs)")
    p.add_argument("--device", choices=choices(Device), help="where the models run (default auto)")
    p.add_argument("--metrics-port", type=int, help="Ray metrics export port for Prometheus (default 8080)")
    p.add_argument("--emit-serve-config", action="store_true", help="print the Serve config YAML and exit")
    p.add_argument(
        "--emit-kuberay-patch", action="store_true", help="print the RayService serveConfigV2 patch and exit"
    )
    return p.parse_args(argv)


def cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    flags = {
        "models": args.models.split(",") if args.models else None,
        "host": args.host,
        "port": args.port,
        "grpc_port": args.grpc_port,
        "weights_policy": args.weights,
        "checkpoint_dir": args.checkpoint_dir,
        "device": args.device,
        "metrics_export_port": args.metrics_port,
    }
    return {k: v for k, v in flags.items() if v is not None}


def run(settings: Settings, reload: Callable[[], Settings]) -> None:
    """Serve until SIGINT/SIGTERM; on SIGHUP read the configuration again and redeploy it (live where
    Serve can apply it to running replicas, see service/serve_config.py)."""
    wake, hangup = threading.Event(), threading.Event()

    def handle_signals() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: wake.set())
        signal.signal(signal.SIGHUP, lambda *_: (hangup.set(), wake.set()))

    # A SIGTERM while the app deploys (it may already answer) is kept and acted on once it runs.
    with local_service(settings, on_ray_started=handle_signals):
        log.info(
            "hornet-serve ready on http://%s:%d (gRPC port: %s; models: %s; metrics on :%d); SIGHUP reloads the "
            "configuration", settings.host, settings.port, settings.grpc_port or "off", ", ".join(settings.models),
            settings.metrics_export_port,
        )  # fmt: skip
        while wake.wait() and hangup.is_set():
            wake.clear()
            hangup.clear()
            try:
                deploy(reload())
                log.info("configuration reloaded")
            except (ValidationError, ValueError, OSError, RuntimeError) as exc:
                log.error("configuration not reloaded, still serving the previous one: %s", exc)
        log.info("shutting down: draining in-flight requests")


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(argv)
    try:
        settings = load_settings(args.config, cli_overrides(args))
    except (ValidationError, ValueError, OSError) as exc:
        print(f"hornet-serve: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    if args.emit_serve_config:
        sys.stdout.write(render(settings, args.config or "(defaults)"))
        return 0
    if args.emit_kuberay_patch:
        sys.stdout.write(render_kuberay_patch(settings, args.config or "(defaults)"))
        return 0
    try:
        for model_id in settings.models:
            check_required_weights(settings.variant(model_id))
    except (WeightsUnavailable, CheckpointError) as exc:
        print(f"hornet-serve: {exc}", file=sys.stderr)
        return 3
    try:
        run(settings, lambda: load_settings(args.config, cli_overrides(args)))
    except PortBusy as exc:
        print(f"hornet-serve: {exc}", file=sys.stderr)
        return 4
    return 0
