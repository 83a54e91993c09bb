#!/usr/bin/env bash
# scripts/stack.sh — runs the drill's services (worker-1 executor, worker-2
# aggregator, worker-3 verifier, runner) with Docker Compose where a Docker
# engine answers, and otherwise as local processes against RABBITMQ_URL and
# DATABASE_URL. The Makefile's drill targets are thin wrappers around it;
# docs/drill.md is the user's guide.
#
# Local mode keeps everything under $WORKER_DATA_DIR (default worker-data/):
#   run/NAME.pid   the process id of a running service
#   run/NAME.env   the environment it was started with (restart reuses it)
#   logs/NAME.log  its stdout and stderr, appended across restarts
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
  kill N [SIGNAL]    send SIGKILL (or SIGNAL) to worker-N: N is 1, 2, 3, 1-K (one executor) or runner
  restart N          stop worker-N if it runs, then start it again with the env it was started with
  status             which services run, their pids and logs
  cli ARGS...        run `batchline ARGS` with the stack's environment (metadata, status, results, …)
  mode               print the mode that would be used: compose or local
  data-dir           print the local mode's state directory (absolute WORKER_DATA_DIR)

Environment: STACK_MODE=auto|local|compose, EXECUTORS (worker-1 processes),
RUNNER=0 (no runner), STOP_TIMEOUT (s), BATCHLINE_BIN (local mode binary),
NUM_BATCHES, RUNS_PER_BATCH, CHUNK_SIZE, SIMULATION_DELAY_MS, and everything
in .env.example. .env is read if present; it never overrides a variable set
in the environment.
EOF
}

