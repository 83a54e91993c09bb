# scripts/containers/lib.sh — sourced by the container suite's drills
# (drill.sh, cluster.sh): where the stack runs, how to reach it, and the
# checks they share. The stack runs from a copy of the compose files in a
# work directory of its own, as compose project `batchline-ci`, so that
# neither your .env nor your worker-data/ nor your own `batchline` project
# and its volumes are touched.
# shellcheck shell=bash

SUITE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${CONTAINERS_WORK:?run through scripts/containers/run.sh (it sets CONTAINERS_WORK)}"
REPO=$CONTAINERS_WORK/repo
LOGS=$CONTAINERS_WORK/logs
export COMPOSE_PROJECT_NAME=batchline-ci
export COMPOSE_FILE=docker-compose.yml:scripts/containers/compose.ci.yml
export STACK_MODE=compose MONITORING=0
export WEB_TOKEN=${WEB_TOKEN:-ci-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')}
# The images: scripts/containers/images.sh's stand-ins unless set.
export POSTGRES_IMAGE=${POSTGRES_IMAGE:-batchline-ci/postgres:15}
export RABBITMQ_IMAGE=${RABBITMQ_IMAGE:-batchline-ci/rabbitmq:3.10}
export BATCHLINE_IMAGE=${BATCHLINE_IMAGE:-batchline-ci/batchline:local}
# What each drill round starts from; a round sets its own on top.
unset EXECUTORS AGGREGATORS NUM_BATCHES RUNS_PER_BATCH CHUNK_SIZE RUNNER CLUSTER STACK_RABBITMQ_URL DOWN_VOLUMES COMPOSE_PROFILES

log() { printf '[containers %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}

# A copy of what `make up` needs in compose mode: no .env, no state.
prepare_repo() {
  rm -rf "$REPO"
  mkdir -p "$REPO" "$LOGS"
  tar -C "$SUITE_ROOT" -cf - Makefile docker-compose.yml .env.example deploy scripts | tar -C "$REPO" -xf -
}

stack_make() { make -C "$REPO" --no-print-directory "$@"; }
dc() { (cd "$REPO" && docker compose "$@"); }
container() { printf '%s-%s-%s\n' "$COMPOSE_PROJECT_NAME" "$1" "${2:-1}"; }

# Containers, networks and volumes of the project (compose labels them).
project_objects() {
  local label=com.docker.compose.project=$COMPOSE_PROJECT_NAME
  docker ps -aq --filter "label=$label"
  docker network ls -q --filter "label=$label"
  docker volume ls -q --filter "label=$label"
}

# Waits until CHECK (a command) succeeds, polling every second; dies with
# WHAT after LIMIT seconds. The limits are generous bounds on liveness, not
# performance targets: the suite reports how long things took.
# Whether `make partitions` shows N live replicas each holding its fair
# share (within one partition of each other).
spread_even() {
  local n=$1 line
  stack_make partitions >"$LOGS/partitions.log" 2>&1 || return 1
  line=$(grep -E '^[0-9]+ replica' "$LOGS/partitions.log") || return 1
  [[ $line == "$n replica(s)"* ]] || return 1
  # "3 replica(s), fair share 6: a 5, b 5, c 6" -> the counts
  local counts min max
  counts=$(sed 's/^[^:]*: //' <<<"$line" | tr ',' '\n' | awk '{print $NF}')
  min=$(sort -n <<<"$counts" | head -n1)
  max=$(sort -n <<<"$counts" | tail -n1)
  ((max - min <= 1))
}

wait_for() {
  local limit=$1 what=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - start < limit)) || die "$what: not within ${limit}s"
    sleep 1
  done
}

# The runner's log since its container last started: `up` restarts an
# unchanged runner's container rather than creating a new one.
runner_log() {
  local runner
  runner=$(container runner)
  docker logs --since "$(docker inspect -f '{{.State.StartedAt}}' "$runner")" "$runner" 2>&1
}

# The runner's log and exit code once it ended: every one of its batches
# SUCCESS once, none FAILURE, exit 0.
check_verdicts() {
  local round=$1 batches=$2 runner code successes failures
  runner=$(container runner)
  # A bound on liveness only (the longest round takes a few minutes).
  code=$(timeout 900 docker wait "$runner") ||
    die "$round: the runner has not ended after 900 s: $(runner_log | tail -n 3)"
  runner_log >"$LOGS/$round.runner.log"
  successes=$(grep -c '^SUCCESS \[' "$LOGS/$round.runner.log" || true)
  failures=$(grep -c '^FAILURE \[' "$LOGS/$round.runner.log" || true)
  ((code == 0 && successes == batches && failures == 0)) ||
    die "$round: runner exit $code, $successes SUCCESS, $failures FAILURE of $batches batches (log $LOGS/$round.runner.log: $(tail -n 5 "$LOGS/$round.runner.log"))"
  log "$round: $successes/$batches batches SUCCESS ($(grep -Eo '[0-9]+ runs in [0-9.]+s \([0-9]+ runs/s\)' "$LOGS/$round.runner.log" | tail -n1))"
}

# Runs executed so far per the runner's progress line (0 before the first).
runs_executed() {
  runner_log | grep -Eo '^progress: [0-9]+' | tail -n1 | grep -Eo '[0-9]+' || echo 0
}
mid_batch() { (($(runs_executed) >= $1)); }
running() { [[ $(docker inspect -f '{{.State.Status}}' "$1" 2>/dev/null) == running ]]; }
healthy() { [[ $(docker inspect -f '{{.State.Health.Status}}' "$1" 2>/dev/null) == healthy ]]; }
replicas() { docker ps -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" --filter "label=com.docker.compose.service=$1" | wc -l; }

# The messages the dead-letter queue holds (0 when it does not exist yet).
dead_lettered() {
  local node=${1:-rabbitmq}
  dc exec -T "$node" rabbitmqctl -q list_queues name messages 2>/dev/null | awk '$1 == "batchline.dlq" {print $2}' | grep . || echo 0
}

# The verifier's verdict lines (its stdout; its log lines repeat them):
# TOTAL batches SUCCESS, each exactly once, none FAILURE.
check_verified_once() {
  local total=$1 out verdicts count unique failures
  out=$(docker logs "$(container worker-3)" 2>&1)
  verdicts=$(grep -Eo '^SUCCESS \[[^]]*\] batch=[0-9a-f-]+' <<<"$out" | sort || true)
  count=$(grep -c . <<<"$verdicts" || true)
  unique=$(sort -u <<<"$verdicts" | grep -c . || true)
  failures=$(grep -c '^FAILURE \[' <<<"$out" || true)
  ((count == total && unique == total && failures == 0)) ||
    die "the verifier printed $count SUCCESS lines for $unique batches ($failures FAILURE); expected $total batches, once each"
}

# The EXIT trap of a drill: on a failure the services' logs (every
# profile's) go to $LOGS/NAME.compose.log; then the stack goes, volumes too.
teardown() {
  local code=$? name=$1
  if ((code != 0)); then
    dc --profile '*' logs --no-color --timestamps >"$LOGS/$name.compose.log" 2>&1 || true
    log "the services' logs: $LOGS/$name.compose.log"
  fi
  DOWN_VOLUMES=1 STOP_TIMEOUT=5 stack_make down >/dev/null 2>&1 || true
  exit "$code"
}
