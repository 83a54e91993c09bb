#!/usr/bin/env bash
# scripts/containers/images.sh — builds the images the container suite runs,
# without any image registry: a Debian bookworm base from debootstrap
# (imported with `docker import`), Postgres and RabbitMQ from Debian's
# packages on it, and batchline from a binary built on this host (the
# Dockerfile's `prebuilt` stage). Prints the variables that point the
# compose file at them (POSTGRES_IMAGE=… RABBITMQ_IMAGE=… BATCHLINE_IMAGE=…).
#
# Cached: the base's tarball in $CONTAINERS_CACHE (default
# ~/.cache/batchline-containers), the images and their layers in the engine;
# a second run only re-copies the binary.
#
# Environment: BATCHLINE_BINARY (default target/debug/batchline; it must
# run on bookworm's glibc 2.36), DEBIAN_MIRROR (default: the host's apt
# source for Debian, else http://deb.debian.org/debian), CONTAINERS_CACHE.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/scripts/containers
CACHE=${CONTAINERS_CACHE:-$HOME/.cache/batchline-containers}
BINARY=${BATCHLINE_BINARY:-$ROOT/target/debug/batchline}

BASE_IMAGE=batchline-ci/bookworm:base
POSTGRES_IMAGE=batchline-ci/postgres:15
RABBITMQ_IMAGE=batchline-ci/rabbitmq:3.10
BATCHLINE_IMAGE=batchline-ci/batchline:local

log() { printf '[images] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# The legacy builder: BuildKit would fetch the Dockerfile's `# syntax`
# frontend from Docker Hub, which cannot be reached here.
build() {
  local out
  out=$(DOCKER_BUILDKIT=0 docker build "$@" 2>&1) || die "docker build $*:
$out"
}

debian_mirror() {
  [[ -n ${DEBIAN_MIRROR:-} ]] && {
    echo "$DEBIAN_MIRROR"
    return
  }
  local uri
  uri=$(grep -rhoE '(URIs:|^deb)[[:space:]]+[^[:space:]]+/debian/?([[:space:]]|$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
    awk '{print $2}' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

base() {
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return
  local tarball=$CACHE/bookworm-minbase.tar
  if [[ ! -s $tarball ]]; then
    command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
    local mirror rootfs
    mirror=$(debian_mirror)
    mkdir -p "$CACHE"
    rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    log "debootstrap --variant=minbase bookworm from $mirror (once; cached in $tarball)"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1 ||
      die "debootstrap failed: see $CACHE/debootstrap.log"
    # Point releases and security updates too, as a Debian host has them.
    {
      echo "deb $mirror bookworm main"
      echo "deb $mirror bookworm-updates main"
      echo "deb ${mirror%/debian*}/debian-security bookworm-security main"
    } >"$rootfs/etc/apt/sources.list"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
  log "importing $tarball as $BASE_IMAGE"
  docker import "$tarball" "$BASE_IMAGE" >/dev/null
}

main() {
  docker info >/dev/null 2>&1 || die "no Docker engine answers 'docker info'"
  [[ -x $BINARY ]] || die "no batchline binary at $BINARY (cargo build -p batchline, or set BATCHLINE_BINARY)"
  base
  log "building $POSTGRES_IMAGE and $RABBITMQ_IMAGE (Debian's postgresql-15 and rabbitmq-server)"
  build --build-arg "BASE=$BASE_IMAGE" -t "$POSTGRES_IMAGE" "$HERE/postgres"
  build --build-arg "BASE=$BASE_IMAGE" -t "$RABBITMQ_IMAGE" "$HERE/rabbitmq"
  # The binary alone is the build context: the repository's .dockerignore
  # keeps target/ out, and the Rust toolchain image is not reachable.
  local context
  context=$(mktemp -d)
  trap 'rm -rf "$context"' RETURN
  cp "$BINARY" "$context/batchline"
  log "building $BATCHLINE_IMAGE from $BINARY (Dockerfile, target prebuilt)"
  build -f "$ROOT/Dockerfile" --target prebuilt --build-arg "RUNTIME_BASE=$BASE_IMAGE" -t "$BATCHLINE_IMAGE" "$context"
  echo "POSTGRES_IMAGE=$POSTGRES_IMAGE RABBITMQ_IMAGE=$RABBITMQ_IMAGE BATCHLINE_IMAGE=$BATCHLINE_IMAGE"
}

main "$@"
