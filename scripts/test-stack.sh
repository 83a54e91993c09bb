#!/usr/bin/env bash
# The checks run `bash -c '…' ARGS`: the single quotes are meant.
# shellcheck disable=SC2016
# scripts/test-stack.sh — tests of scripts/stack.sh: the mode it picks, its
# mapping of the drill's commands onto `docker compose` (against a fake
# docker on PATH), and what it execs in local mode (against a fake
# batchline); and of scripts/test-services.sh (what `make test` does when
# Postgres or RabbitMQ does not answer). The local mode itself (`batchline stack`) is tested in
# crates/batchline/tests/stack.rs. No services, no build, no Docker needed.
# `make test-drill` runs both.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/batchline-stack-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# A copy of the script in a repository of its own, so that its .env and the
# worker-data/ that compose mode creates are the test's, not the checkout's.
mkdir -p "$TMP/repo/scripts" "$TMP/bin"
cp "$ROOT/scripts/stack.sh" "$TMP/repo/scripts/stack.sh"
STACK=$TMP/repo/scripts/stack.sh
unset STACK_MODE RUNNER STOP_TIMEOUT TAIL FOLLOW HOST_UID HOST_GID BATCHLINE_BIN
unset MONITORING CLUSTER DOWN_VOLUMES COMPOSE_PROFILES STACK_RABBITMQ_URL

passed=0 failed=0
check() { # check NAME COMMAND...: one assertion
  local name=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
  fi
}

# --- compose mode, against a fake docker -----------------------------------------
cat >"$TMP/bin/docker" <<'EOF'
#!/usr/bin/env bash
# fake docker: an engine that answers; records each call with HOST_UID
echo "docker $* [uid=${HOST_UID-unset}] [profiles=${COMPOSE_PROFILES-}] [url=${STACK_RABBITMQ_URL-}]" >>"$FAKE_DOCKER_LOG"
case "$1 ${2-}" in
"compose ps") printf 'batchline-worker-1-1\nbatchline-worker-1-2\nbatchline-worker-2-1\nbatchline-worker-2-2\n' | grep -- "-${*: -1}-" ;;
esac
exit 0
EOF
chmod +x "$TMP/bin/docker"
export FAKE_DOCKER_LOG=$TMP/docker.log
# A docker whose engine does not answer (a real one may run on this host).
mkdir -p "$TMP/nodocker"
printf '#!/bin/sh\nexit 1\n' >"$TMP/nodocker/docker"
chmod +x "$TMP/nodocker/docker"
compose_call() { # compose_call EXPECTED STACK-ARGS...: the stack runs exactly EXPECTED
  local want=$1
  shift
  : >"$FAKE_DOCKER_LOG"
  PATH="$TMP/bin:$PATH" "$STACK" "$@" >>"$TMP/stack.out" 2>&1 || return 1
  grep -v -e '^docker info' -e '^docker compose version' "$FAKE_DOCKER_LOG" | sed 's/ \[uid=.*//' | grep -qxF -- "$want"
}
check "a Docker engine that answers means compose mode" bash -c '[[ $(PATH="$0:$PATH" "$1" mode 2>/dev/null) == compose ]]' "$TMP/bin" "$STACK"
check "no Docker engine means local mode" bash -c '[[ $(PATH="$0:/usr/bin:/bin" "$1" mode 2>/dev/null) == local ]]' "$TMP/nodocker" "$STACK"
check "compose: up-detached" compose_call "docker compose up --build --detach" up-detached
check "compose: worker-2 writes as the caller" grep -q "up --build --detach \[uid=$(id -u)\]" "$FAKE_DOCKER_LOG"
check "compose: the bind mount's directory is the caller's" test -d "$TMP/repo/worker-data/aggregator"
RUNNER=0 check "compose: RUNNER=0 scales the runner to 0" compose_call "docker compose up --build --detach --scale runner=0" up-detached
check "compose: kill 2" compose_call "docker compose kill --signal SIGKILL worker-2" kill 2
check "compose: kill 1 kills every replica" compose_call "docker compose kill --signal SIGKILL worker-1" kill 1
check "compose: kill 1-2 kills one replica" compose_call "docker kill --signal SIGKILL batchline-worker-1-2" kill 1-2
check "compose: kill 2-2 kills one aggregator" compose_call "docker kill --signal SIGKILL batchline-worker-2-2" kill 2-2
check "compose: restart 2" compose_call "docker compose restart worker-2" restart 2
check "compose: restart 1-1" compose_call "docker restart batchline-worker-1-1" restart 1-1
FOLLOW=0 check "compose: logs 3" compose_call "docker compose logs --tail 100 worker-3" logs 3
check "compose: check-metadata runs in worker-2" compose_call "docker compose run --rm --no-deps worker-2 metadata" cli metadata
check "compose: down waits 35 s by default" compose_call "docker compose --profile * down --timeout 35 --remove-orphans" down
STOP_TIMEOUT=5 check "compose: down waits STOP_TIMEOUT" compose_call "docker compose --profile * down --timeout 5 --remove-orphans" down
DOWN_VOLUMES=1 check "compose: DOWN_VOLUMES=1 deletes the volumes too" compose_call "docker compose --profile * down --timeout 35 --remove-orphans --volumes" down
check "compose: the monitoring profile by default" grep -q "\[profiles=monitoring\] \[url=\]" "$FAKE_DOCKER_LOG"
MONITORING=0 compose_call "docker compose up --build --detach" up-detached
check "compose: MONITORING=0 leaves it out" grep -q "\[profiles=\] \[url=\]" "$FAKE_DOCKER_LOG"
MONITORING=0 CLUSTER=1 compose_call "docker compose up --build --detach" up-detached
check "compose: CLUSTER=1 lists the three nodes" grep -qF "[profiles=cluster] [url=amqp://guest:guest@rabbitmq:5672/%2f,amqp://guest:guest@rabbitmq-2:5672/%2f,amqp://guest:guest@rabbitmq-3:5672/%2f]" "$FAKE_DOCKER_LOG"
check "compose: kill of an unknown worker fails" bash -c '! PATH="$0:$PATH" "$1" kill 9 2>/dev/null' "$TMP/bin" "$STACK"
check "compose: kill of a missing replica fails" bash -c '! PATH="$0:$PATH" "$1" kill 1-7 2>/dev/null' "$TMP/bin" "$STACK"

