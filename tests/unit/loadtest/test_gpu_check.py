"""loadtest.gpu_check: its --quick run on the CPU, and an import chain the GPU machine can satisfy."""

import json
import os
import subprocess
import sys

import pytest

from tests.support import ROOT

# The service's own dependencies, none on the GPU machine (pydantic is not there either: it travels as wheels,
# see the module docstring of loadtest.gpu_check). tqdm is left out: torch.hub imports it where it is installed.
MISSING_ON_THE_GPU_MACHINE = {"ray", "fastapi", "starlette", "uvicorn", "matplotlib", "psutil", "httpx", "locust",
                              "prometheus_client", "multipart", "simplejpeg", "turbojpeg"}  # fmt: skip


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
    for heading in ("## Environment", "## Correctness", "## throughput:hornet-t", "## Decode + resize", "## Derived"):
        assert heading in report
