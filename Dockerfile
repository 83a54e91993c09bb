# syntax=docker/dockerfile:1
# The batchline image: one binary, every service is a subcommand
# (docker-compose.yml runs `executor`, `aggregator`, `verifier`, `submit`, `web`).
#
# Targets: `runtime` (the default, last stage) compiles the binary in the
# Rust image; `prebuilt` takes a binary built elsewhere, the only file of
# its build context (scripts/containers/images.sh, where no registry serves
# the Rust image: docker build -f Dockerfile --target prebuilt DIR).
# RUNTIME_BASE is the image both run on: any bookworm (glibc 2.36).
# `prebuilt` comes before the Rust stage because the classic builder
# (DOCKER_BUILDKIT=0) builds every stage up to its target; for the same
# reason the default target needs BuildKit (Docker's builder since 23.0,
# and Compose's), which builds only the stages the target uses.
ARG RUNTIME_BASE=debian:bookworm-slim

# --- runtime base: user, directories and settings of both targets ------
FROM ${RUNTIME_BASE} AS runtime-base
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 batchline \
    && useradd --system --uid 10001 --gid batchline --home-dir /app --shell /usr/sbin/nologin batchline \
    && mkdir -p /app/worker-data \
    && chown -R batchline:batchline /app
WORKDIR /app
ENV WORKER_DATA_DIR=/app/worker-data \
    LOG_FORMAT=text \
    RUST_LOG=info
# No VOLUME: it would give every container an anonymous volume that
# `docker compose down` leaves behind; the aggregator's state is a mount of
# its own (docker-compose.yml, deploy/kubernetes), the other stages keep none.
USER batchline
# Prometheus metrics when METRICS_ADDR=0.0.0.0:9100 (docker-compose.yml sets it);
# the web console (`batchline web`) on 8080.
EXPOSE 9100 8080
ENTRYPOINT ["batchline"]
CMD ["--help"]

# --- prebuilt: a binary built on the host (the build context is just it) --
FROM runtime-base AS prebuilt
COPY batchline /usr/local/bin/batchline

# --- build ---------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src

# Dependencies first, against stub sources, so that a code change rebuilds
# only the workspace's own crates. Keep this list equal to the workspace
# members (scripts/check-compose.py checks it).
COPY Cargo.toml Cargo.lock ./
COPY crates/stateful-worker/Cargo.toml crates/stateful-worker/
COPY crates/workload/Cargo.toml crates/workload/
COPY crates/broker/Cargo.toml crates/broker/
COPY crates/store/Cargo.toml crates/store/
COPY crates/pipeline/Cargo.toml crates/pipeline/
COPY crates/launcher/Cargo.toml crates/launcher/
COPY crates/bench/Cargo.toml crates/bench/
COPY crates/batchline/Cargo.toml crates/batchline/
COPY crates/web/Cargo.toml crates/web/
COPY tests/fault_tolerance/Cargo.toml tests/fault_tolerance/
# Cargo reads every member's targets, so each library gets an empty lib,
# the binary an empty main, and each declared [[bench]] an empty main.
RUN set -eu; \
    for m in crates/* tests/fault_tolerance; do \
        mkdir -p "$m/src"; \
        [ "$m" = crates/batchline ] || : > "$m/src/lib.rs"; \
        for b in $(sed -n '/^\[\[bench\]\]/,/^name/s/^name *= *"\(.*\)"/\1/p' "$m/Cargo.toml"); do \
            mkdir -p "$m/benches"; echo 'fn main() {}' > "$m/benches/$b.rs"; \
        done; \
    done; \
    echo 'fn main() {}' > crates/batchline/src/main.rs; \
    cargo build --release --locked -p batchline

# The real sources; touched so cargo does not take the stubs' newer build
# for up to date.
COPY crates crates
RUN find crates -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p batchline \
    && install -m 0755 target/release/batchline /usr/local/bin/batchline

# --- runtime: the binary from the builder stage (the default target) ------
FROM runtime-base AS runtime
COPY --from=builder /usr/local/bin/batchline /usr/local/bin/batchline
