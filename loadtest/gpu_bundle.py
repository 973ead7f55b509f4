"""What the service needs beyond the GPU machine's own Python (torch, numpy, Pillow, PyYAML there), trimmed to
travel with the tree (the device tool carries at most 64 MiB): Ray Serve with its HAProxy, FastAPI, pydantic...

    make gpu-bundle                                                    # build/gpu-bundle: CPython 3.12, x86_64
    python -m loadtest.gpu_bundle --python-version 3.11 --out build/gpu-bundle-311   # this Python: the dry run

Wheels are downloaded for the target Python and unpacked into one folder (`pip install --target`), Ray's parts
the service never imports are dropped (RLlib, Tune, Train, LLM, Data, the Java jars, the dashboard's web build),
its three large binaries stripped, and the folder packed with xz -9 into site.tar.xz. loadtest/gpu_service.sh
unpacks it there and puts it on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.support import ROOT

# The service's runtime needs, less what the GPU machine has (and torch's own large dependencies).
REQUIREMENTS = ["ray[serve]==2.60.0", "fastapi", "uvicorn", "python-multipart", "pydantic", "pydantic-settings",
                "prometheus-client", "safetensors", "httpx", "tqdm"]  # fmt: skip
ON_THE_MACHINE = re.compile(r"^(torch|triton|nvidia_.*|numpy|pillow|pyyaml|sympy|mpmath|networkx)-", re.I)
DROPPED = ["ray/rllib", "ray/tune", "ray/train", "ray/llm", "ray/data", "ray/jars", "ray/dashboard/client/build"]
STRIPPED = ["ray/core/src/ray/gcs/gcs_server", "ray/core/src/ray/raylet/raylet", "ray/_raylet.so"]


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def target_flags(python_version: str) -> list[str]:
    abi = "cp" + python_version.replace(".", "")
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64"]
    return ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp", "--abi", abi,
            *[f"--platform={p}" for p in platforms]]  # fmt: skip


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def build(python_version: str, out: Path) -> dict:
    wheels, site = out / "wheels", out / "site"
    shutil.rmtree(site, ignore_errors=True)
    flags = target_flags(python_version)
    pip("download", "-q", "--dest", str(wheels), "-c", str(ROOT / "deploy/constraints.txt"), *flags, *REQUIREMENTS)
    kept = sorted(w for w in wheels.glob("*.whl") if not ON_THE_MACHINE.match(w.name))
    pip("install", "-q", "--no-deps", "--no-index", "--no-compile", "--target", str(site), *flags, *map(str, kept))
    unpacked_mb = folder_mb(site)
    for part in DROPPED:
        shutil.rmtree(site / part, ignore_errors=True)
    for cache in [*site.rglob("__pycache__"), *site.glob("bin")]:
        shutil.rmtree(cache, ignore_errors=True)
    for binary in STRIPPED:
        subprocess.run(["strip", "--strip-unneeded", str(site / binary)], check=True)
    archive = out / "site.tar.xz"
    with tarfile.open(archive, "w:xz", preset=9) as tar:
        tar.add(site, arcname=".")
    report = {
        "python": python_version,
        "wheels": [w.name for w in kept],
        "unpacked_mb": round(unpacked_mb, 1),
        "trimmed_mb": round(folder_mb(site), 1),
        "archive_mb": round(archive.stat().st_size / 2**20, 1),
        "dropped": DROPPED,
        "stripped": STRIPPED,
    }
    (out / "bundle.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    p.add_argument("--out", type=Path, default=ROOT / "build/gpu-bundle")
    args = p.parse_args(argv)
    report = build(args.python_version, args.out)
    print(f"{args.out / 'site.tar.xz'}: {report['archive_mb']} MiB (unpacked {report['unpacked_mb']} MiB, "
          f"trimmed {report['trimmed_mb']} MiB; {len(report['wheels'])} wheels)")  # fmt: skip
    return 0 if report["archive_mb"] <= 64 else 1


if __name__ == "__main__":
    raise SystemExit(main())
