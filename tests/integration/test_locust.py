"""A headless Locust smoke run (20 s, a few users) against the live service: no unexpected error."""

import csv
import os
import subprocess
import sys
from pathlib import Path

from loadtest.corpus import DEFAULT_SPECS, make_corpus

ROOT = Path(__file__).parent.parent.parent


def test_corpus_has_realistic_sizes(tmp_path):
    sizes = [p.stat().st_size for p in make_corpus(tmp_path, DEFAULT_SPECS)]
    assert min(sizes) >= 200_000 and max(sizes) <= 5_000_000
    assert any(s > 3_000_000 for s in sizes), "no large photo in the corpus"


def test_locust_smoke_run_has_no_unexpected_errors(service, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", [spec for spec in DEFAULT_SPECS if spec[0] * spec[1] <= 4_000_000])
    env = {**os.environ, "HORNET_LOAD_CORPUS": str(corpus[0].parent), "HORNET_LOAD_BAD_SHARE": "0.1",
           "HORNET_LOAD_MODELS": "hornet-t:9,hornet-l-gf384:1"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless",
         "-u", "3", "-r", "3", "-t", "20s", "--host", service.base_url, "--csv", str(tmp_path / "smoke"),
         "--only-summary", "--stop-timeout", "30"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(tmp_path / "smoke_stats.csv") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    total = rows["Aggregated"]
    assert int(total["Request Count"]) >= 10 and int(total["Failure Count"]) == 0, total
    assert any(name.startswith("classify hornet-t") for name in rows)
    assert any(name.startswith("bad request") for name in rows), "no bad request was sent"
