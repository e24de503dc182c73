# infiller: `make demo` sets everything up and completes code in the shipped example;
# `make test` passes the tests. Both start from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INFILLER := $(BIN)/infiller
STAMP := $(VENV)/.installed
# llama-cpp-python builds from source (14-17 minutes on 2 cores, measured): use every core.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
TEST_MODEL := qwen2.5-coder-0.5b

.PHONY: setup demo test test-slow test-vscode vscode-deps check format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -e '.[dev,nvim]'
	touch $(STAMP)

setup: $(STAMP) sandbox-deps

# bubblewrap isolates the code the code actions generate and run (README: Security and
# reliability). Installed with apt when missing and we are root; otherwise a note, not a
# failure: the actions then refuse to run generated code and say why.
.PHONY: sandbox-deps
sandbox-deps:
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; } \
		|| echo "note: bubblewrap (bwrap) is not installed: code actions will refuse to run generated code"

demo: setup
	$(INFILLER) models pull
	@echo "== mid-line: examples/invoice/invoice/discounts.py:15:12 (needs apply_tax from tax.py)"
	$(INFILLER) complete examples/invoice/invoice/discounts.py:15:12
	@echo "== empty function body: examples/invoice/invoice/refunds.py:8:5"
	$(INFILLER) complete examples/invoice/invoice/refunds.py:8:5

test: setup
	$(INFILLER) models pull $(TEST_MODEL) --quiet
	$(BIN)/python -m pytest -q -ra

# Opt-in minutes-long tests (code-server browser test, long fuzzing): see README.
test-slow: setup vscode-deps
	$(INFILLER) models pull $(TEST_MODEL) --quiet
	INFILLER_SLOW=1 $(BIN)/python -m pytest -q -ra

# The VS Code extension in a real code-server and headless Chromium (Playwright), with the real
# model: installs Playwright (the `e2e` extra), Debian's chromium and ripgrep (as root) and
# code-server (npm, into ~/.cache/infiller/e2e), then runs tests/test_vscode_e2e.py. Minutes.
test-vscode: setup vscode-deps
	$(INFILLER) models pull $(TEST_MODEL) --quiet
	INFILLER_SLOW=1 $(BIN)/python -m pytest -q -ra -s tests/test_vscode_e2e.py

vscode-deps: setup
	$(BIN)/python -c 'import playwright' 2>/dev/null || $(BIN)/python -m pip install --progress-bar off -e '.[e2e]'
	sh clients/vscode/e2e/provision.sh

check: setup
	$(BIN)/ruff check server context tests bench clients
	$(BIN)/ruff format --check server context tests bench clients
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format server context tests bench clients
	$(BIN)/ruff check --fix server context tests bench clients

clean:
	rm -rf $(VENV) build *.egg-info
