# The README's commands. Everything runs inside .venv, created from pyproject.toml on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export GX_ANALYTICS_ENABLED := false
export DAGSTER_DISABLE_TELEMETRY := true

.PHONY: setup demo test bench lint ui clean conformance-fixtures

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) with $(PYTHON) and installing aiobs (first run takes a minute)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --progress-bar off -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/aiobs demo --workdir .

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n auto --dist loadfile

bench: setup
	$(BIN)/python -m benchmarks.ingest
	$(BIN)/python -m benchmarks.costs
	$(BIN)/python -m benchmarks.backfill

# Re-record tests/fixtures/conformance/ with the real instrumentation libraries, each in its own virtualenv
# under var/conformance-venvs/ (ONLY=langfuse records one library; see tests/conformance/record/).
conformance-fixtures: setup
	$(BIN)/python -m tests.conformance.record $(if $(ONLY),--only $(ONLY))

lint: setup
	$(BIN)/ruff check .

ui: setup
	$(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf var .dagster_home/storage .dagster_home/history .dagster_home/schedules .dagster_home/logs
