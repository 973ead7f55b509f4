"""loadtest.gpu_check: its --quick run on the CPU, its markdown report, and an import chain the GPU machine can
satisfy."""

import json
import os
import subprocess
import sys
from dataclasses import asdict

import pytest

from loadtest import gpu_check
from tests.support import ROOT

# The service's own dependencies, none on the GPU machine (pydantic is not there either: it travels as wheels,
# see the module docstring of loadtest.gpu_check). tqdm is left out: torch.hub imports it where it is installed.
MISSING_ON_THE_GPU_MACHINE = {"ray", "fastapi", "starlette", "uvicorn", "matplotlib", "psutil", "httpx", "locust",
                              "prometheus_client", "multipart", "simplejpeg", "turbojpeg"}  # fmt: skip


# One of each section main() writes, in its shape.
SERIES = {"model": "hornet-t", "precision": "fp32", "mode": "eager", "runner": "eager", "batch_size": 1,
          "images_per_s": 20.0, "p50_ms": 50.0, "p90_ms": 55.0, "ms_per_batch": 50.0, "seconds": 1.2}  # fmt: skip
SECTIONS = {
    "decode": [{"model": "hornet-t", "jpeg": "1024x768", "jpeg_mb": 0.21, "draft": d, "images_per_s_one_core": 90.0,
                "images_per_s_all_cores": 170.0, "workers": 2, "images_per_s_per_core_all_busy": 85.0}
               for d in (False, True)],
    "environment": {"device": "cpu", "torch": "2.5.1", "cpu": "x86_64"},
    "correctness": {"auto_precision": "fp32", "checks": {
        "golden logits fp32": {"max_abs_diff": 1e-05, "tolerance": 0.001, "pass": True},
        "golden top-5 fp32": {"top5": [1, 2, 3, 4, 5], "expected": [1, 2, 3, 4, 5], "pass": True}}},
    "throughput:hornet-t": [SERIES, SERIES | {"batch_size": 2, "images_per_s": 30.0}],
    "replica_decode": [{"jpeg": jpeg, "device": "cpu", "psnr_min_db": 48.0, "psnr_median_db": 50.5, "fallbacks": 0,
                        "images_per_s": 40.0, "top1_agreement": 1.0, "top5_overlap": 0.9}
                       for jpeg in ("1024x768", "4000x3000")],
    "gpu_decode": [{"jpeg": "1024x768", "batch": 64, "resize_on_gpu": r, "images_per_s": 2000.0} for r in (False, True)],
    "compile": [SERIES | {"mode": "compiled", "runner": "compiled"}],
    "derived": {"hornet-t": {"precision": "fp32", "mode": "eager", "best_images_per_s": 30.0, "best_batch": 2,
                             "recommended_batch": 2, "gateway_cores_per_gpu": {"1024x768": 0.35}}},
}  # fmt: skip


def _rows_by_heading(markdown: str) -> dict[str, int]:
    """{heading: rows of the tables under it} (a table's header and separator lines not counted)."""
    rows: dict[str, int] = {}
    for block in markdown.split("\n## ")[1:]:
        title, _, body = block.partition("\n")
        lines = [line for line in body.splitlines() if line.startswith("|")]
        rows[title] = len(lines) - 2 * sum(line.startswith("| --- |") for line in lines)
    return rows


def test_the_markdown_has_a_table_for_every_part_of_the_json(tmp_path):
    report = gpu_check.Report(tmp_path)
    report.data["plan"] = asdict(gpu_check.QUICK)
    report.skip("compile", "quick mode")
    report.data["errors"].append({"section": "correctness", "error": "RuntimeError: a stand-in"})
    for name, value in SECTIONS.items():
        report.section(name, lambda value=value: value)
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = _rows_by_heading((tmp_path / "gpu_check.md").read_text())
    parts = {**data["sections"], **{name: value for name, value in data.items() if name != "sections"}}
    assert set(parts) == {*SECTIONS, "skipped", "errors", "plan", "section_seconds"}
    for name, value in parts.items():
        assert rows.get(gpu_check.heading(name)), f"the JSON's {name!r} has no table in the markdown"
        if isinstance(value, list):
            assert rows[gpu_check.heading(name)] == len(value), name


def _python(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_check_imports_nothing_the_gpu_machine_lacks():
    code = "import sys, loadtest.gpu_check; print(sorted({m.split('.')[0] for m in sys.modules}))"
    proc = _python("-c", code, timeout=60)
    assert proc.returncode == 0, proc.stderr
    imported = set(json.loads(proc.stdout.replace("'", '"')))
    assert "torch" in imported and "model" in imported
    assert not imported & MISSING_ON_THE_GPU_MACHINE


@pytest.mark.slow  # its own 40 s budget
def test_quick_run_on_the_cpu_writes_the_whole_report(tmp_path):
    out = tmp_path / "gpu"
    proc = _python("-m", "loadtest.gpu_check", str(out), "--quick", timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads((out / "gpu_check.json").read_text())
    assert data["errors"] == []
    sections = data["sections"]
    assert sections["environment"]["device"] == "cpu"
    checks = sections["correctness"]["checks"]
    assert {"golden logits fp32", "golden top-5 fp32",
            "hornet-t mmpretrain layout = official", "fast path (batch 5 padded to 8) = eager"} <= set(checks)  # fmt: skip
    assert all(c["pass"] for c in checks.values())
    assert any(name.startswith("bf16 vs fp32") for name in checks)
    rows = sections["throughput:hornet-t"]
    assert rows[0]["batch_size"] == 1 and rows[0]["images_per_s"] > 0 and rows[0]["p50_ms"] > 0
    decode = sections["decode"]
    assert {(d["jpeg"], d["draft"]) for d in decode} == {("1024x768", False), ("1024x768", True),
                                                         ("4000x3000", False), ("4000x3000", True)}  # fmt: skip
    assert all(d["images_per_s_one_core"] > 0 and d["images_per_s_all_cores"] > 0 for d in decode)
    replica = sections["replica_decode"]  # the replica's decode path, here on the CPU, against the exact one
    assert [r["jpeg"] for r in replica] == ["1024x768", "4000x3000"]
    assert all(r["psnr_min_db"] >= 45 and r["fallbacks"] == 0 and r["images_per_s"] > 0 for r in replica), replica
    assert all(r["top5_overlap"] >= 0.6 for r in replica), replica  # the trained classifier (a dev dependency)
    derived = sections["derived"]["hornet-t"]
    assert derived["recommended_batch"] in (1, 2) and derived["gateway_cores_per_gpu"]["1024x768"] > 0
    assert {s["item"] for s in data["skipped"]} >= {"GPU decode", "compile"}
    report = (out / "gpu_check.md").read_text()
    for name in sections:
        assert f"\n## {gpu_check.heading(name)}\n" in report
