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
.PHONY: help install dev dev-replicate test test-unit fuzz invoke redrive api-key api-key-rotate-secret api-key-revoke api-keys webhook-secret bench cost load lint lock clean bundle synth bootstrap diff deploy destroy

# AWS deployment (see README "Deploy to AWS"). The CDK CLI is pinned in package.json (aws-cdk 2.x:
# npm's `latest` tag is a 3.0.0 build that cannot read this aws-cdk-lib's output).
CDK := node_modules/.bin/cdk
CDK_ARGS ?=
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION = 20
export CDK_DISABLE_CLI_TELEMETRY = true

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock client/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock --group dev
	# The client library and the `mediagen` command (client/), editable.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e './client[cli,aws]'
	touch $@

install: $(STAMP) $(CDK) ## Create .venv with everything pinned (the mediagen client and CLI too), and the CDK CLI

dev: $(STAMP) ## Serve the API on http://127.0.0.1:$(PORT) over the embedded AWS emulation
	$(BIN)/python -m local.dev

dev-replicate: $(STAMP) ## Like dev, but generating on the Replicate test double (real client, webhooks)
	$(BIN)/python -m local.dev --replicate-double

test: $(STAMP) $(CDK) ## Run the test suite (unit + the whole pipeline on the emulation)
	$(BIN)/python -m pytest

test-unit: $(STAMP) ## The fast lane: unit tests only (no emulation), well under a minute
	$(BIN)/python -m pytest tests/unit

fuzz: $(STAMP) ## schemathesis against the API on the emulation (FUZZ_MAX_EXAMPLES per operation)
	$(BIN)/python -m tests.fuzz.run

invoke: $(STAMP) ## Run one function on a sample event: make invoke FN=api EVENT=events/api/health.json
	@test -n "$(FN)" -a -n "$(EVENT)" || (echo "usage: make invoke FN=<function> EVENT=events/<...>.json" && exit 2)
	@$(BIN)/python -m local.invoke $(FN) $(EVENT)

redrive: $(STAMP) ## New attempt of each job in the dead-letter queue, then empty it (STACK=<stack> if deployed)
	$(BIN)/python -m ops.redrive $(if $(STACK),--stack $(STACK))

api-key: $(STAMP) ## Create an API key for NAME (printed once, as the last line, after its webhook signing secret); MAX_ACTIVE_JOBS=, MAX_SUBMITS_PER_MINUTE= override its quota; STACK=<stack> if deployed
	$(BIN)/python -m ops.api_keys $(if $(STACK),--stack $(STACK)) create $(NAME) $(if $(MAX_ACTIVE_JOBS),--max-active-jobs $(MAX_ACTIVE_JOBS)) $(if $(MAX_SUBMITS_PER_MINUTE),--max-submits-per-minute $(MAX_SUBMITS_PER_MINUTE))

api-key-rotate-secret: $(STAMP) ## New webhook signing secret for NAME's keys (the old one signs too for GRACE_HOURS, 24); STACK=<stack> if deployed
	$(BIN)/python -m ops.api_keys $(if $(STACK),--stack $(STACK)) rotate-secret $(NAME) $(if $(GRACE_HOURS),--grace-hours $(GRACE_HOURS))

api-key-revoke: $(STAMP) ## Revoke every key of NAME, or only KEY_ID (STACK=<stack> if deployed)
	$(BIN)/python -m ops.api_keys $(if $(STACK),--stack $(STACK)) revoke $(NAME) $(if $(KEY_ID),--key-id $(KEY_ID))

api-keys: $(STAMP) ## List the API keys, never the keys themselves (STACK=<stack> if deployed)
	$(BIN)/python -m ops.api_keys $(if $(STACK),--stack $(STACK)) list

webhook-secret: $(STAMP) ## The deployment's webhook signing secret, for jobs made without a key (ROTATE=1: a new one); STACK=<stack> if deployed
	$(BIN)/python -m ops.api_keys $(if $(STACK),--stack $(STACK)) deployment-secret $(if $(ROTATE),--rotate $(if $(GRACE_HOURS),--grace-hours $(GRACE_HOURS)))

bench: $(STAMP) ## Cold start of every function (import + first call), in fresh interpreters
	$(BIN)/python -m bench.cold_start

cost: $(STAMP) ## AWS cost per job and per 1M jobs, counted on the emulation (shared/prices.json)
	$(BIN)/python -m bench.cost

JOBS ?= 1000
load: $(STAMP) ## A burst on make dev (mock): make load [JOBS=200]; prints codes, drain rate, peak RSS and threads
	$(BIN)/python -m bench.load --jobs $(JOBS) --clients 20

lint: $(STAMP) ## ruff check and format check (CI runs it)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lock: ## Re-pin every transitive dependency after changing pyproject.toml
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet pip==$(PIP_VERSION)
	.venv-lock/bin/python -m pip install --quiet --group dev
	.venv-lock/bin/python -m pip install --quiet './client[cli,aws]'
	.venv-lock/bin/python -m pip freeze --exclude-editable | sort > requirements.lock
	rm -rf .venv-lock

$(CDK): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

bundle: $(STAMP) ## Build the Lambda packages in build/ and print their sizes (cdk synth/deploy do it too)
	$(BIN)/python -m infra.bundle --report

# The CDK app builds the Lambda packages itself when it stages them (synth, diff, deploy; never
# bootstrap or destroy): these targets are `npx cdk ...` with the repo's options.
synth: $(STAMP) $(CDK) ## Synthesize the CloudFormation template into cdk.out/ (no AWS account needed)
	AWS_EC2_METADATA_DISABLED=true $(CDK) synth --quiet --no-notices $(CDK_ARGS)
	@echo "Template: $$(ls -t cdk.out/*.template.json | head -1)"

bootstrap: $(STAMP) $(CDK) ## Once per account and region: the CDK's staging bucket and deploy roles
	$(CDK) bootstrap --no-notices $(CDK_ARGS)

diff: $(STAMP) $(CDK) ## Show what `make deploy` would change in your AWS account
	$(CDK) diff --no-notices $(CDK_ARGS)

deploy: $(STAMP) $(CDK) ## Deploy to AWS (credentials + `cdk bootstrap` once); outputs in cdk-outputs.json
	$(CDK) deploy --no-notices --require-approval broadening --outputs-file cdk-outputs.json $(CDK_ARGS)

destroy: $(STAMP) $(CDK) ## Delete the stack (builds nothing; a production stage keeps its table, bucket, secret, logs)
	$(CDK) destroy --no-notices $(CDK_ARGS)

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache cdk.out build node_modules cdk-outputs.json
