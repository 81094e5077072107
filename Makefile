# The one task runner: README, CI and developers all go through it.
# `make help` lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
WITH_REDIS := ./scripts/with-redis.sh
WITH_POSTGRES := ./scripts/with-postgres.sh
# nextest if present (faster, one process per test), plain cargo test otherwise.
RUST_TEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo "$(CARGO) nextest run --workspace --no-fail-fast" || echo "$(CARGO) test --workspace --no-fail-fast")

# Python tooling lives in .venv (created on first use, pinned versions).
PYTHON ?= python3
VENV := .venv
VENV_BIN := $(CURDIR)/$(VENV)/bin
PY := $(VENV_BIN)/python
MATURIN := VIRTUAL_ENV=$(CURDIR)/$(VENV) PATH=$(VENV_BIN):$$PATH $(VENV_BIN)/maturin

.DEFAULT_GOAL := help

.PHONY: help setup demo demo-rust build lint lint-rust lint-py fmt test test-rust test-py test-install test-django-contract test-fleet test-http test-readme test-node node-build lint-node py-develop bench bench-py bench-node bench-stampede bench-coherence bench-faults bench-memory bench-http bench-edge bench-otel fuzz check-prereqs

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

check-prereqs:
	@command -v $(CARGO) >/dev/null || { echo "error: Rust (cargo) is required: https://rustup.rs" >&2; exit 1; }
	@command -v node >/dev/null || { echo "error: Node.js >= 18 is required" >&2; exit 1; }
	@command -v redis-server >/dev/null || { echo "error: redis-server is required for the tests: apt-get install -y redis-server (or brew install redis)" >&2; exit 1; }
	@{ command -v varnishd >/dev/null || [ -x /usr/sbin/varnishd ]; } || { echo "error: Varnish is required for the edge tests: apt-get install -y varnish varnish-modules" >&2; exit 1; }

setup: $(VENV)/.installed node_modules/.installed ## fetch every dependency (Rust crates, Python tools into .venv, npm packages)
	@command -v $(CARGO) >/dev/null || { echo "error: Rust (cargo) is required: https://rustup.rs" >&2; exit 1; }
	$(CARGO) fetch --locked

$(VENV)/.installed: python/requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: Python >= 3.10 is required ($(PYTHON) not found)" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "error: Python >= 3.10 is required ($(PYTHON) is older)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV_BIN)/pip install -q --upgrade pip
	$(VENV_BIN)/pip install -q -r python/requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "error: Node.js >= 18 with npm is required" >&2; exit 1; }
	npm ci --no-audit --no-fund
	touch $@

node-build: node_modules/.installed ## build the Node addon (release, napi) into node/
	npm run --silent build

py-develop: $(VENV)/.installed ## build the native module into .venv (debug) with maturin
	$(MATURIN) develop --locked -q

demo: node-build ## the main job: an Express app on the embedded (in-process) cache, 2,000 concurrent requests on a cold key
	node examples/demo.js

demo-rust: ## the same burst against the Rust API directly
	$(CARGO) run --locked --release -p stratacache --example demo

build: ## build every crate (release)
	$(CARGO) build --locked --release --workspace

fmt: ## format the code
	$(CARGO) fmt --all
	[ ! -x $(VENV_BIN)/ruff ] || $(VENV_BIN)/ruff format python tests/python tests/fleet tests/http tests/readme benches/python

lint: lint-rust lint-py lint-node ## every linter and type check

lint-rust: ## rustfmt check, clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

lint-py: py-develop ## ruff, mypy (strict), stubtest of _native.pyi against the built module
	$(VENV_BIN)/ruff check python tests/python tests/fleet tests/http tests/readme tests/install benches/python benches/stampede benches/coherence benches/memory benches/http benches/edge
	$(VENV_BIN)/ruff format --check python tests/python tests/fleet tests/http tests/readme tests/install benches/python benches/stampede benches/coherence benches/memory benches/http benches/edge
	$(VENV_BIN)/mypy
	$(PY) -m mypy.stubtest stratacache._native

test: check-prereqs ## every test suite, against real Redis, a real 3-master Redis Cluster and PostgreSQL
	$(WITH_REDIS) $(WITH_POSTGRES) $(MAKE) --no-print-directory test-rust test-py test-node test-http test-readme test-fleet test-install test-django-contract

test-rust: ## Rust tests only (expects REDIS_URL / STRATACACHE_CLUSTER; `make test` sets them)
	$(RUST_TEST)

lint-node: node_modules/.installed ## ESLint over every JS file, tsc --checkJs over node/, tsc over the shipped .d.ts files
	npx eslint node tests/node examples benches/node benches/memory benches/http eslint.config.mjs
	npx tsc -p node/tsconfig.json
	npx tsc -p tests/node/tsconfig.json
	node scripts/lint-workflows.js

tests/node/keyv-suite/node_modules/.installed: tests/node/keyv-suite/package.json tests/node/keyv-suite/package-lock.json
	cd tests/node/keyv-suite && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

test-node: node-build py-develop tests/node/keyv-suite/node_modules/.installed ## Node tests only (node --test; the interop test runs the Python package)
	STRATACACHE_PYTHON=$(PY) node --test --test-concurrency=1 tests/node/

test-py: py-develop node-build ## Python tests only (pytest; same environment as test-rust; the CLI case table runs node/cli.js too)
	$(PY) -m pytest

test-http: node-build py-develop ## the HTTP caching case table (tests/http/cases.json) against FastAPI, Express and Fastify, two app processes each
	STRATACACHE_NODE=node $(PY) -m pytest -p no:cacheprovider tests/http

