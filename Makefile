# Two entry points on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: demo test test-fast install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned here (the CPU wheel available offline) and kept as a range in pyproject.toml.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/webtext demo

test: install
	$(BIN)/python -m pytest tests -q

# what to run on every change: no Ray, no servers, no processes (under 2 minutes)
test-fast: install
	$(BIN)/python -m pytest tests -q -m "not slow"

clean:
	rm -rf $(VENV) webtext-demo-* .pytest_cache
