#!/usr/bin/env bash
# The checks run `bash -c '…' ARGS`: the single quotes are meant.
# shellcheck disable=SC2016
# scripts/test-stack.sh — tests of scripts/stack.sh's local mode against a
# fake batchline (a shell script that logs its env and drains on SIGTERM),
# so they need no Postgres, RabbitMQ or build. `make test-drill` runs them.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
STACK=$ROOT/scripts/stack.sh

TMP=$(mktemp -d "${TMPDIR:-/tmp}/batchline-stack-test.XXXXXX")
export BATCHLINE_BIN=$TMP/bin/batchline WORKER_DATA_DIR=$TMP/wd STACK_MODE=local
export ENV_FILE=$TMP/no.env START_CHECK_S=0.5 STOP_TIMEOUT=5 FAKE_SUBMIT_S=1
unset DATABASE_URL RABBITMQ_URL METRICS_ADDR EXECUTORS RUNNER NUM_BATCHES SIMULATION_DELAY_MS DB_SCHEMA QUEUE_PREFIX STACK_MAKE_DEFAULTS

mkdir -p "$TMP/bin"
cat >"$BATCHLINE_BIN" <<'EOF'
#!/usr/bin/env bash
# fake batchline: prints what it was started with, drains FAKE_DRAIN s on SIGTERM
case $1 in
migrate) echo "migrations applied" ;;
executor | aggregator | verifier)
  trap 'echo "$1 got SIGTERM"; sleep "${FAKE_DRAIN:-0.2}"; echo "$1 stopped"; exit 0' TERM
  echo "$1 up pid=$$ delay=${SIMULATION_DELAY_MS-unset} metrics=${METRICS_ADDR-unset} db=${DATABASE_URL-unset} prefix=${QUEUE_PREFIX-unset} schema=${DB_SCHEMA-unset}"
  while :; do
    sleep 0.2 &
    wait $!
  done
  ;;
submit)
  echo "submit $*"
  sleep "${FAKE_SUBMIT_S:-1}"
  ;;
*) echo "cli $*" ;;
esac
EOF
chmod +x "$BATCHLINE_BIN"

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
pid_of() { cat "$WORKER_DATA_DIR/run/$1.pid" 2>/dev/null; }
alive() { local p; p=$(pid_of "$1") && kill -0 "$p" 2>/dev/null && [[ $(ps -o stat= -p "$p") != Z* ]]; }
dead_pid() { ! kill -0 "$1" 2>/dev/null || [[ $(ps -o stat= -p "$1") == Z* ]]; }
logfile() { cat "$WORKER_DATA_DIR/logs/$1.log" 2>/dev/null; }
stack() { "$STACK" "$@" >>"$TMP/stack.out" 2>&1; }
# compose mode creates ./worker-data/aggregator for its bind mount: leave the
# tree as it was.
[[ -d worker-data/aggregator ]] && had_agg_dir=1 || had_agg_dir=0
cleanup() {
  "$STACK" down >/dev/null 2>&1
  rm -rf "$TMP"
  ((had_agg_dir)) || rmdir worker-data/aggregator 2>/dev/null || true
}
trap cleanup EXIT

# --- up-detached, kill, restart ---------------------------------------------
check "up-detached starts the services" stack up-detached
for s in worker-1 worker-2 worker-3; do check "$s runs" alive "$s"; done
check "the runner gets the drill's defaults" grep -q "submit submit --count 3 --runs 20000 --chunk-size 1000 --wait" <(logfile runner)
check "executors get SIMULATION_DELAY_MS=2 by default" grep -q "delay=2 " <(logfile worker-1)
check "the stack says which mode it chose" grep -q "mode: local" "$TMP/stack.out"

p2=$(pid_of worker-2) p1=$(pid_of worker-1)
check "kill 2 succeeds" stack kill 2
check "kill 2 killed worker-2" dead_pid "$p2"
check "kill 2 left worker-1 alone" alive worker-1
check "kill 2 left worker-3 alone" alive worker-3
check "kill 2 again fails: nothing to kill" bash -c '! "$0" kill 2 2>/dev/null' "$STACK"
check "kill of an unknown worker fails" bash -c '! "$0" kill 7 2>/dev/null' "$STACK"

SIMULATION_DELAY_MS=99 QUEUE_PREFIX=elsewhere check "restart 2 succeeds" stack restart 2
check "worker-2 runs again" alive worker-2
check "worker-2 restarted with its saved env, not the caller's" bash -c '[[ $(grep -c "delay=2 .*prefix=unset" "$0") == 2 ]]' "$WORKER_DATA_DIR/logs/worker-2.log"
check "worker-2's log was appended to" bash -c '[[ $(grep -c "starting worker-2" "$0") == 2 ]]' "$WORKER_DATA_DIR/logs/worker-2.log"
check "restart of a running worker succeeds" stack restart 1
check "it is a new process" bash -c '[[ $(cat "$0/run/worker-1.pid") != "$1" ]]' "$WORKER_DATA_DIR" "$p1"
check "the old one is gone" dead_pid "$p1"
check "the new one runs" alive worker-1

