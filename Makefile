# Two entry points: `make demo` (set up, run the main job) and `make test` (set up, run the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-deps bench clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[convert,cloud,edge,testbed,dev]'
	touch $@

demo: setup
	$(VENV)/bin/partnner demo

# System packages the tests need (OpenSSH server for the flash tests); best effort, says why not.
test-deps:
	sh .ci/setup-sshd.sh

test: setup test-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