log() { printf '[stack] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# --- environment -----------------------------------------------------------

# Every variable a service may read: the ones .env.example lists, plus the
# process-level ones. Only these are saved for restarts and cleared of empty
# values (the binary rejects an empty number or address).
known_vars() {
  local names=(RUST_LOG RUST_BACKTRACE BATCHLINE_BIN HOSTNAME)
  if [[ -f .env.example ]]; then
    while IFS= read -r name; do names+=("$name"); done < <(sed -nE 's/^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=.*/\1/p' .env.example)
  fi
  printf '%s\n' "${names[@]}" | sort -u
}

# Loads .env without overriding what the environment already has. The
# Makefile exports its own defaults for DATABASE_URL and RABBITMQ_URL and
# names them in STACK_MAKE_DEFAULTS: those are not the user's, so .env wins.
load_dotenv() {
  local file=${ENV_FILE:-.env} line key val
  [[ -f $file ]] || return 0
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    line=${line#export }
    if [[ ! $line =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
      log "warning: $file: ignoring the line '$line'"
      continue
    fi
    key=${BASH_REMATCH[1]} val=${BASH_REMATCH[2]}
    if [[ $val =~ ^\"(.*)\"$ || $val =~ ^\'(.*)\'$ ]]; then
      val=${BASH_REMATCH[1]}
    else
      val=${val%%[[:space:]]#*} # an unquoted value may end in a comment, as Compose reads it
      val=${val%"${val##*[![:space:]]}"}
    fi
    if [[ -n ${!key+x} && " ${STACK_MAKE_DEFAULTS:-} " != *" $key "* ]]; then
      continue
    fi
    export "$key=$val"
  done <"$file"
}

setup_env() {
  load_dotenv
  local v
  while IFS= read -r v; do
    if [[ -n ${!v+x} && -z ${!v} ]]; then unset "$v"; fi
  done < <(known_vars)
  # The drill's defaults (also in .env.example and docker-compose.yml): about
  # a minute of work with one executor, time enough to kill worker-2 mid-batch.
  export NUM_BATCHES=${NUM_BATCHES:-3}
  export RUNS_PER_BATCH=${RUNS_PER_BATCH:-20000}
  export CHUNK_SIZE=${CHUNK_SIZE:-1000}
  export SIMULATION_DELAY_MS=${SIMULATION_DELAY_MS:-2}
  export EXECUTORS=${EXECUTORS:-1}
  export WORKER_DATA_DIR=${WORKER_DATA_DIR:-worker-data}
  [[ $EXECUTORS =~ ^[1-9][0-9]*$ ]] || die "EXECUTORS must be a positive number, not '$EXECUTORS'"
  STOP_TIMEOUT=${STOP_TIMEOUT:-35}
  [[ $STOP_TIMEOUT =~ ^[0-9]+$ ]] || die "STOP_TIMEOUT must be a number of seconds, not '$STOP_TIMEOUT'"
  if [[ -n ${METRICS_ADDR:-} && ! $METRICS_ADDR =~ ^.+:[0-9]+$ ]]; then
    die "METRICS_ADDR must be HOST:PORT, not '$METRICS_ADDR'"
  fi
}

# --- mode ------------------------------------------------------------------

MODE='' MODE_WHY=''
detect_mode() {
  case ${STACK_MODE:-auto} in
  local | compose)
    MODE=$STACK_MODE MODE_WHY="STACK_MODE=$STACK_MODE"
    ;;
  auto)
    if command -v docker >/dev/null 2>&1 && with_timeout 15 docker info >/dev/null 2>&1; then
      MODE=compose MODE_WHY="a Docker engine answers"
    else
      MODE=local MODE_WHY="no Docker engine answers 'docker info'"
    fi
    ;;
  *) die "STACK_MODE must be auto, local or compose, not '$STACK_MODE'" ;;
  esac
}

with_timeout() {
  local secs=$1
  shift
  if command -v timeout >/dev/null 2>&1; then timeout "$secs" "$@"; else "$@"; fi
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
}

# Compose names replica K of worker-1 PROJECT-worker-1-K.
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
  1-[1-9]*) TARGET=(worker-1 "${1#1-}") ;;
  *) die "unknown worker '$1': use 1, 2, 3, 1-K or runner" ;;
  esac
}

compose_cmd() {
  local cmd=$1
  shift
  log "mode: compose ($MODE_WHY)"
  local scale=()
  [[ ${RUNNER:-1} == 0 ]] && scale=(--scale runner=0)
  case $cmd in
  up) exec "${COMPOSE[@]}" up --build "${scale[@]}" ;;
  up-detached) exec "${COMPOSE[@]}" up --build --detach "${scale[@]}" ;;
  down) exec "${COMPOSE[@]}" down --timeout "$STOP_TIMEOUT" --remove-orphans ;;
  logs)
    local follow=(--follow) container
    [[ ${FOLLOW:-1} == 0 ]] && follow=()
    [[ $# -gt 0 ]] && compose_target "$1"
    if [[ ${#TARGET[@]} -eq 2 ]]; then
      container=$(compose_container_of "${TARGET[@]}") || exit 1
      exec docker logs "${follow[@]}" --tail "${TAIL:-100}" "$container"
    fi
    exec "${COMPOSE[@]}" logs "${follow[@]}" --tail "${TAIL:-100}" "${TARGET[@]}"
    ;;
  kill)
    [[ $# -ge 1 ]] || die "kill needs a worker: 1, 2, 3, 1-K or runner"
    local sig=${2:-SIGKILL} container
    compose_target "$1"
    if [[ ${#TARGET[@]} -eq 2 ]]; then
      container=$(compose_container_of "${TARGET[@]}") || exit 1
      exec docker kill --signal "$sig" "$container"
    fi
    exec "${COMPOSE[@]}" kill --signal "$sig" "${TARGET[0]}"
    ;;
  restart)
    [[ $# -ge 1 ]] || die "restart needs a worker: 1, 2, 3, 1-K or runner"
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

# --- local mode ------------------------------------------------------------

DATA='' RUN_DIR='' LOG_DIR=''
local_init() {
  mkdir -p "$WORKER_DATA_DIR"
  DATA=$(cd "$WORKER_DATA_DIR" && pwd)
  export WORKER_DATA_DIR=$DATA
  RUN_DIR=$DATA/run LOG_DIR=$DATA/logs
  mkdir -p "$RUN_DIR" "$LOG_DIR"
}

need_bin() {
  local bin=${1:-${BATCHLINE_BIN:-}}
  [[ -n $bin ]] || die "BATCHLINE_BIN is not set: run through make (which builds target/release/batchline) or set it to a batchline binary"
  [[ -x $bin ]] || die "no batchline binary at $bin (make bin builds it; BATCHLINE_BIN points at another one)"
}

# The services of the stack in start order. EXECUTORS=1 gives one worker-1;
# EXECUTORS=N>1 gives worker-1-1 … worker-1-N, the names Compose gives the
# replicas of worker-1, so `kill 1` means the whole worker-1 service in both
# modes and `kill 1-2` one executor.
plan_names() {
  if [[ $EXECUTORS == 1 ]]; then
    echo worker-1
  else
    local k
    for ((k = 1; k <= EXECUTORS; k++)); do echo "worker-1-$k"; done
  fi
  echo worker-2
  echo worker-3
  [[ ${RUNNER:-1} == 0 ]] || echo runner
}

role_of() {
  case $1 in
  worker-1 | worker-1-*) echo executor ;;
  worker-2) echo aggregator ;;
  worker-3) echo verifier ;;
  runner) echo runner ;;
  *) die "unknown service '$1'" ;;
  esac
}

# Services the stack knows: those with a saved environment or a pid file.
known_names() {
  local f
  {
    for f in "$RUN_DIR"/*.env "$RUN_DIR"/*.pid; do
      [[ -e $f ]] || continue
      f=${f##*/}
      echo "${f%.*}"
    done
  } | sort -u | sort -t- -k2,2n -k3,3n
}

# Maps the user's N (1, 2, 3, 1-K, runner, or a full name) to the service
# names in RESOLVED: the ones the stack knows, else the ones it would start.
RESOLVED=()
resolve() {
  local n=${1#worker-} name source
  for source in known_names plan_names; do
    RESOLVED=()
    while IFS= read -r name; do
      case $n in
      1) [[ $name == worker-1 || $name == worker-1-* ]] && RESOLVED+=("$name") ;;
      *) [[ $name == "$n" || $name == "worker-$n" ]] && RESOLVED+=("$name") ;;
      esac
    done < <("$source")
    [[ ${#RESOLVED[@]} -eq 0 ]] || return 0
  done
  die "unknown worker '$1': use 1, 2, 3, 1-K (K up to EXECUTORS) or runner"
}

pid_of() {
  local file=$RUN_DIR/$1.pid pid
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  printf '%s\n' "$pid"
}

# True when NAME's pid is alive and still a batchline process (not a reused
# pid, not a zombie awaiting its parent).
is_running() {
  local pid stat args
  pid=$(pid_of "$1") || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  stat=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
  [[ $stat == Z* ]] && return 1
  args=$(ps -o args= -p "$pid" 2>/dev/null) || return 1
  [[ $args == *batchline* ]]
}

# Per-service metrics address: METRICS_ADDR=HOST:PORT gives worker-1 (or
# worker-1-1) PORT, worker-2 PORT+1, worker-3 PORT+2, worker-1-K PORT+8+K.
metrics_addr_for() {
  local name=$1 host port off
  [[ -n ${METRICS_ADDR:-} ]] || return 0
  [[ $METRICS_ADDR =~ ^(.*):([0-9]+)$ ]] || return 0
  host=${BASH_REMATCH[1]} port=${BASH_REMATCH[2]}
  case $name in
  worker-1 | worker-1-1) off=0 ;;
  worker-2) off=1 ;;
  worker-3) off=2 ;;
  worker-1-*) off=$((8 + ${name#worker-1-})) ;;
  *) return 0 ;;
  esac
  printf '%s:%s\n' "$host" $((port + off))
}

# Saves the environment NAME runs with, so a restart reproduces it even
# from a shell that has other variables set.
write_env() {
  local name=$1 file=$RUN_DIR/$1.env v addr
  {
    printf '# %s (%s), written by scripts/stack.sh; restart reuses it\n' "$name" "$(role_of "$name")"
    while IFS= read -r v; do
      case $v in METRICS_ADDR | WORKER_ID) continue ;; esac # per process, below
      [[ -n ${!v:-} ]] && printf '%s=%q\n' "$v" "${!v}"
    done < <(known_vars)
    addr=$(metrics_addr_for "$name")
    [[ -n $addr ]] && printf 'METRICS_ADDR=%q\n' "$addr"
    true
  } >"$file.tmp"
  mv "$file.tmp" "$file"
}

# Starts NAME from its saved environment, in a session of its own so that a
# Ctrl-C meant for `up` reaches only this script, which then stops the
# services one signal each.
spawn() {
  local name=$1 role envfile=$RUN_DIR/$1.env log=$LOG_DIR/$1.log
  role=$(role_of "$name")
  [[ -f $envfile ]] || write_env "$name"
  (
    while IFS= read -r v; do unset "$v"; done < <(known_vars)
    set -a
    # shellcheck disable=SC1090
    . "$envfile"
    set +a
    need_bin "$BATCHLINE_BIN"
    # Logs go to files: no ANSI colours unless asked for (tracing honours NO_COLOR).
    export NO_COLOR=${NO_COLOR-1}
    case $role in
    executor) args=(executor) ;;
    aggregator) args=(aggregator) ;;
    verifier) args=(verifier) ;;
    runner) args=(submit --count "$NUM_BATCHES" --runs "$RUNS_PER_BATCH" --chunk-size "$CHUNK_SIZE" --wait) ;;
    esac
    printf '[stack] %s: starting %s: %s %s\n' "$(date '+%F %T')" "$name" "${BATCHLINE_BIN##*/}" "${args[*]}" >>"$log"
    if command -v setsid >/dev/null 2>&1; then
      setsid "$BATCHLINE_BIN" "${args[@]}" </dev/null >>"$log" 2>&1 &
    else
      set -m # no setsid (macOS): a process group of its own is enough
      "$BATCHLINE_BIN" "${args[@]}" </dev/null >>"$log" 2>&1 &
    fi
    echo $! >"$RUN_DIR/$name.pid.tmp"
    mv "$RUN_DIR/$name.pid.tmp" "$RUN_DIR/$name.pid"
  )
}

