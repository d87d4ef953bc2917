# Everything runs from a local virtualenv that `make` creates and keeps in step with
# pyproject.toml + requirements.lock. No Docker, no AWS account needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
PIP_VERSION := 26.3

PORT ?= 8000
EMULATOR_PORT ?= 4566
export PORT EMULATOR_PORT

.DEFAULT_GOAL := help
.PHONY: help install dev test invoke lint lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock --group dev
	touch $@

install: $(STAMP) ## Create .venv with everything pinned (runs automatically)

dev: $(STAMP) ## Serve the API on http://127.0.0.1:$(PORT) over the embedded AWS emulation
	$(BIN)/python -m local.dev

test: $(STAMP) ## Run the test suite (unit + the whole pipeline on the emulation)
	$(BIN)/python -m pytest

invoke: $(STAMP) ## Run one function on a sample event: make invoke FN=api EVENT=events/api/health.json
	@test -n "$(FN)" -a -n "$(EVENT)" || (echo "usage: make invoke FN=<function> EVENT=events/<...>.json" && exit 2)
	@$(BIN)/python -m local.invoke $(FN) $(EVENT)

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lock: ## Re-pin every transitive dependency after changing pyproject.toml
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet pip==$(PIP_VERSION)
	.venv-lock/bin/python -m pip install --quiet --group dev
	.venv-lock/bin/python -m pip freeze --exclude-editable | sort > requirements.lock
	rm -rf .venv-lock

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache cdk.out build
