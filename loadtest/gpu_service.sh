#!/bin/sh
# On the GPU machine (Python 3.12 with torch, numpy, Pillow, PyYAML; no Ray, no network): unpack the bundle that
# `make gpu-bundle` built (carried as build/gpu-bundle/site.tar.xz), then run the service check into OUT.
#   sh loadtest/gpu_service.sh "$OUT" [loadtest.gpu_service flags]
# BUNDLE and PYTHON choose another bundle and interpreter (the CPU dry run: the 3.11 bundle, a venv without Ray).
set -eu
out="${1:?output folder}"
shift
bundle="${BUNDLE:-build/gpu-bundle/site.tar.xz}"
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
tar -xJf "$bundle" -C "$site"
python="$(command -v "${PYTHON:-python3}")"
# The project is not installed there: its `hornet-haproxy` script, written for this Python.
printf '#!/bin/sh\nexec "%s" -m service.http.haproxy "$@"\n' "$python" > "$site/hornet-haproxy"
chmod +x "$site/hornet-haproxy"
# Ray's own processes (and haproxy's wrapper) find the bundle's packages and the tree through PYTHONPATH.
PYTHONPATH="$PWD:$site" RAY_SERVE_HAPROXY_BINARY_PATH="$site/hornet-haproxy" \
  "$python" -m loadtest.gpu_service "$out" "$@"
