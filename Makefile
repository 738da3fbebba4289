# sensor-stream: every set-up step lives here, so a fresh clone needs only
# `make dev` (run the whole system locally) and `make test` (all checks).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed
# Tools kept out of .venv (their dependencies would clash with the project's): uv (make
# lock) and checkov (the template check in make test).
TOOLS := build/tools
UV_VERSION := 0.13.8
CHECKOV := build/checkov
CHECKOV_VERSION := 3.3.30
STAMP_CHECKOV := $(CHECKOV)/.installed
CHROMIUM ?= /usr/bin/chromium
MOSQUITTO ?= /usr/sbin/mosquitto
ORG ?= acme
CDK := npx --no-install cdk
TSC := node_modules/.bin/tsc
# Which deployment (stack SensorStream-$(STAGE)); staging and prod share an account.
STAGE ?= prod
STACK := SensorStream-$(STAGE)
CDK_CONTEXT := -c stage=$(STAGE)
# The functions' shared package and the repo root, as in Lambda and in pytest.
export PYTHONPATH := $(CURDIR)/functions:$(CURDIR)

.PHONY: help install lock dev test lint typecheck types vendor unit infra-test e2e token simulate bench cost posting soak scale synth deploy deploy-account smoke diff destroy clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP_PY): requirements-dev.txt functions/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(STAMP_NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's Chromium drives the browser test (Playwright may not download browsers here).
$(CHROMIUM):
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null

# Debian's mosquitto is the local stack's MQTT broker (the embedded amqtt stands in
# where it cannot be installed, at about 20 times the CPU per message).
$(MOSQUITTO):
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq mosquitto >/dev/null || \
	echo "mosquitto could not be installed; the local stack uses amqtt"

install: $(STAMP_PY) $(STAMP_NODE) $(STAMP_CHECKOV) ## Create .venv, node_modules and the checkov tool

$(STAMP_CHECKOV):
	$(PYTHON) -m venv $(CHECKOV)
	$(CHECKOV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

$(TOOLS)/bin/uv:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

lock: $(TOOLS)/bin/uv ## Re-pin the functions' dependencies with hashes for the Lambda runtime (after editing functions/requirements.txt)
	$(TOOLS)/bin/uv pip compile functions/requirements.txt --python-version 3.14 \
		--python-platform aarch64-manylinux_2_34 --generate-hashes --quiet -o functions/requirements.lock

dev: $(STAMP_PY) $(MOSQUITTO) ## Run the whole system on 127.0.0.1 until Ctrl-C
	$(PY) -m devstack

token: $(STAMP_PY) ## Print a token for the local stack: make token ORG=acme [UNITS=a,b]
	@$(PY) -m devstack.token --org "$(ORG)" $(if $(UNITS),--units "$(UNITS)")

simulate: $(STAMP_PY) ## Simulated devices against an MQTT broker (see devstack/simulator.py --help)
	$(PY) -m devstack.simulator $(ARGS)

lint: $(STAMP_PY) ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP_PY) $(STAMP_NODE) ## mypy, and tsc --strict over web/ (checkJs) and a TypeScript consumer of the client
	$(VENV)/bin/mypy functions devstack infra benchmarks scripts tests
	$(TSC) -p web/tsconfig.json
	$(TSC) -p tests/typescript/tsconfig.json

types: $(STAMP_NODE) ## Write the client package's declarations (web/types/*.d.ts) from its JSDoc (commit them)
	$(TSC) -p web/tsconfig.types.json

vendor: $(STAMP_NODE) ## Copy uPlot from node_modules into web/vendor (the page has no build step; commit it)
	mkdir -p web/vendor
	cp node_modules/uplot/dist/uPlot.esm.js node_modules/uplot/dist/uPlot.min.css web/vendor/
	cp node_modules/uplot/LICENSE web/vendor/uPlot.LICENSE

unit: $(STAMP_PY) $(STAMP_NODE) $(CHROMIUM) $(MOSQUITTO)
	$(PY) -m pytest tests/unit -q

infra-test: $(STAMP_PY) $(STAMP_NODE) $(STAMP_CHECKOV) ## CDK template assertions, cdk-nag, cfn-lint and checkov (no AWS account needed)
	$(PY) -m pytest tests/infra -q

e2e: $(STAMP_PY) $(STAMP_NODE) $(CHROMIUM) $(MOSQUITTO)
	$(PY) -m pytest tests/e2e -q

test: $(STAMP_PY) $(STAMP_NODE) $(STAMP_CHECKOV) $(CHROMIUM) $(MOSQUITTO) lint typecheck ## Lint, type-check and run every test
	$(PY) -m pytest -q

bench: $(STAMP_PY) $(MOSQUITTO) ## Live path end to end vs a naive baseline, and in-process figures (prints, never asserts): ARGS="--scenario 100x100", ARGS=--help
	$(PY) -m benchmarks $(ARGS)

cost: $(STAMP_PY) ## Monthly AWS bill by service, three scenarios x three designs (docs/cost.md): ARGS="--devices 200 --browsers 40", ARGS=--help
	$(PY) -m benchmarks.cost $(ARGS)

posting: $(STAMP_PY) ## Flush posting: posts/s and CPU per post, boto3 vs the signed client vs asyncio, on the local gateway (docs/posting.md): ARGS="--latency 20/150", ARGS=--help
	$(PY) -m benchmarks.posting $(ARGS)

soak: $(STAMP_PY) $(MOSQUITTO) ## Devices and browsers with faults against the local stack for 60 s; exits 1 on any loss: ARGS="--duration 300", ARGS=--help
	$(PY) -m benchmarks.soak $(ARGS)

scale: $(STAMP_PY) ## The sharded flush at 1,000/10,000/50,000 connections, simulated with API Gateway's latency and rate limit (docs/scaling.md): ARGS="--sizes 50000 --account-rate 60000", ARGS=--help
	$(PY) -m benchmarks.scale $(ARGS)

synth: $(STAMP_PY) $(STAMP_NODE) ## Synthesize the CloudFormation templates offline into cdk.out/ (STAGE=prod)
	$(CDK) synth --quiet $(CDK_CONTEXT) $(CDK_ARGS)

deploy: $(STAMP_PY) $(STAMP_NODE) ## Deploy stage STAGE (default prod) to the AWS account of your credentials
	$(CDK) deploy $(STACK) --require-approval broadening $(CDK_CONTEXT) $(CDK_ARGS)

smoke: $(STAMP_PY) ## Check deployed stage STAGE end to end (AWS credentials): device and HTTP -> browser, dashboard metrics, an alarm to the topic
	$(PY) -m scripts.smoke --stage $(STAGE) $(ARGS)

deploy-account: $(STAMP_PY) $(STAMP_NODE) ## Once per account and region, before the first stage: API Gateway logging role, IoT logging
	$(CDK) deploy SensorStreamAccount --require-approval broadening $(CDK_CONTEXT) $(CDK_ARGS)

diff: $(STAMP_PY) $(STAMP_NODE) ## Show what a deploy of STAGE would change
	$(CDK) diff $(STACK) $(CDK_CONTEXT) $(CDK_ARGS)

destroy: $(STAMP_PY) $(STAMP_NODE) ## Delete the stack of STAGE
	$(CDK) destroy $(STACK) $(CDK_CONTEXT) $(CDK_ARGS)

clean:
	rm -rf cdk.out build .pytest_cache .mypy_cache .ruff_cache test-artifacts
