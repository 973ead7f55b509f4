# Every target installs what it needs into .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint serve bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The pinned CPU build first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check model service tests
	$(VENV)/bin/ruff format --check model service tests

test: $(STAMP) lint
	$(PY) -m pytest

serve: $(STAMP)
	$(VENV)/bin/hornet-serve --config deploy/config/local.yaml

bench: $(STAMP)
	$(PY) -m loadtest.bench_model

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
