#!/usr/bin/env bash
# scripts/stack.sh — runs the drill's services (worker-1 executor, worker-2
# aggregator, worker-3 verifier, runner) with Docker Compose where a Docker
# engine answers, and otherwise as local processes. The Makefile's drill
# targets are thin wrappers around it; docs/drill.md is the user's guide.
#
# This script only picks the mode and maps the commands onto `docker
# compose`. The local mode is `batchline stack COMMAND` (crates/launcher,
# module drill), which it execs with $BATCHLINE_BIN: that reads .env, and
# keeps its state under $WORKER_DATA_DIR (run/NAME.pid, run/NAME.env,
# logs/NAME.log).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

usage() {
  cat <<'EOF'
usage: scripts/stack.sh COMMAND [ARGS]

  up                 start the services and follow their logs; Ctrl-C stops them all
  up-detached        start the services in the background
  down               stop everything the stack started (SIGTERM, then SIGKILL after STOP_TIMEOUT s)
  logs [N]           follow the logs of all services, or of worker-N (TAIL lines first; FOLLOW=0 to not follow)
  kill N [SIGNAL]    send SIGKILL (or SIGNAL) to worker-N: N is 1, 2, 3, 1-K (one executor), 2-K (one aggregator) or runner
  restart N          stop worker-N if it runs, then start it again with the env it was started with
  status             which services run, their pids and logs
  cli ARGS...        run `batchline ARGS` with the stack's environment (metadata, status, results, …)
  mode               print the mode that would be used: compose or local
  data-dir           print the local mode's state directory (absolute WORKER_DATA_DIR)

Environment: STACK_MODE=auto|local|compose, BATCHLINE_BIN (the binary of the
local mode), and everything in .env.example (`$BATCHLINE_BIN stack --help`
explains the local mode's settings). .env is read if present; it never
overrides a variable set in the environment.
EOF
}

log() { printf '[stack] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# A setting this script reads itself: from the environment, else from .env
# (its first line for NAME, as the local mode reads it), else DEFAULT.
setting() {
  local name=$1 default=$2 line value
  if [[ -n ${!name+x} ]]; then
    printf '%s\n' "${!name:-$default}"
    return
  fi
  line=$(grep -E "^[[:space:]]*(export[[:space:]]+)?$name=" .env 2>/dev/null | head -n1 || true)
  value=${line#*=}
  if [[ $value =~ ^\"(.*)\"[[:space:]]*$ || $value =~ ^\'(.*)\'[[:space:]]*$ ]]; then
    value=${BASH_REMATCH[1]}
  else
    value=${value%%[[:space:]]#*} # an unquoted value may end in a comment
    value=${value%"${value##*[![:space:]]}"}
  fi
  printf '%s\n' "${value:-$default}"
}

# --- mode ------------------------------------------------------------------

MODE='' MODE_WHY=''
detect_mode() {
  local forced
  forced=$(setting STACK_MODE auto)
  case $forced in
  local | compose) MODE=$forced MODE_WHY="STACK_MODE=$forced" ;;
  auto)
    if command -v docker >/dev/null 2>&1 && with_timeout 15 docker info >/dev/null 2>&1; then
      MODE=compose MODE_WHY="a Docker engine answers"
    else
      MODE=local MODE_WHY="no Docker engine answers 'docker info'"
    fi
    ;;
  *) die "STACK_MODE must be auto, local or compose, not '$forced'" ;;
  esac
}

with_timeout() {
  local secs=$1
  shift
  if command -v timeout >/dev/null 2>&1; then timeout "$secs" "$@"; else "$@"; fi
}

# --- local mode: batchline stack ---------------------------------------------

local_cmd() {
  local cmd=$1
  shift
  local bin=${BATCHLINE_BIN:-}
  [[ -n $bin ]] || die "BATCHLINE_BIN is not set: run through make (which builds target/release/batchline) or set it to a batchline binary"
  [[ -x $bin ]] || die "no batchline binary at $bin (make bin builds it; BATCHLINE_BIN points at another one)"
  [[ $cmd == status ]] && cmd=ps
  STACK_MODE_WHY=$MODE_WHY exec "$bin" stack "$cmd" "$@"
}

# --- compose mode ----------------------------------------------------------

COMPOSE=()
compose_init() {
  if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
  else
    die "a Docker engine answers but neither 'docker compose' nor 'docker-compose' is installed (STACK_MODE=local runs without Docker)"
  fi
  # worker-2 writes ./worker-data as the host user, so the CSVs stay yours.
  export HOST_UID=${HOST_UID:-$(id -u)} HOST_GID=${HOST_GID:-$(id -g)}
  # Created here, not by Docker: a bind mount Docker creates belongs to root.
  mkdir -p worker-data/aggregator
  compose_profiles
}

# The compose file's profiles: `monitoring` (Prometheus, Grafana) unless
# MONITORING=0, `cluster` (three RabbitMQ nodes) when CLUSTER=1; the
# stages then get every node's URL. COMPOSE_PROFILES adds others.
compose_profiles() {
  local profiles=${COMPOSE_PROFILES:-}
  [[ $(setting MONITORING 1) == 1 ]] && profiles+=,monitoring
  if [[ $(setting CLUSTER 0) == 1 ]]; then
    profiles+=,cluster
    local user pass url='' node
    user=$(setting RABBITMQ_USER guest)
    pass=$(setting RABBITMQ_PASS guest)
    for node in rabbitmq rabbitmq-2 rabbitmq-3; do
      url+=,amqp://$user:$pass@$node:5672/%2f
    done
    export STACK_RABBITMQ_URL=${STACK_RABBITMQ_URL:-${url#,}}
  fi
  export COMPOSE_PROFILES=${profiles#,}
}

# Compose names replica K of worker-N PROJECT-worker-N-K.
compose_container_of() {
  local service=$1 index=$2 name
  name=$("${COMPOSE[@]}" ps --all --format '{{.Name}}' "$service" | grep -E -- "-${index}\$" | head -n1 || true)
  [[ -n $name ]] || die "no container for replica $index of $service"
  printf '%s\n' "$name"
}

# Maps the user's N to TARGET: (service) or (service replica-index).
TARGET=()
compose_target() {
  case $1 in
  runner) TARGET=(runner) ;;
  [123]) TARGET=("worker-$1") ;;
  [12]-[1-9]*) TARGET=("worker-${1%%-*}" "${1#*-}") ;;
  *) die "unknown worker '$1': use 1, 2, 3, 1-K, 2-K or runner" ;;
  esac
}

compose_cmd() {
  local cmd=$1
  shift
  log "mode: compose ($MODE_WHY)"
  local scale=()
  [[ $(setting RUNNER 1) == 0 ]] && scale=(--scale runner=0)
  case $cmd in
  up) exec "${COMPOSE[@]}" up --build "${scale[@]}" ;;
  up-detached) exec "${COMPOSE[@]}" up --build --detach "${scale[@]}" ;;
  # Every profile, so that no container or network of one is left behind;
  # DOWN_VOLUMES=1 also deletes the data volumes (Postgres, RabbitMQ).
  down)
    local volumes=()
    [[ $(setting DOWN_VOLUMES 0) == 1 ]] && volumes=(--volumes)
    exec "${COMPOSE[@]}" --profile '*' down --timeout "$(setting STOP_TIMEOUT 35)" --remove-orphans "${volumes[@]}"
    ;;
  logs)
    local follow=(--follow) tail container
    [[ $(setting FOLLOW 1) == 0 ]] && follow=()
    tail=$(setting TAIL 100)
    [[ $# -gt 0 ]] && compose_target "$1"
    if [[ ${#TARGET[@]} -eq 2 ]]; then
      container=$(compose_container_of "${TARGET[@]}") || exit 1
      exec docker logs "${follow[@]}" --tail "$tail" "$container"
    fi
    exec "${COMPOSE[@]}" logs "${follow[@]}" --tail "$tail" "${TARGET[@]}"
    ;;
  kill)
    [[ $# -ge 1 ]] || die "kill needs a worker: 1, 2, 3, 1-K, 2-K or runner"
    local sig=${2:-SIGKILL} container
    compose_target "$1"
    if [[ ${#TARGET[@]} -eq 2 ]]; then
      container=$(compose_container_of "${TARGET[@]}") || exit 1
      exec docker kill --signal "$sig" "$container"
    fi
    exec "${COMPOSE[@]}" kill --signal "$sig" "${TARGET[0]}"
    ;;
  restart)
    [[ $# -ge 1 ]] || die "restart needs a worker: 1, 2, 3, 1-K, 2-K or runner"
    local container
    compose_target "$1"
    if [[ ${#TARGET[@]} -eq 2 ]]; then
      container=$(compose_container_of "${TARGET[@]}") || exit 1
      exec docker restart "$container"
    fi
    exec "${COMPOSE[@]}" restart "${TARGET[0]}"
    ;;
  status) exec "${COMPOSE[@]}" ps --all ;;
  # worker-2 has ./worker-data mounted, so `metadata` sees the aggregator's files.
  cli) exec "${COMPOSE[@]}" run --rm --no-deps worker-2 "$@" ;;
  *) die "unknown command '$cmd'" ;;
  esac
}

# --- main ------------------------------------------------------------------

main() {
  [[ $# -ge 1 ]] || {
    usage >&2
    exit 2
  }
  local cmd=$1
  shift
  case $cmd in
  -h | --help | help)
    usage
    return 0
    ;;
  up | up-detached | down | logs | kill | restart | status | cli | mode | data-dir) ;;
  *)
    usage >&2
    exit 2
    ;;
  esac
  detect_mode
  if [[ $cmd == mode ]]; then
    echo "$MODE"
    return 0
  fi
  if [[ $MODE == compose && $cmd != data-dir ]]; then
    compose_init
    compose_cmd "$cmd" "$@"
  fi
  local_cmd "$cmd" "$@"
}

main "$@"
