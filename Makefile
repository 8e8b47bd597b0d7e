# `make demo` and `make test` work on a fresh clone with nothing but Python >= 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint venv clean

venv: $(STAMP)

# Re-install only when pyproject.toml changed (the stamp is older than it).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bulksend demo

test: $(STAMP)
	$(BIN)/ruff check bulksend tests
	$(BIN)/mypy bulksend
	$(BIN)/python -m pytest

# Skip the slow soak/chaos tests locally.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m 'not slow' -x -q

lint: $(STAMP)
	$(BIN)/ruff check bulksend tests
	$(BIN)/ruff format --check bulksend tests
	$(BIN)/mypy bulksend

clean:
	rm -rf $(VENV) build *.egg-info
