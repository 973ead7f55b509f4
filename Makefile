# Every target installs what it needs into .venv (and Debian packages for the tests) on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The peer servers of `make bench-peers` (LitServe, PyTriton): their own venv, as PyTriton pins numpy < 2.
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-deps test test-unit lint serve bench bench-peers bench-bulk deploy-configs soak clean gpu-check \
	wheelhouse docker-engine test-containers gpu-bundle perf-analyzer grpc-descriptors

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The pinned CPU build first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Real programs the tests run: Prometheus (and promtool), Chromium, shellcheck, and libb64 for perf_analyzer (Debian's
# packages, never a downloaded browser).
system-deps:
	command -v prometheus >/dev/null && command -v chromium >/dev/null && command -v shellcheck >/dev/null \
		&& /sbin/ldconfig -p | grep -q 'libb64\.so\.0d' || { \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
		--no-install-recommends prometheus chromium shellcheck libb64-0d; }

# Triton's perf_analyzer (tritonclient 2.46.0's, the last that runs on glibc 2.36) and the libcudart.so.12 it links,
# taken out of their PyPI wheels into build/perf_analyzer (loadtest/perf_analyzer.py; docs/http.md#perf_analyzer).
perf-analyzer: $(STAMP) system-deps
	$(PY) -m loadtest.perf_analyzer install

lint: $(STAMP)
	$(VENV)/bin/ruff check model service tests loadtest
	$(VENV)/bin/ruff format --check model service tests loadtest

test: $(STAMP) system-deps perf-analyzer lint
	$(PY) -m pytest

# The unit tests (tests/unit: model, service without Ray, deploy rules, loadtest tools) but the few
# marked slow. `make test` runs them all, with the integration tests and lint.
test-unit: $(STAMP) system-deps
	$(PY) -m pytest -m "not integration and not slow"

# Every wheel the image installs (torch's CPU build included), for image builds that reach no index:
# docker build --build-arg WHEELHOUSE=build/wheelhouse ... (deploy/README.md). The wheels are for this machine's
# Python; for another base add e.g. WHEELHOUSE_ARGS="--python-version 3.12 --only-binary=:all:", and where the
# index's torch is its CUDA build, "--extra-index-url https://download.pytorch.org/whl/cpu".
WHEELHOUSE := build/wheelhouse
wheelhouse: $(STAMP)
	$(PY) -m pip download -q --dest $(WHEELHOUSE) -c deploy/constraints.txt $(WHEELHOUSE_ARGS) \
		torch==2.13.0 locust==2.47.0 setuptools wheel .

# A running Docker engine, docker-compose and mmdebstrap (Debian's packages), installed and started where missing.
docker-engine:
	command -v dockerd >/dev/null && command -v docker-compose >/dev/null && command -v mmdebstrap >/dev/null || { \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
		--no-install-recommends docker.io docker-compose mmdebstrap; }
	# An engine that did not stop (a machine restored from a snapshot) leaves its pid files behind: when another process
	# has taken containerd's old pid, the new engine waits for that "containerd" and times out. Cleared first when no
	# engine runs.
	docker info >/dev/null 2>&1 || { pgrep -x dockerd >/dev/null || pgrep -x containerd >/dev/null || $(SUDO) rm -f \
		/var/run/docker.pid /var/run/docker/containerd/containerd.pid /var/run/docker/containerd/containerd*.sock*; \
		$(SUDO) sh -c 'nohup dockerd >/var/log/hornet-dockerd.log 2>&1 &'; \
		for i in $$(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done; }
	docker info >/dev/null || { echo "the Docker engine did not start: see /var/log/hornet-dockerd.log" >&2; exit 1; }

# The image and the compose stack for real (tests/containers): the CPU image built with no index from the wheelhouse
# on a base made of Debian's packages, then docker-compose up, checks through the published ports, stop, down.
test-containers: $(STAMP) wheelhouse docker-engine
	$(PY) -m pytest -p no:cacheprovider tests/containers

serve: $(STAMP)
	$(VENV)/bin/hornet-serve --config deploy/config/local.yaml $(ARGS)

# Model-only table (one lever per row), decode cost per path, then the service in three Ray modes against the model
# over HTTP (JSON + PNG in artifacts/bench), then hornet-serve's start time, idle CPU and stop time, then Triton's
# perf_analyzer against the Open Inference Protocol over HTTP and gRPC (its own table).
bench: $(STAMP) perf-analyzer
	$(PY) -m loadtest.bench_model --model hornet-t --batch-sizes 1,8 --json artifacts/bench/model_levers.json
	$(PY) -m loadtest.bench_decode
	$(PY) -m loadtest.bench --model hornet-t --modes shipped,split,no-haproxy
	$(PY) -m loadtest.bench_daemon --json artifacts/bench/daemon.json \
		--args "--config deploy/config/local.yaml --weights random" \
		--args "--models hornet-t,hornet-l-gf384 --weights random --device cpu"
	$(PY) -m loadtest.perf_analyzer serve --model hornet-t --concurrency 1,16

# The peers' venv: the pinned CPU torch first, then LitServe and PyTriton (which bundles tritonserver); the peers
# import model/ and service/decoding.py from the repository (PYTHONPATH), so only what those need. No Ray.
$(PEERS_STAMP):
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install -q torch==2.13.0
	$(PEERS_VENV)/bin/python -m pip install -q 'numpy<2' litserve==0.2.19 nvidia-pytriton==0.7.0 pillow \
		python-multipart pyyaml pydantic pydantic-settings psutil httpx
	touch $(PEERS_STAMP)

# hornet-serve against LitServe and Triton wrapping the same predictor and decode, under the same load (multipart,
# c=1 and 16, 15 s windows), three rounds interleaved: a table and the ratios hornet-serve / peer at c=16 per round,
# the ranges over the rounds, and perf_analyzer against Triton and hornet-serve once (JSON in artifacts/bench/peers).
bench-peers: $(STAMP) $(PEERS_STAMP) perf-analyzer
	$(PY) -m loadtest.bench_peers --model hornet-t --concurrency 1,16 --seconds 15 --rounds 3 --out artifacts/bench/peers

# Bulk classification (Ray Data) against the in-process model at the same precision (docs/bulk.md).
bench-bulk: $(STAMP)
	$(PY) -m loadtest.bench_bulk --model hornet-t --precision auto --json artifacts/bench/bulk.json

# Recompile service/grpc/kserve.binpb (the KServe protos' descriptors, service/grpc/kserve.py) after updating the
# vendored protos there, with protoc from grpcio-tools in a venv of its own (its protobuf pin stays out of .venv).
GRPC_TOOLS := build/grpc-tools
grpc-descriptors:
	test -x $(GRPC_TOOLS)/bin/python || $(PYTHON) -m venv $(GRPC_TOOLS)
	$(GRPC_TOOLS)/bin/python -m pip install -q grpcio-tools==1.85.1
	$(GRPC_TOOLS)/bin/python -m grpc_tools.protoc -I service/grpc --include_imports \
		--descriptor_set_out=service/grpc/kserve.binpb service/grpc/grpc_service.proto

# Regenerate the Serve configs (serve deploy) and the KubeRay serveConfigV2 patches from deploy/config/*.yaml.
deploy-configs: $(STAMP)
	for f in cpu gpu gpu-scale-to-zero; do \
		env -u HORNET_SERVE_CONFIG $(VENV)/bin/hornet-serve --config deploy/config/$$f.yaml --emit-serve-config \
			> deploy/serve/$$f.yaml; \
		env -u HORNET_SERVE_CONFIG $(VENV)/bin/hornet-serve --config deploy/config/$$f.yaml --emit-kuberay-patch \
			> deploy/k8s/overlays/$$f/serve-config.yaml; \
	done

clean:
	rm -rf $(VENV) $(PEERS_VENV) .pytest_cache build *.egg-info

# What the GPU machine lacks for the whole service (Ray Serve, FastAPI, pydantic...), trimmed under the device tool's
# 64 MiB: build/gpu-bundle/site.tar.xz; there, `sh loadtest/gpu_service.sh OUT` unpacks it and runs the service check.
gpu-bundle: $(STAMP)
	$(PY) -m loadtest.gpu_bundle --python-version 3.12 --out build/gpu-bundle

# A soak (not part of `make test`): the local service under a mixed Locust load for $(SOAK_MINUTES) minutes;
# RSS of every service process and p50/p99 each minute into artifacts/soak/ (CSV + soak.png), then the check:
# RSS flat within 10% after warm-up, zero unexpected errors (exit status 1 otherwise).
SOAK_MINUTES ?= 30
soak: $(STAMP)
	$(PY) -m loadtest.soak --minutes $(SOAK_MINUTES) --out artifacts/soak

# The prepared GPU check (JSON + markdown in $(GPU_CHECK_OUT)); run on the GPU machine with its own python3, where
# pydantic is missing: wheels carried in build/gpu-wheels go to build/gpu-site first. On a CPU:
# make gpu-check PYTHON=.venv/bin/python GPU_CHECK_ARGS=--quick
GPU_CHECK_OUT ?= artifacts/gpu
gpu-check:
	$(PYTHON) -c "import pydantic" 2>/dev/null || $(PYTHON) -m pip install -q --no-index --no-deps --no-compile \
		--no-cache-dir --upgrade --target build/gpu-site build/gpu-wheels/*.whl
	PYTHONPATH=.:build/gpu-site $(PYTHON) -m loadtest.gpu_check $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)