test-readme: node-build py-develop ## the README's Python and JS examples, extracted, type-checked (mypy --strict, tsc) and run
	STRATACACHE_NODE=node $(PY) -m pytest -p no:cacheprovider tests/readme

test-fleet: node-build py-develop ## cross-process stampede tests: Python and Node processes on one Redis
	STRATACACHE_NODE=node $(PY) -m pytest -p no:cacheprovider tests/fleet

test-install: node-build py-develop ## the wheel and the npm packages installed into fresh directories without cargo on PATH, then used
	$(PY) -m pytest -p no:cacheprovider tests/install

test-django-contract: py-develop ## Django's own cache test suite (BaseCacheTests) on every configuration
	./scripts/django-contract.sh $(PY)

bench-py: check-prereqs $(VENV)/.installed ## Django-API benchmarks beside LocMem, RedisCache, django-redis, cachetools, cashews
	$(VENV_BIN)/pip install -q -r python/requirements-bench.txt
	$(MATURIN) develop --locked -q --release
	$(WITH_REDIS) $(PY) benches/python/bench_django.py
	$(WITH_REDIS) $(PY) benches/python/bench_http.py
	@echo "(the release build is now in .venv; the next 'make test' reinstalls the debug build)"

bench-stampede: check-prereqs node-build $(VENV)/.installed ## stampede scenarios (cold key, hot key expiring under load) beside Django, django-redis, cashews, bentocache, cache-manager
	$(VENV_BIN)/pip install -q -r python/requirements-bench.txt
	$(MATURIN) develop --locked -q --release
	cd benches/node && npm ci --ignore-scripts --no-audit --no-fund
	$(WITH_REDIS) $(PY) benches/stampede/run.py

bench-coherence: check-prereqs $(VENV)/.installed ## invalidation propagation latency across processes, tag invalidation cost vs tagged entries
	$(MATURIN) develop --locked -q --release
	$(WITH_REDIS) $(PY) benches/coherence/run.py

bench-invalidation: check-prereqs $(VENV)/.installed ## database change -> every process's L1 through the PostgreSQL change feed (p50/p99/max), and changes/s the listener sustains (ROUNDS, OBSERVERS, CHANGES)
	$(MATURIN) develop --locked -q --release
	$(WITH_REDIS) $(WITH_POSTGRES) $(PY) benches/invalidation/run.py

bench-node: check-prereqs node-build ## Node benchmarks beside lru-cache, cache-manager 7, bentocache, ioredis
	cd benches/node && npm ci --ignore-scripts --no-audit --no-fund
	$(WITH_REDIS) node benches/node/bench.js
	node benches/node/tracking.js on
	node benches/node/tracking.js off

bench-http: check-prereqs node-build $(VENV)/.installed ## cached HTTP responses in req/s with wrk: FastAPI, Express, Fastify beside fastapi-cache2, apicache, route-cache, fastify-lcache (APPS="express" to narrow)
	$(VENV_BIN)/pip install -q -r python/requirements-bench.txt
	$(MATURIN) develop --locked -q --release
	cd benches/node && npm ci --ignore-scripts --no-audit --no-fund
	$(WITH_REDIS) $(PY) benches/http/run.py $(APPS)

bench-otel: $(VENV)/.installed node-build ## what tracing costs on the L1-hit path: Python (plain, no SDK, API only, SDK recording) and Node (untraced, no diagnostics_channel subscriber, a TracingChannel subscriber, OTel SDK recording)
	$(MATURIN) develop --locked -q --release
	$(PY) benches/python/bench_otel.py
	node benches/node/otel.js

bench-edge: check-prereqs node-build $(VENV)/.installed ## a real Varnish in front of the FastAPI and Express apps: invalidate_tags -> Varnish serving the new body (p50/p99), req/s served by Varnish vs the app (APPS="express" to narrow)
	$(MATURIN) develop --locked -q --release
	$(WITH_REDIS) $(PY) benches/edge/run.py $(APPS)

bench-faults: check-prereqs ## steady load through a Redis SIGKILL + restart and a 200 ms-per-command slowdown: errors, wrong values, latency, time back
	$(CARGO) run --locked --release -q -p stratacache --example faults

bench-memory: check-prereqs node-build $(VENV)/.installed ## L1 memory soak: RSS against the 64 MiB bound over 20 M distinct writes, raw quick_cache and moka / Rust (system allocator, mimalloc) / Python / Django / Node, and Node without a cache (WRITES=N, APIS="plain node" to narrow)
	$(CARGO) build --locked --release -q -p stratacache --example l1_memory --example l1_memory_mimalloc
	$(MATURIN) develop --locked -q --release
	$(PY) benches/memory/run.py $(APIS)

FUZZ_SECONDS ?= 60
fuzz: ## fuzz the envelope and bus decoders, FUZZ_SECONDS (60) each; cargo-fuzz on the pinned toolchain, not part of `make test`
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked --version 0.13.2
	$(PYTHON) scripts/fuzz-seed.py
	# cargo-fuzz passes -Z sanitizer flags; RUSTC_BOOTSTRAP lets the pinned
	# stable toolchain (which ships the sanitizer runtimes) accept them.
	cd fuzz && for t in envelope bus; do \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=65536 || exit 1; \
	done

bench: check-prereqs ## criterion benchmarks beside raw moka / raw redis (see docs/benchmarks.md)
	$(WITH_REDIS) $(CARGO) bench --locked -p stratacache --bench cache
