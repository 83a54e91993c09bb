# batchline — the drill and the developer loop. `make help` lists targets.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: chaos chaos-stack help test fmt lint build release
.PHONY: bin up up-detached down logs ps check-metadata view-metadata status queue partitions purge cancel results demo bench chaos check-compose test-drill
.PHONY: check-kubernetes test-containers

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

test: ## formatting, lints, and every test (needs Postgres and RabbitMQ: started from docker-compose.yml when only Docker answers)
	scripts/test-services.sh
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build -p batchline
	$(CARGO) test --workspace
	scripts/test-stack.sh
	$(MAKE) --no-print-directory check-compose
	$(MAKE) --no-print-directory check-kubernetes

fmt: ## format the code
	$(CARGO) fmt --all

lint: ## clippy with warnings as errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build: ## debug build
	$(CARGO) build --workspace

release: ## release build of the binary
	$(CARGO) build --release -p batchline

# --- the drill: docs/drill.md; scripts/stack.sh does the work -------------
# Docker Compose where `docker info` answers, local processes otherwise
# (STACK_MODE=local|compose forces one; the local mode is `batchline stack`).
# worker-1 = executor (EXECUTORS=N of them), worker-2 = aggregator (AGGREGATORS=N),
# worker-3 = verifier, runner = the submitter. The services' settings and
# their defaults come from the environment and .env, read by the binary.

# The binary the local mode runs. Setting BATCHLINE_BIN (e.g. to a debug
# build) skips the release build.
ifeq ($(strip $(BATCHLINE_BIN)),)
BATCHLINE_BIN := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/release/batchline
STACK_BUILD := 1
endif
STACK := BATCHLINE_BIN='$(BATCHLINE_BIN)' scripts/stack.sh

bin: ## build the release binary for the local mode (not when BATCHLINE_BIN is set or in compose mode)
ifeq ($(STACK_BUILD),1)
	@if [ "$$($(STACK) mode)" = local ]; then $(CARGO) build --release -p batchline; fi
endif

up: bin ## start the workers and the runner; logs interleaved with a prefix per worker; Ctrl-C stops all
	@$(STACK) up

up-detached: bin ## start the workers and the runner in the background
	@$(STACK) up-detached

down: ## stop everything `up` started (SIGTERM, SIGKILL after STOP_TIMEOUT s)
	@$(STACK) down

logs: ## follow the logs of every worker (TAIL=100 lines first; FOLLOW=0 to print and exit)
	@$(STACK) logs

logs-worker-%: ## follow the log of worker-N (N = 1, 2, 3, 1-K / 2-K for one of EXECUTORS / AGGREGATORS, runner)
	@$(STACK) logs $*

kill-worker-%: ## SIGKILL worker-N (kill-worker-1 kills every executor, kill-worker-1-K one of them; 2-K likewise)
	@$(STACK) kill $*

restart-worker-%: bin ## start worker-N again (stopping it first if it runs), same env, log appended
	@$(STACK) restart $*

ps: ## which workers run, their pids and log files
	@$(STACK) status

check-metadata: bin ## the aggregator's state: which batches have state and how many rows each
	@$(STACK) cli metadata

view-metadata: bin ## the state rows of one batch and their CRC status: make view-metadata BATCH=<id>
	@if [ -z "$(BATCH)" ]; then echo "usage: make view-metadata BATCH=<batch id>  (make check-metadata lists them)" >&2; exit 2; fi
	@$(STACK) cli metadata "$(BATCH)"

status: bin ## batches with progress, attempts, verdict and runs/s (batchline status)
	@$(STACK) cli status

queue: bin ## batches waiting or running in the order served: tenant, priority, share now, runs/s, time left (batchline queue; ARGS=--json)
	@$(STACK) cli queue $(ARGS)

partitions: bin ## the aggregator's partitions: owner, epoch, open batches, queue depth, last hand-over
	@$(STACK) cli partitions

purge: bin ## remove batches everywhere (docs/operations.md, Retention): make purge ARGS='--older-than 30d --dry-run', ARGS='<id> …', --force for running ones
	@if [ -z "$(ARGS)" ]; then echo "usage: make purge ARGS='--older-than 30d [--dry-run]'  or  ARGS='<batch id> … [--force]'" >&2; exit 2; fi
	@$(STACK) cli purge $(ARGS)

cancel: bin ## stop batches for good, they end CANCELLED with what ran checked: make cancel BATCH=<id> [REASON='…']
	@if [ -z "$(BATCH)" ]; then echo "usage: make cancel BATCH=<batch id> [REASON='why']  (make status lists them)" >&2; exit 2; fi
	@$(STACK) cli cancel $(BATCH) --reason "$(REASON)"

results: bin ## a batch's aggregate: make results BATCH=<id>
	@if [ -z "$(BATCH)" ]; then echo "usage: make results BATCH=<batch id>  (make status lists them)" >&2; exit 2; fi
	@$(STACK) cli results "$(BATCH)"

demo: ## zero-setup demo: the whole pipeline in one process (batchline demo, release build)
	$(CARGO) run --release -p batchline -- demo

bench: ## the performance benchmark (batchline bench, release build)
	$(CARGO) run --release -p batchline -- bench

chaos: ## chaos coordinator: continuous batches, random SIGKILLs of every stage, aggregator scale-ups/downs and owner failures, cancels, then a loss/duplication report (CHAOS_DURATION_S, CHAOS_KILL_INTERVAL_S, CHAOS_SEED, CHAOS_AGGREGATOR_EVENTS, CHAOS_CANCEL_INTERVAL_S, …)
	$(CARGO) build --release -p batchline -p fault_tolerance --bin batchline --bin chaos
	BATCHLINE_BIN=$(CURDIR)/target/release/batchline $(CURDIR)/target/release/chaos $(CHAOS_ARGS)

chaos-stack: export STACK_MODE := local
chaos-stack: bin ## the make-up stack + random SIGKILLs while the runner's batches run; fails unless every batch ends SUCCESS (CHAOS_KILLS, CHAOS_SEED, …)
	@BATCHLINE_BIN='$(BATCHLINE_BIN)' scripts/chaos.sh

test-drill: ## tests of the drill: batchline stack with a fake service binary, and scripts/stack.sh's compose mapping with a fake docker; no services needed
	$(CARGO) test -p batchline --test stack
	scripts/test-stack.sh

test-containers: ## the container suite: the drill, the RabbitMQ cluster drills and the network-fault drills on the compose stack in Docker, images built here (installs docker.io and Compose if missing, starts dockerd; root; SUITES=drill|cluster|faults; docs/drill.md)
	scripts/containers/run.sh

check-compose: ## validate docker-compose.yml, Dockerfile and deploy/ against .env.example and the workspace (.env.example against `batchline --help`: cargo test -p batchline --test env_docs)
	python3 scripts/check-compose.py

check-kubernetes: ## validate deploy/kubernetes/ against the binary's --help, the served probe paths and the bench's RSS (needs a debug build)
	python3 scripts/check-kubernetes.py --bin $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/debug/batchline
