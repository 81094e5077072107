# The one task runner: README, CI and developers all go through it.
# `make help` lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
WITH_REDIS := ./scripts/with-redis.sh
# nextest if present (faster, one process per test), plain cargo test otherwise.
RUST_TEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo "$(CARGO) nextest run --workspace --no-fail-fast" || echo "$(CARGO) test --workspace --no-fail-fast")

.DEFAULT_GOAL := help

.PHONY: help setup demo build lint fmt test test-rust bench check-prereqs

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

check-prereqs:
	@command -v $(CARGO) >/dev/null || { echo "error: Rust (cargo) is required: https://rustup.rs" >&2; exit 1; }
	@command -v redis-server >/dev/null || { echo "error: redis-server is required for the tests: apt-get install -y redis-server (or brew install redis)" >&2; exit 1; }

setup: ## fetch every dependency (Rust crates)
	@command -v $(CARGO) >/dev/null || { echo "error: Rust (cargo) is required: https://rustup.rs" >&2; exit 1; }
	$(CARGO) fetch --locked

demo: ## the main job: the embedded (L1-only) cache under a burst on a cold key
	$(CARGO) run --locked --release -p stratacache --example demo

build: ## build every crate (release)
	$(CARGO) build --locked --release --workspace

fmt: ## format the code
	$(CARGO) fmt --all

lint: ## formatting check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

test: check-prereqs ## every test suite, against real Redis and a real 3-master Redis Cluster
	$(WITH_REDIS) $(MAKE) --no-print-directory test-rust

test-rust: ## Rust tests only (expects REDIS_URL / STRATACACHE_CLUSTER; `make test` sets them)
	$(RUST_TEST)

bench: check-prereqs ## criterion benchmarks beside raw moka / raw redis (see docs/benchmarks.md)
	$(WITH_REDIS) $(CARGO) bench --locked -p stratacache --bench cache
