# batchline — the drill and the developer loop. `make help` lists targets.
SHELL := /bin/bash
CARGO ?= cargo
export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
export RABBITMQ_URL ?= amqp://guest:guest@127.0.0.1:5672/%2f

.PHONY: help test fmt lint build release

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

test: ## formatting, lints, and every test (needs Postgres and RabbitMQ)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build -p batchline
	$(CARGO) test --workspace

fmt: ## format the code
	$(CARGO) fmt --all

lint: ## clippy with warnings as errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build: ## debug build
	$(CARGO) build --workspace

release: ## release build of the binary
	$(CARGO) build --release -p batchline
