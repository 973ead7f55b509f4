"""Cold starts: how long the first request to a variant at zero replicas waits, and where that time goes.

    python -m loadtest.bench_cold_start --models hornet-t,hornet-l-gf384 --rounds 3 --json out.json

Each variant gets a full-size checkpoint of random weights (the authors' layout, written to a temporary directory:
the published files cannot be downloaded here) and the settings of deploy/config/local.yaml, plus autoscaling to
zero. The service starts as `hornet-serve` does; then, each round, the bench waits until the variant is at zero
replicas, sends one photo and times the answer. The replica's own part (construction to ready: weights, warm-up) is
its `hornet_replica_start_seconds` metric; the rest is Serve's (the autoscaler's reaction, the actor's process and
imports). Reading and hashing the checkpoint file, which the checkpoint directory's lookup adds, is timed apart.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import torch

from loadtest.http_load import free_port, wait_ready
from loadtest.machine import describe as describe_machine
from model import create_model
from model.checkpoint import sha256_of
from service.config import load_settings
from tests.support.helpers import poll
from tests.support.images import encode, photo

LOCAL_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "config" / "local.yaml"
# Zero replicas as soon as Serve's look-back window (above its default 10 s report interval) has seen no request;
# --autoscaling '{"metrics_interval_s": 1}' measures the shorter interval (docs/scale-to-zero.md).
TO_ZERO = {"min_replicas": 0, "max_replicas": 1, "initial_replicas": 1, "look_back_period_s": 11,
           "downscale_to_zero_delay_s": 0}  # fmt: skip


def write_checkpoint(model_id: str, directory: Path) -> tuple[Path, dict]:
    """A random-weight checkpoint of the variant's full size in the official layout, and what reading it costs."""
    path = directory / f"{model_id}.pth"
    torch.save({"model": create_model(model_id).state_dict()}, path)
    started = time.perf_counter()
    sha256_of(path)
    hashed = time.perf_counter()
    create_model(model_id, weights=path)
    loaded = time.perf_counter()
    return path, {"checkpoint_mb": path.stat().st_size / 1e6, "sha256_s": hashed - started, "load_s": loaded - hashed}


def replica_start(metrics_url: str, model_id: str) -> tuple[float, float]:
    """(count, sum) of the variant's cold replica starts, from the metrics endpoint."""
    from prometheus_client.parser import text_string_to_metric_families

    values = {"count": 0.0, "sum": 0.0}
    for family in text_string_to_metric_families(httpx.get(metrics_url, timeout=10).text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model") == model_id and labels.get("cold") == "true":
                for part in values:
                    if sample.name == f"ray_hornet_replica_start_seconds_{part}":
                        values[part] += sample.value
    return values["count"], values["sum"]


def replicas(client: httpx.Client, model_id: str) -> int:
    return client.get(f"/v1/models/{model_id}").json()["replicas"]


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    if not poll(condition, timeout_s):
        raise TimeoutError(what)


def run(args: argparse.Namespace) -> dict:
    from service.daemon.local import local_service

    models = args.models.split(",")
    image = encode(photo(1024, 768, seed=100), "JPEG", quality=90)  # the bench's photos
    with tempfile.TemporaryDirectory() as tmp:
        files = {m: write_checkpoint(m, Path(tmp)) for m in models}
        base = load_settings(LOCAL_CONFIG, environ={})
        autoscaling = {**TO_ZERO, **json.loads(args.autoscaling)}
        per_model = {m: {**base.per_model.get(m, {}), "weights": str(files[m][0]), "autoscaling": autoscaling}
                     for m in models}  # fmt: skip
        settings = base.model_copy(update={
            "models": models, "default_model": models[0], "device": "cpu", "weights_policy": "required",
            "port": free_port(), "grpc_port": 0, "metrics_export_port": free_port(), "per_model": per_model,
        })  # fmt: skip
        settings = type(settings).model_validate(settings.model_dump())
        metrics_url = f"http://127.0.0.1:{settings.metrics_export_port}/metrics"
        rows = []
        with local_service(settings, quiet=True) as base_url, httpx.Client(base_url=base_url, timeout=600) as client:
            wait_ready(base_url, timeout_s=600)
            for model_id in models:
                for round_ in range(args.rounds):
                    wait_for(lambda m=model_id: replicas(client, m) == 0, 180, f"{model_id} never went to zero")
                    count, total = replica_start(metrics_url, model_id)
                    started = time.perf_counter()
                    response = client.post(f"/v1/classify?model={model_id}", content=image,
                                           headers={"Content-Type": "image/jpeg"})  # fmt: skip
                    waited = time.perf_counter() - started
                    response.raise_for_status()
                    wait_for(lambda m=model_id, c=count: replica_start(metrics_url, m)[0] > c, 30, "no start metric")
                    replica_s = replica_start(metrics_url, model_id)[1] - total
                    row = {"model": model_id, "round": round_ + 1, "first_answer_s": waited, "replica_ready_s": replica_s,
                           "serve_s": waited - replica_s, **files[model_id][1]}  # fmt: skip
                    rows.append(row)
                    print(f"{model_id} round {round_ + 1}: first answer {waited:.1f} s (replica construction to ready "
                          f"{replica_s:.1f} s, Serve and the process {waited - replica_s:.1f} s)", flush=True)  # fmt: skip
    return {"machine": describe_machine(), "rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="hornet-t,hornet-l-gf384")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--autoscaling", default="{}", help="JSON: autoscaling settings over the bench's own")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args)
    print("\n| variant | checkpoint | sha256 of the file | weights load | replica ready | first answer |")
    print("| --- | --- | --- | --- | --- | --- |")
    for model_id in args.models.split(","):
        rows = [r for r in result["rows"] if r["model"] == model_id]

        def span(key: str, rows: list[dict] = rows) -> str:
            return f"{min(r[key] for r in rows):.1f}-{max(r[key] for r in rows):.1f} s"

        print(f"| {model_id} | {rows[0]['checkpoint_mb']:.0f} MB | {rows[0]['sha256_s']:.1f} s | {rows[0]['load_s']:.1f} s "
              f"| {span('replica_ready_s')} | {span('first_answer_s')} |")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