# Waits until none of the named processes runs, for at most $1 seconds.
wait_gone() {
  local secs=$1 name deadline alive
  shift
  deadline=$((SECONDS + secs))
  while :; do
    alive=0
    for name in "$@"; do is_running "$name" && alive=1; done
    ((alive)) || return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

stop_names() { # SIGTERM, then SIGKILL after STOP_TIMEOUT
  local name pid running=()
  for name in "$@"; do
    if is_running "$name"; then
      pid=$(pid_of "$name")
      kill -TERM "$pid" 2>/dev/null || true
      running+=("$name")
      log "stopping $name (pid $pid)"
    fi
  done
  [[ ${#running[@]} -gt 0 ]] || return 0
  if ! wait_gone "$STOP_TIMEOUT" "${running[@]}"; then
    for name in "${running[@]}"; do
      if is_running "$name"; then
        pid=$(pid_of "$name")
        log "$name (pid $pid) still runs after ${STOP_TIMEOUT}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
    wait_gone 10 "${running[@]}" || log "warning: some processes outlived SIGKILL"
  fi
  for name in "${running[@]}"; do rm -f "$RUN_DIR/$name.pid"; done
}

# A process that exits at once (bad URL, services down) says why in its log.
check_started() {
  local name failed=0
  sleep "${START_CHECK_S:-1.5}"
  for name in "$@"; do
    if ! is_running "$name"; then
      [[ $name == runner ]] && grep -q 'SUCCESS\|FAILURE' "$LOG_DIR/runner.log" 2>/dev/null && continue
      failed=1
      log "$name exited right after starting; the end of $LOG_DIR/$name.log:"
      tail -n 15 "$LOG_DIR/$name.log" | sed "s/^/    /" >&2
    fi
  done
  return $failed
}

local_start() {
  local name started=() planned
  need_bin
  log "mode: local ($MODE_WHY); binary $BATCHLINE_BIN; pids in $RUN_DIR, logs in $LOG_DIR"
  mapfile -t planned < <(plan_names)
  # Forget services of an earlier plan (another EXECUTORS) that no longer run.
  for name in $(known_names); do
    if ! is_running "$name" && [[ " ${planned[*]} " != *" $name "* ]]; then
      rm -f "$RUN_DIR/$name.env" "$RUN_DIR/$name.pid"
    fi
  done
  # Migrations first, once: a clear error if Postgres is not there, and the
  # services do not race to create the schema.
  if ! "$BATCHLINE_BIN" migrate >>"$LOG_DIR/migrate.log" 2>&1; then
    log "'batchline migrate' failed (is Postgres up at DATABASE_URL?); the end of $LOG_DIR/migrate.log:"
    tail -n 10 "$LOG_DIR/migrate.log" | sed "s/^/    /" >&2
    exit 1
  fi
  for name in "${planned[@]}"; do
    if is_running "$name"; then
      log "$name already runs (pid $(pid_of "$name"))"
      continue
    fi
    write_env "$name"
    spawn "$name" || die "cannot start $name"
    started+=("$name")
    log "started $name ($(role_of "$name"), pid $(pid_of "$name"))"
  done
  [[ ${#started[@]} -eq 0 ]] || check_started "${started[@]}"
}

FOLLOWERS=()
# Follows a log from byte OFFSET (1-based) with a "[name] " prefix.
follow_log() {
  local name=$1 from=$2 color=$3 prefix
  prefix="[$name] "
  [[ -n $color ]] && prefix=$'\e['"${color}m[$name]"$'\e[0m '
  (
    trap '' INT # the services' shutdown lines still show after Ctrl-C
    exec > >(awk -v p="$prefix" '{ print p $0; fflush() }')
    exec tail -c "+$from" -F "$LOG_DIR/$name.log" 2>/dev/null
  ) &
  FOLLOWERS+=($!)
}

stop_followers() {
  [[ ${#FOLLOWERS[@]} -gt 0 ]] || return 0
  sleep 0.5 # let the last lines through
  kill "${FOLLOWERS[@]}" 2>/dev/null || true
  wait "${FOLLOWERS[@]}" 2>/dev/null || true
  FOLLOWERS=()
}

color_of() { # one color per service on a terminal, none otherwise
  [[ -t 1 ]] || return 0
  local colors=(36 33 35 32 34 31) i=$2
  echo "${colors[i % ${#colors[@]}]}"
}

local_up_foreground() {
  local name i=0 names offsets=() stop=0
  mapfile -t names < <(plan_names)
  for name in "${names[@]}"; do
    touch "$LOG_DIR/$name.log"
    offsets+=($(($(wc -c <"$LOG_DIR/$name.log") + 1)))
  done
  for name in "${names[@]}"; do
    follow_log "$name" "${offsets[i]}" "$(color_of "$name" "$i")"
    i=$((i + 1))
  done
  trap 'stop=1' INT TERM
  if ! local_start; then
    log "some services did not start: stopping the others"
    stop=1
  else
    log "following the logs; Ctrl-C stops everything (make kill-worker-N / restart-worker-N from another terminal)"
  fi
  declare -A was
  for name in "${names[@]}"; do is_running "$name" && was[$name]=1 || was[$name]=0; done
  while ((!stop)); do
    sleep 1 &
    wait $! || true
    local any=0 now
    for name in $(known_names); do
      is_running "$name" && now=1 || now=0
      [[ ${was[$name]:-0} == 1 && $now == 0 ]] && log "$name is no longer running"
      [[ ${was[$name]:-0} == 0 && $now == 1 ]] && log "$name runs again (pid $(pid_of "$name"))"
      was[$name]=$now
      [[ $name != runner && $now == 1 ]] && any=1
    done
    if ((!any)) && ! is_running runner; then
      log "no service runs any more"
      break
    fi
  done
  trap - INT TERM
  log "stopping everything"
  local_down
  stop_followers
}

local_down() {
  local names
  mapfile -t names < <(known_names)
  # The runner first: it only watches; then the workers, all at once.
  if [[ ${#names[@]} -eq 0 ]]; then
    log "nothing to stop in $RUN_DIR"
    return 0
  fi
  stop_names runner
  stop_names "${names[@]}"
  rm -f "$RUN_DIR"/*.env "$RUN_DIR"/*.pid
  log "stopped"
}

local_logs() {
  local names name i=0
  if [[ $# -gt 0 ]]; then
    resolve "$1"
    names=("${RESOLVED[@]}")
  else
    mapfile -t names < <({ known_names; plan_names; } | awk '!seen[$0]++')
  fi
  local files=()
  for name in "${names[@]}"; do [[ -f $LOG_DIR/$name.log ]] && files+=("$name"); done
  [[ ${#files[@]} -gt 0 ]] || die "no logs yet in $LOG_DIR"
  if [[ ${FOLLOW:-1} == 0 ]]; then
    for name in "${files[@]}"; do
      tail -n "${TAIL:-100}" "$LOG_DIR/$name.log" | awk -v p="[$name] " '{ print p $0 }'
    done
    return 0
  fi
  for name in "${files[@]}"; do
    (
      exec > >(awk -v p="[$name] " '{ print p $0; fflush() }')
      exec tail -n "${TAIL:-100}" -F "$LOG_DIR/$name.log" 2>/dev/null
    ) &
    i=$((i + 1))
  done
  wait
}

local_kill() {
  local sig=${2:-KILL} name pid killed=()
  sig=${sig#SIG}
  [[ $# -ge 1 ]] || die "kill needs a worker: 1, 2, 3, 1-K or runner"
  resolve "$1"
  for name in "${RESOLVED[@]}"; do
    if is_running "$name"; then
      pid=$(pid_of "$name")
      kill "-$sig" "$pid"
      log "sent SIG$sig to $name (pid $pid)"
      killed+=("$name")
    fi
  done
  [[ ${#killed[@]} -gt 0 ]] || die "worker-$1 is not running (make ps shows what runs)"
  if [[ $sig == KILL ]]; then
    wait_gone 10 "${killed[@]}" || die "${killed[*]} still runs after SIGKILL"
    for name in "${killed[@]}"; do
      rm -f "$RUN_DIR/$name.pid"
      printf '[stack] %s: %s killed with SIGKILL\n' "$(date '+%F %T')" "$name" >>"$LOG_DIR/$name.log"
    done
  fi
}

local_restart() {
  [[ $# -ge 1 ]] || die "restart needs a worker: 1, 2, 3, 1-K or runner"
  local names name
  resolve "$1"
  names=("${RESOLVED[@]}")
  stop_names "${names[@]}"
  for name in "${names[@]}"; do
    if [[ ! -f $RUN_DIR/$name.env ]]; then
      need_bin
      write_env "$name"
    fi
    spawn "$name" || die "cannot start $name"
    log "restarted $name (pid $(pid_of "$name")), log $LOG_DIR/$name.log"
  done
  check_started "${names[@]}"
}

local_status() {
  local name state pid names
  mapfile -t names < <(known_names)
  if [[ ${#names[@]} -eq 0 ]]; then
    echo "nothing started (state in $DATA)"
    return 0
  fi
  printf '%-12s %-11s %-8s %-9s %s\n' NAME ROLE PID STATE LOG
  for name in "${names[@]}"; do
    if is_running "$name"; then state=running pid=$(pid_of "$name"); else state=stopped pid=-; fi
    printf '%-12s %-11s %-8s %-9s %s\n' "$name" "$(role_of "$name")" "$pid" "$state" "$LOG_DIR/$name.log"
  done
}

local_cli() {
  need_bin
  exec "$BATCHLINE_BIN" "$@"
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
  setup_env
  detect_mode
  if [[ $cmd == mode ]]; then
    echo "$MODE"
    return 0
  fi
  if [[ $cmd == data-dir ]]; then
    local_init
    echo "$DATA"
    return 0
  fi
  if [[ $MODE == compose ]]; then
    compose_init
    compose_cmd "$cmd" "$@"
  fi
  local_init
  case $cmd in
  up) local_up_foreground ;;
  up-detached)
    local_start || {
      log "some services did not start (make down stops the others)"
      exit 1
    }
    local_status
    log "make logs follows them; make kill-worker-2 / restart-worker-2 for the drill; make down stops them"
    ;;
  down) local_down ;;
  logs) local_logs "$@" ;;
  kill) local_kill "$@" ;;
  restart) local_restart "$@" ;;
  status) local_status ;;
  cli) local_cli "$@" ;;
  esac
}

main "$@"
