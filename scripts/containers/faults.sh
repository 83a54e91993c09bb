#!/usr/bin/env bash
# scripts/containers/faults.sh — network faults with the engine's own
# networks: Postgres sits on network `db`, RabbitMQ on `broker`, the stages
# on both (docker-compose.yml), so `docker network disconnect` cuts a
# container from one service and leaves it the other. Each drill runs
# while a runner's batches stream, cuts for CUT_S seconds, reconnects:
#   1. the aggregator replica owning the most partitions (of two, sharing
#      ./worker-data) cut from RabbitMQ only;
#   2. the same, cut from Postgres only;
#   3. an executor (of two) cut from Postgres mid-chunk;
#   4. the verifier cut from both.
# Checks: every batch SUCCESS exactly once, nothing dead-lettered. Reports
# when the cut owner's partitions moved and the aggregators' `fenced`
# counters. The stages' AMQP heartbeat is 5 s here (?heartbeat=5), so that
# RabbitMQ notices a cut connection within seconds rather than minutes.
# Run it through scripts/containers/run.sh (SUITES=faults make test-containers).
set -euo pipefail
# shellcheck source=scripts/containers/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CUT_S=${CUT_S:-45}
NET_DB=${COMPOSE_PROJECT_NAME}_db
NET_BROKER=${COMPOSE_PROJECT_NAME}_broker
export STACK_RABBITMQ_URL="amqp://guest:guest@rabbitmq:5672/%2f?heartbeat=5"

trap 'teardown faults' EXIT

psql_q() { dc exec -T postgres psql -U postgres -d postgres -Atc "$1"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
owners() { psql_q "SELECT count(DISTINCT owner) FROM partitions WHERE owner IS NOT NULL"; }
two_owners() { [[ $(owners) == 2 ]]; }
# The busiest owner (partitions owned) and its container (the owner's name
# is aggregator-HOSTNAME-PID, and a container's hostname is its short id).
busiest_owner() { psql_q "SELECT owner FROM partitions WHERE owner IS NOT NULL GROUP BY owner ORDER BY count(*) DESC, owner LIMIT 1"; }
container_of_owner() {
  # aggregator-HOST-PID-SUFFIX; in a container HOST is its short id (no dash).
  local host=${1#aggregator-}
  host=${host%%-*}
  docker ps --no-trunc --format '{{.ID}} {{.Names}}' | awk -v h="$host" 'index($1, h) == 1 {print $2}'
}
owns_none() { [[ $(psql_q "SELECT count(*) FROM partitions WHERE owner = '$1'") == 0 ]]; }

# Waits up to LIMIT s for CHECK; echoes "after Ns" (N: seconds since
# FROM), or "not within LIMITs".
time_until() {
  local from=$1 limit=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start >= limit)); then
      echo "not within ${limit}s (the cut)"
      return
    fi
    sleep 0.5
  done
  echo "after $(since "$from")s"
}

# `fenced` effects counted by the running aggregators (their /metrics).
fenced_total() {
  local c sum=0 n
  for c in $(docker ps --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" --filter label=com.docker.compose.service=worker-2 --format '{{.Names}}'); do
    n=$(docker exec "$c" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9100 && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3' 2>/dev/null |
      awk '/^batchline_events_total\{.*event="fenced"/ {s += $NF} END {print s + 0}')
    sum=$((sum + ${n:-0}))
  done
  echo "$sum"
}

round_up() { # round_up NAME: a new runner round with the drill's settings
  stack_make up-detached >"$LOGS/$1.make.log" 2>&1 || die "$1: up-detached: $(tail -n 5 "$LOGS/$1.make.log")"
}

cut_aggregator() { # cut_aggregator NAME NETWORK WHAT
  local name=$1 net=$2 what=$3 owner victim cut_at moved fenced_before
  round_up "$name"
  wait_for 120 "two aggregator replicas own partitions" two_owners
  wait_for 120 "the runner reports progress" mid_batch 5000
  owner=$(busiest_owner)
  victim=$(container_of_owner "$owner")
  [[ -n $victim ]] || die "$name: no container for owner $owner"
  fenced_before=$(fenced_total)
  cut_at=$(now)
  docker network disconnect "$net" "$victim"
  log "$name: $victim ($owner, $(psql_q "SELECT count(*) FROM partitions WHERE owner = '$owner'") partitions) cut from $what for ${CUT_S}s at $(runs_executed) runs"
  moved=$(time_until "$cut_at" "$CUT_S" owns_none "$owner")
  log "$name: the cut owner's partitions all had another owner $moved"
  sleep "$(awk -v c="$CUT_S" -v s="$(since "$cut_at")" 'BEGIN {d = c - s; print (d > 0 ? d : 0)}')"
  docker network connect "$net" "$victim"
  log "$name: reconnected after $(since "$cut_at")s"
  check_verdicts "$name" "$NUM_BATCHES"
  log "$name: fenced effects counted by the aggregators: $(($(fenced_total) - fenced_before)) (total $(fenced_total))"
  REPORT+=("$name ($what): partitions moved $moved;")
}

cut_container() { # cut_container NAME CONTAINER WHAT NETWORK...
  local name=$1 victim=$2 what=$3 cut_at net
  shift 3
  round_up "$name"
  wait_for 120 "the runner reports progress" mid_batch 3000
  cut_at=$(now)
  for net in "$@"; do docker network disconnect "$net" "$victim"; done
  log "$name: $victim cut from $what for ${CUT_S}s at $(runs_executed) runs"
  sleep "$CUT_S"
  for net in "$@"; do docker network connect "$net" "$victim"; done
  log "$name: reconnected after $(since "$cut_at")s"
  check_verdicts "$name" "$NUM_BATCHES"
}

prepare_repo
[[ -z $(project_objects) ]] || die "project $COMPOSE_PROJECT_NAME already has containers, networks or volumes: docker compose -p $COMPOSE_PROJECT_NAME down --volumes"
dc up --detach --wait postgres rabbitmq >"$LOGS/faults-brokers.log" 2>&1 || die "postgres/rabbitmq did not become healthy: $(tail -n 5 "$LOGS/faults-brokers.log")"
wait_for 60 "RabbitMQ's AMQP port" dc exec -T rabbitmq rabbitmq-diagnostics -q check_port_connectivity

REPORT=()
export AGGREGATORS=2 EXECUTORS=2 NUM_BATCHES=4 RUNS_PER_BATCH=10000
cut_aggregator faults1 "$NET_BROKER" "RabbitMQ only"
cut_aggregator faults2 "$NET_DB" "Postgres only"
cut_container faults3 "$(container worker-1 1)" "Postgres" "$NET_DB"
cut_container faults4 "$(container worker-3)" "Postgres and RabbitMQ" "$NET_DB" "$NET_BROKER"

check_verified_once 16
dlq=$(dead_lettered)
((dlq == 0)) || die "$dlq message(s) dead-lettered"
log "faults: 16 batches SUCCESS once each, nothing dead-lettered; ${REPORT[*]}"
log "faults: SUCCESS"
