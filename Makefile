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
