# penalty-service — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
export HOST PORT

.PHONY: install test lint typecheck pytest run openapi bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check service tests bench
	$(VENV)/bin/hadolint Dockerfile

typecheck: install
	$(VENV)/bin/mypy service

pytest: install
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

run: install
	$(PY) -m service

openapi: install
	$(PY) scripts/export_openapi.py

bench: install
	$(PY) -m bench.kernels
	$(PY) -m bench.wire
	$(PY) -m bench.dense_vs_keras
	$(PY) -m bench.transport
	$(PY) -m bench.blas
	$(PY) -m bench.client
	$(PY) -m bench.stack
	$(PY) -m bench.train_vs_keras
	$(PY) -m bench.load

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
