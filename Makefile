# `make demo` and `make test` work on a fresh clone with nothing but Python >= 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest

# pytest runs in two passes: the tests not marked `serial` on WORKERS pytest-xdist worker
# processes, then the `serial` ones (a rate, a latency bound) alone, with the CPU to themselves.
# Most tests wait (simulated latency, child processes, sockets), so more workers than the two
# cores pay: 4 measured best here (README, Development). Override with `make test WORKERS=8`;
# WORKERS=0 runs the first pass in one process too. PYTEST_ARGS narrows both passes to paths or
# a -k expression (not -m: the passes are selected by marker), e.g. PYTEST_ARGS=tests/e2e.
WORKERS ?= 4
PYTEST_ARGS ?=

# $(call two_passes,MARKER EXPRESSION PREFIX,PYTEST OPTIONS,STOP AFTER A FAILED PASS (x or empty))
# Fails if either pass failed (its exit code). A pass that selects no test (pytest's exit 5,
# e.g. PYTEST_ARGS naming a file without serial tests) is no failure, unless neither selects one.
define two_passes
	@failed=0; ran=0; \
	echo "== pytest, parallel pass: -n $(WORKERS) -m '$(1)not serial' $(2) $(PYTEST_ARGS)"; \
	$(PYTEST) -n $(WORKERS) --dist worksteal -m '$(1)not serial' $(2) $(PYTEST_ARGS); \
	code=$$?; case $$code in 0) ran=1 ;; 5) ;; *) failed=$$code ;; esac; \
	if [ $$failed -eq 0 ] || [ -z '$(3)' ]; then \
	  echo "== pytest, serial pass: -m '$(1)serial' $(2) $(PYTEST_ARGS)"; \
	  $(PYTEST) -n 0 -m '$(1)serial' $(2) $(PYTEST_ARGS); \
	  code=$$?; case $$code in 0) ran=1 ;; 5) ;; *) [ $$failed -ne 0 ] || failed=$$code ;; esac; \
	fi; \
	if [ $$failed -ne 0 ]; then echo "== pytest: a pass failed (exit $$failed)"; exit $$failed; fi; \
	if [ $$ran -eq 0 ]; then echo "== pytest: no test selected"; exit 5; fi
endef

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
	$(call two_passes,,,)

# Before every commit: no slow soak/chaos tests, stop at the first failure.
test-fast: $(STAMP)
	$(call two_passes,not slow and ,-x -q,x)

lint: $(STAMP)
	$(BIN)/ruff check bulksend tests
	$(BIN)/ruff format --check bulksend tests
	$(BIN)/mypy bulksend

clean:
	rm -rf $(VENV) build *.egg-info
