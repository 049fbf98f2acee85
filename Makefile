# Hookline — the two commands: `make run` (a working local stack) and `make test` (every test).
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: help deps run token build test fmt-check clippy unit receiver-tools browser-tools deploy-check prometheus-check openapi-check fuzz bench clean-run

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

deps: ## Install the system packages the stack and tests need (redis-server, PostgreSQL for the migration tests, Prometheus)
	@scripts/install-deps.sh

build: ## Build every service binary (debug)
	$(CARGO) build --workspace --bins

run: deps ## Start a local stack: its own redis-server (unless HOOKLINE__REDIS__URL is set) and the services
	@scripts/run-local.sh

token: ## Print a development admin JWT for the `make run` stack (signed with config/dev.toml's secret, or HOOKLINE_DEV_JWT_SECRET)
	@HOOKLINE_DEV_JWT_SECRET="$${HOOKLINE_DEV_JWT_SECRET:-$$(sed -n 's/^jwt_secret = "\(.*\)"$$/\1/p' config/dev.toml)}" \
		$(CARGO) run -q -p api-gateway -- dev-token --admin

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

receiver-tools: ## Install the receiver-side verifiers the signature tests use (.tools/receiver-venv: standardwebhooks, cryptography)
	@bash scripts/receiver-tools.sh >/dev/null

browser-tools: ## Install what the console's browser test drives (Debian chromium + chromium-driver when missing; .tools/browser-venv: selenium)
	@bash scripts/browser-tools.sh >/dev/null

unit: build receiver-tools browser-tools ## Unit and integration tests (end-to-end tests included: they spawn the built binaries, a Prometheus and headless Chromium)
	HOOKLINE_REQUIRE_PROMETHEUS=1 $(CARGO) test --workspace

deploy-check: ## Lint the Helm chart, Dockerfile and compose file
	bash scripts/check-deploy.sh

prometheus-check: ## promtool check rules and promtool test rules on deploy/prometheus/ (installs Prometheus when missing)
	bash scripts/check-prometheus.sh

openapi-check: ## Validate openapi/openapi.yaml (openapi-spec-validator, examples, conventions)
	bash scripts/check-openapi.sh

fuzz: build ## Fuzz the API against openapi/openapi.yaml (schemathesis; the api-gateway alone, ~30 s)
	bash scripts/fuzz-api.sh

test: deps fmt-check clippy unit deploy-check prometheus-check openapi-check fuzz ## Everything CI runs: fmt, clippy, every test, deploy, Prometheus-rule and OpenAPI checks, API fuzzing
	@echo "make test: all checks passed"

bench: deps ## Throughput and latency benchmark (release build)
	@scripts/bench.sh

clean-run: ## Remove the local stack's state (.run/)
	rm -rf .run
