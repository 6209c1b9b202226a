# hepsonic: two commands do all the set-up on a fresh machine.
#   make serve   create .venv, install, run Triton + gateway in the foreground (Ctrl-C stops everything)
#   make test    create .venv, install, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: serve test venv lint typecheck models clean

# Re-install only when the dependency declarations change.
$(STAMP): pyproject.toml clients/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned to the CPU wheel on local disk, so no resolver ever reaches for a CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ./clients -e '.[all]'
	touch $(STAMP)

venv: $(STAMP)

serve: $(STAMP)
	$(BIN)/hepsonic-serve $(ARGS)

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Full rebuild of every served model (generators -> training -> export -> model cards).
models: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/hepsonic-build-models $(ARGS)

clean:
	rm -rf $(VENV) build .mypy_cache .pytest_cache .ruff_cache

# --- Load tests, benchmarks, observability (docs/loadtesting.md) -----------------------------------
# Against a stack started with `make serve` (override the addresses for any other stack).
LOADTEST_HOST      ?= http://127.0.0.1:8080
LOADTEST_GRPC_HOST ?= 127.0.0.1:8081
TRITON_METRICS     ?= 127.0.0.1:8002
PROMETHEUS_PORT    ?= 9090
BENCH_OUT          ?= loadtests/results/cpu-2core

.PHONY: loadtest bench bench-quick bench-gateway prometheus screenshots dashboards

# A bounded headless locust run with JSON + HTML reports; exits 3 when a threshold is exceeded.
loadtest: $(STAMP)
	$(BIN)/python -m loadtests.loadtest --host $(LOADTEST_HOST) --grpc-host $(LOADTEST_GRPC_HOST) $(ARGS)

# The full benchmark sweep (starts its own servers; about 10 minutes) -> $(BENCH_OUT)/report.md.
bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" nice -n 10 $(BIN)/python -m loadtests.bench --budget-s 600 --out $(BENCH_OUT) $(ARGS)

bench-quick: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m loadtests.bench --quick --budget-s 60 --out out/bench-quick $(ARGS)

# The gateway's tax against direct Triton (both protocols, isolated and shared cores; about 15 minutes)
# -> loadtests/results/bench_gateway.md.
bench-gateway: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python loadtests/bench_gateway.py $(ARGS)

# Debian's Prometheus (apt-get install -y prometheus) next to `make serve`, on 127.0.0.1:$(PROMETHEUS_PORT).
prometheus: $(STAMP)
	$(BIN)/python -m loadtests.observability prometheus --triton-metrics $(TRITON_METRICS) \
		--gateway $(subst http://,,$(LOADTEST_HOST)) --port $(PROMETHEUS_PORT)

# PNGs of a Prometheus graph and of the locust UI (apt-get install -y chromium), with `make serve` and
# `make prometheus` running.
screenshots: $(STAMP)
	$(BIN)/python -m loadtests.observability screenshots --prometheus http://127.0.0.1:$(PROMETHEUS_PORT) \
		--host $(LOADTEST_HOST) --grpc-host $(LOADTEST_GRPC_HOST) $(ARGS)

# Regenerate deploy/grafana/dashboards/hepsonic.json from loadtests/dashboards.py.
dashboards: $(STAMP)
	$(BIN)/python -m loadtests.dashboards