# --- .env: read for the script's own settings, never over the environment ----------
cat >"$TMP/repo/.env" <<'EOF'
# a comment
STACK_MODE=compose
RUNNER="0"   
STOP_TIMEOUT=7 # an inline comment
TAIL=
EOF
check ".env: STACK_MODE forces compose without an engine" bash -c '[[ $(PATH="$0:/usr/bin:/bin" "$1" mode 2>/dev/null) == compose ]]' "$TMP/nodocker" "$STACK"
check ".env: quoted RUNNER" compose_call "docker compose up --build --detach --scale runner=0" up-detached
check ".env: an inline comment is not part of the value" compose_call "docker compose --profile * down --timeout 7 --remove-orphans" down
STOP_TIMEOUT=9 check ".env never overrides the environment" compose_call "docker compose --profile * down --timeout 9 --remove-orphans" down
FOLLOW=0 check ".env: an empty value means the default" compose_call "docker compose logs --tail 100 worker-2" logs 2
rm "$TMP/repo/.env"

# --- local mode: what the script execs -------------------------------------------
cat >"$TMP/batchline" <<'EOF'
#!/usr/bin/env bash
# fake batchline: says how it was called
echo "batchline $* [why=${STACK_MODE_WHY-unset}]"
EOF
chmod +x "$TMP/batchline"
local_call() { # local_call EXPECTED STACK-ARGS...: the script execs exactly EXPECTED
  local want=$1 got
  shift
  got=$(BATCHLINE_BIN=$TMP/batchline STACK_MODE=local "$STACK" "$@" 2>/dev/null) || return 1
  [[ ${got% \[why=*} == "$want" ]]
}
check "local: up" local_call "batchline stack up" up
check "local: status is ps" local_call "batchline stack ps" status
check "local: kill with a signal" local_call "batchline stack kill 1-2 STOP" kill 1-2 STOP
check "local: logs" local_call "batchline stack logs 2" logs 2
check "local: cli passes the arguments on" local_call "batchline stack cli results abc --json" cli results abc --json
check "local: data-dir even where compose would run" bash -c '[[ $(PATH="$0:$PATH" BATCHLINE_BIN=$1 "$2" data-dir) == "batchline stack data-dir "* ]]' "$TMP/bin" "$TMP/batchline" "$STACK"
check "local: the mode's reason reaches the binary" bash -c '[[ $(BATCHLINE_BIN=$0 STACK_MODE=local "$1" status) == *"[why=STACK_MODE=local]" ]]' "$TMP/batchline" "$STACK"
check "local: no BATCHLINE_BIN is a clear error" bash -c 'STACK_MODE=local "$0" status 2>&1 | grep -q "BATCHLINE_BIN is not set"' "$STACK"
check "local: a missing binary is a clear error" bash -c 'BATCHLINE_BIN=/nonexistent STACK_MODE=local "$0" status 2>&1 | grep -q "no batchline binary at /nonexistent"' "$STACK"
check "an unknown command prints the usage" bash -c '"$0" frobnicate 2>&1 | grep -q "^usage:"' "$STACK"

# --- scripts/test-services.sh: services that do not answer -------------------------
SERVICES=$ROOT/scripts/test-services.sh
closed_pg=postgres://postgres@127.0.0.1:1/postgres closed_mq=amqp://guest:guest@127.0.0.1:2/%2f
: >"$FAKE_DOCKER_LOG"
DATABASE_URL=$closed_pg RABBITMQ_URL=amqp://guest:guest@elsewhere.invalid:5672/%2f \
  PATH="$TMP/bin:$PATH" "$SERVICES" >"$TMP/services.out" 2>&1
check "services: Docker starts the one that does not answer, and says so" \
  grep -q "starting postgres from docker-compose.yml (compose project batchline-test" "$TMP/services.out"
check "services: from the repository's compose file, published on the URL's port" bash -c \
  'grep -q "^docker compose -p batchline-test -f $1/docker-compose.yml -f .* up -d --wait postgres \[" "$0"' "$FAKE_DOCKER_LOG" "$ROOT"
check "services: a service still silent after its start is a clear error" \
  grep -q "nothing answers on 127.0.0.1:1" "$TMP/services.out"
check "services: a service on another host is not its business" bash -c '! grep -q rabbitmq "$0"' "$FAKE_DOCKER_LOG"
mkdir -p "$TMP/noengine"
printf '#!/usr/bin/env bash\nexit 1\n' >"$TMP/noengine/docker"
chmod +x "$TMP/noengine/docker"
check "services: neither the services nor Docker: one line saying what to install" bash -c \
  'out=$(DATABASE_URL=$1 RABBITMQ_URL=$2 PATH="$0:$PATH" "$3" 2>&1); (($? != 0)) && [[ $(wc -l <<<"$out") == 1 && $out == *"127.0.0.1:1"*"127.0.0.1:2"*"install and start PostgreSQL and RabbitMQ"* ]]' \
  "$TMP/noengine" "$closed_pg" "$closed_mq" "$SERVICES"

echo "stack tests: $passed passed, $failed failed"
((failed == 0))