check "cli runs the binary" bash -c '[[ $("$0" cli metadata abc 2>/dev/null) == "cli metadata abc" ]]' "$STACK"
check "logs prints every service with a prefix" bash -c 'out=$(FOLLOW=0 "$0" logs 2>/dev/null); grep -q "^\[worker-2\] aggregator up" <<<"$out" && grep -q "^\[runner\] submit" <<<"$out"' "$STACK"

pids=$(cat "$WORKER_DATA_DIR"/run/*.pid)
check "down stops everything" stack down
check "down removed the pid files" bash -c '! ls "$0"/run/*.pid >/dev/null 2>&1' "$WORKER_DATA_DIR"
for p in $pids; do check "pid $p is gone after down" dead_pid "$p"; done
check "the services drained on SIGTERM" grep -q "aggregator stopped" <(logfile worker-2)

# --- EXECUTORS and metrics ports ----------------------------------------------
EXECUTORS=3 METRICS_ADDR=127.0.0.1:9500 RUNNER=0 check "up-detached with EXECUTORS=3" stack up-detached
for k in 1 2 3; do check "worker-1-$k runs" alive "worker-1-$k"; done
check "no plain worker-1 with EXECUTORS=3" bash -c '[[ ! -e "$0/run/worker-1.pid" ]]' "$WORKER_DATA_DIR"
check "worker-1-1 metrics on 9500" grep -q "metrics=127.0.0.1:9500 " <(logfile worker-1-1)
check "worker-1-2 metrics on 9510" grep -q "metrics=127.0.0.1:9510 " <(logfile worker-1-2)
check "worker-2 metrics on 9501" grep -q "metrics=127.0.0.1:9501 " <(logfile worker-2)
check "worker-3 metrics on 9502" grep -q "metrics=127.0.0.1:9502 " <(logfile worker-3)
p12=$(pid_of worker-1-2)
check "kill 1-2" stack kill 1-2
check "kill 1-2 killed only worker-1-2" bash -c 'kill -0 $(cat "$0/run/worker-1-1.pid") && kill -0 $(cat "$0/run/worker-1-3.pid")' "$WORKER_DATA_DIR"
check "worker-1-2 is gone" dead_pid "$p12"
check "kill 1 kills every executor" stack kill 1
for k in 1 3; do check "worker-1-$k is down" bash -c '! [[ -e "$0/run/worker-1-$1.pid" ]]' "$WORKER_DATA_DIR" "$k"; done
check "worker-2 survived kill 1" alive worker-2
check "restart 1 restarts every executor" stack restart 1
for k in 1 2 3; do check "worker-1-$k runs again" alive "worker-1-$k"; done
check "down" stack down

# --- down escalates to SIGKILL --------------------------------------------------
FAKE_DRAIN=30 RUNNER=0 check "up-detached with slow drains" stack up-detached
pids=$(cat "$WORKER_DATA_DIR"/run/*.pid)
: >"$TMP/stack.out"
STOP_TIMEOUT=1 check "down with STOP_TIMEOUT=1" stack down
check "down sent SIGKILL after STOP_TIMEOUT" grep -q "still runs after 1s: SIGKILL" "$TMP/stack.out"
check "the SIGKILL cut the drain short" bash -c '[[ $(grep -c "aggregator stopped" "$0") == 2 ]]' "$WORKER_DATA_DIR/logs/worker-2.log"
for p in $pids; do check "pid $p is gone" dead_pid "$p"; done

# --- .env ---------------------------------------------------------------------
cat >"$TMP/test.env" <<'EOF'
# a comment
DATABASE_URL=postgres://from-dotenv/db
QUEUE_PREFIX="from_dotenv"   
DB_SCHEMA=
SIMULATION_DELAY_MS=7 # an inline comment
EOF
ENV_FILE=$TMP/test.env DATABASE_URL=postgres://make-default STACK_MAKE_DEFAULTS=DATABASE_URL \
  QUEUE_PREFIX=from_env RUNNER=0 check "up-detached with a .env" stack up-detached
check ".env replaces the Makefile's default DATABASE_URL" grep -q "db=postgres://from-dotenv/db " <(logfile worker-3 | tail -n 1)
check ".env does not override the environment" grep -q "prefix=from_env " <(logfile worker-3 | tail -n 1)
check "an empty variable is unset, not passed on empty" grep -q "schema=unset" <(logfile worker-3 | tail -n 1)
check "inline comments are not part of the value" grep -q "delay=7 " <(logfile worker-1 | tail -n 1)
check "down" stack down

# --- up in the foreground, stopped by Ctrl-C ----------------------------------------
if command -v python3 >/dev/null 2>&1; then
  # python3 delivers SIGINT to the whole process group, as a terminal's
  # Ctrl-C does, with SIGINT not ignored (a shell's background jobs ignore it).
  RUNNER=0 check "up in the foreground stops everything on Ctrl-C" python3 - "$STACK" "$TMP/up.out" <<'EOF'
import os, signal, subprocess, sys, time
out = open(sys.argv[2], "w")
p = subprocess.Popen([sys.argv[1], "up"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
time.sleep(3)
os.killpg(p.pid, signal.SIGINT)
sys.exit(p.wait(timeout=30))
EOF
  check "up prefixed the services' lines" grep -q '^\[worker-2\] aggregator up' "$TMP/up.out"
  check "up showed the shutdown lines" grep -q '^\[worker-2\] aggregator stopped' "$TMP/up.out"
  check "the services got SIGTERM, not the terminal's SIGINT" bash -c '! grep -q "SIGINT" "$0"' "$TMP/up.out"
  check "nothing runs after Ctrl-C" bash -c '! ls "$0"/run/*.pid >/dev/null 2>&1' "$WORKER_DATA_DIR"
else
  failed=$((failed + 1))
  echo "FAIL up in the foreground: python3 is needed to send a terminal-like SIGINT"
fi

# --- compose mode, against a fake docker -----------------------------------------
mkdir -p "$TMP/docker-bin"
cat >"$TMP/docker-bin/docker" <<'EOF'
#!/usr/bin/env bash
# fake docker: an engine that answers; records each call with HOST_UID
echo "docker $* [uid=${HOST_UID-unset}]" >>"$FAKE_DOCKER_LOG"
case "$1 ${2-}" in
"compose ps") printf 'batchline-worker-1-1\nbatchline-worker-1-2\n' ;;
esac
exit 0
EOF
chmod +x "$TMP/docker-bin/docker"
export FAKE_DOCKER_LOG=$TMP/docker.log
compose_call() { # compose_call EXPECTED STACK-ARGS...: the stack runs exactly EXPECTED
  local want=$1
  shift
  : >"$FAKE_DOCKER_LOG"
  PATH="$TMP/docker-bin:$PATH" STACK_MODE=auto "$STACK" "$@" >>"$TMP/stack.out" 2>&1 || return 1
  grep -v -e '^docker info' -e '^docker compose version' "$FAKE_DOCKER_LOG" | sed 's/ \[uid=.*//' | grep -qxF -- "$want"
}
check "a Docker engine that answers means compose mode" bash -c '[[ $(PATH="$0:$PATH" STACK_MODE=auto "$1" mode 2>/dev/null) == compose ]]' "$TMP/docker-bin" "$STACK"
check "compose: up-detached" compose_call "docker compose up --build --detach" up-detached
check "compose: worker-2 writes as the caller" grep -q "up --build --detach \[uid=$(id -u)\]" "$FAKE_DOCKER_LOG"
RUNNER=0 check "compose: RUNNER=0 scales the runner to 0" compose_call "docker compose up --build --detach --scale runner=0" up-detached
check "compose: kill 2" compose_call "docker compose kill --signal SIGKILL worker-2" kill 2
check "compose: kill 1 kills every replica" compose_call "docker compose kill --signal SIGKILL worker-1" kill 1
check "compose: kill 1-2 kills one replica" compose_call "docker kill --signal SIGKILL batchline-worker-1-2" kill 1-2
check "compose: restart 2" compose_call "docker compose restart worker-2" restart 2
check "compose: restart 1-1" compose_call "docker restart batchline-worker-1-1" restart 1-1
FOLLOW=0 check "compose: logs 3" compose_call "docker compose logs --tail 100 worker-3" logs 3
check "compose: check-metadata runs in worker-2" compose_call "docker compose run --rm --no-deps worker-2 metadata" cli metadata
check "compose: down" compose_call "docker compose down --timeout 5 --remove-orphans" down
check "compose: kill of an unknown worker fails" bash -c '! PATH="$0:$PATH" "$1" kill 9 2>/dev/null' "$TMP/docker-bin" "$STACK"
check "compose: kill of a missing replica fails" bash -c '! PATH="$0:$PATH" "$1" kill 1-7 2>/dev/null' "$TMP/docker-bin" "$STACK"

echo "stack tests: $passed passed, $failed failed"
echo "$passed passed, $failed failed"
((failed == 0))
