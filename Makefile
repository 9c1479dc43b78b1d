# vflchain — two commands: `make demo` and `make test`. Both set everything up
# (Python venv + npm toolchain) on first use and reuse it afterwards.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.vflchain-installed
NPM_STAMP := node_modules/.vflchain-installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo test bench bench-scale bench-quick lint clean

setup: $(PY_STAMP) $(NPM_STAMP)

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "vflchain needs Python >= 3.11, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

# Re-installs only when the package metadata or the lock changes.
$(PY_STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	@touch $@

$(NPM_STAMP): package.json package-lock.json
	# `npm install` (not `npm ci`): the registry here lacks the other platforms' optional
	# anvil binaries, which `npm ci` insists on; the lock file pins every version.
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

demo: setup
	$(VENV)/bin/vflchain demo

test: setup
	@command -v chromium >/dev/null || echo "make test: no chromium found: the explorer's browser tests will be SKIPPED (apt-get install chromium)"
	$(PY) -m pytest

bench: setup
	$(PY) -m benchmarks

bench-scale: setup  # PSI, binning and an LR epoch at 100k and 1M rows (most of an hour)
	$(PY) -m benchmarks --scale

bench-quick: setup  # smaller sizes, a few minutes: a smoke run of every benchmark
	$(PY) -m benchmarks --quick

lint: setup
	$(VENV)/bin/ruff check vfl chain nodes vflchain tests benchmarks

clean:
	rm -rf $(VENV) node_modules .pytest_cache build *.egg-info
