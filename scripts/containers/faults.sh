#!/usr/bin/env bash
# scripts/containers/faults.sh — network faults with the engine's own
# networks: Postgres sits on network `db`, RabbitMQ on `broker`, the stages
# on both (docker-compose.yml), so `docker network disconnect` cuts a
# container from one service and leaves it the other. Each drill runs
# while a runner's batches stream, cuts for CUT_S seconds, reconnects:
#   1-2. the aggregator replica owning the most partitions (of two, sharing
#        ./worker-data) cut from RabbitMQ only, then from Postgres only;
#   3-4. the same with a disk each (compose.disk-each.yml: each replica's
#        state in its own container, rebuilt from Postgres when it moves);
#   5. an executor (of two) cut from Postgres mid-chunk;
#   6. the verifier cut from both.
# Checks: every batch SUCCESS exactly once, nothing dead-lettered, and
# every partition of a cut aggregator owned by the other replica before
# the cut ends (the aggregator lets go of its partitions once Postgres or
# RabbitMQ has not answered it for 6 s, SILENCE). Reports when the cut
# owner's partitions moved (the first, and all) and the `fenced` counters
# of the cut stage (from its /metrics), so that an effect that came late
# shows. The stages' AMQP heartbeat is 5 s here (?heartbeat=5), so that
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
owned_by() { psql_q "SELECT count(*) FROM partitions WHERE owner = '$1'"; }
owned_list() { psql_q "SELECT string_agg(partition::text, ',' ORDER BY partition) FROM partitions WHERE owner = '$1'"; }
# How many of the partitions LIST (p,q,…) another replica than OWNER has
# taken: a partition released and not taken yet has not moved.
taken_from() { psql_q "SELECT count(*) FROM partitions WHERE partition IN ($2) AND owner IS NOT NULL AND owner <> '$1'"; }

# Waits up to LIMIT s until another replica owns every partition of LIST
# (OWNER's at the cut); sets FIRST and ALL to the seconds from FROM to the
# first one's and the last one's take-over ("-" when not seen).
FIRST=- ALL=-
until_moved() {
  local from=$1 limit=$2 owner=$3 list=$4 had start=$SECONDS n
  had=$(tr ',' '\n' <<<"$list" | grep -c .)
  FIRST=- ALL=-
  while ((SECONDS - start < limit)); do
    n=$(taken_from "$owner" "$list" 2>/dev/null) || true
    [[ $n =~ ^[0-9]+$ ]] || n=0
    [[ $FIRST == - ]] && ((n > 0)) && FIRST=$(since "$from")
    if ((n == had)); then
      ALL=$(since "$from")
      return
    fi
    sleep 0.5
  done
}

# batchline_events_total{event=EVENT} summed over a container's stages,
# from its /metrics on METRICS_ADDR (0 when nothing answers).
event_in() {
  docker exec "$1" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9100 && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3' 2>/dev/null |
    awk -v e="event=\"$2\"" '/^batchline_events_total\{/ && index($0, e) {s += $NF} END {print s + 0}'
}
# The same, over the running containers of compose service SERVICE.
event_of() {
  local c sum=0 n
  for c in $(docker ps --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" --filter "label=com.docker.compose.service=$1" --format '{{.Names}}'); do
    n=$(event_in "$c" "$2")
    sum=$((sum + ${n:-0}))
  done
  echo "$sum"
}

round_up() { # round_up NAME: a new runner round with the drill's settings
  stack_make up-detached >"$LOGS/$1.make.log" 2>&1 || die "$1: up-detached: $(tail -n 5 "$LOGS/$1.make.log")"
}

cut_aggregator() { # cut_aggregator NAME NETWORK WHAT DISKS
  local name=$1 net=$2 what=$3 disks=$4 owner victim cut_at list had fenced_before let_go_before
  # Between rounds the replicas are up: let a cut replica of the round
  # before get partitions back first, so that the cut lands mid-batch.
  if (($(replicas worker-2) == 2)); then
    wait_for 120 "two aggregator replicas own partitions before $name" two_owners
  fi
  round_up "$name"
  wait_for 120 "two aggregator replicas own partitions" two_owners
  wait_for 120 "the runner reports progress" mid_batch 5000
  owner=$(busiest_owner)
  victim=$(container_of_owner "$owner")
  [[ -n $victim ]] || die "$name: no container for owner $owner"
  list=$(owned_list "$owner")
  had=$(tr ',' '\n' <<<"$list" | grep -c .)
  fenced_before=$(event_of worker-2 fenced)
  let_go_before=$(event_in "$victim" "$LET_GO")
  cut_at=$(now)
  docker network disconnect "$net" "$victim"
  log "$name ($disks): $victim ($owner, $had partitions) cut from $what for ${CUT_S}s at $(runs_executed) runs"
  until_moved "$cut_at" "$CUT_S" "$owner" "$list"
  [[ $ALL != - ]] || die "$name: another replica took only $(taken_from "$owner" "$list") of the cut owner's $had partitions within ${CUT_S}s (the cut)"
  log "$name: another replica took the cut owner's partitions: the first after ${FIRST}s, all after ${ALL}s"
  sleep "$(awk -v c="$CUT_S" -v s="$(since "$cut_at")" 'BEGIN {d = c - s; print (d > 0 ? d : 0)}')"
  docker network connect "$net" "$victim"
  log "$name: reconnected after $(since "$cut_at")s"
  check_verdicts "$name" "$NUM_BATCHES"
  local fenced let_go
  fenced=$(($(event_of worker-2 fenced) - fenced_before))
  let_go=$(($(event_in "$victim" "$LET_GO") - let_go_before))
  log "$name: the aggregators counted $fenced fenced effect(s); the cut replica $let_go $LET_GO"
  REPORT+=("$name ($what, $disks): $had partitions, first moved after ${FIRST}s, all after ${ALL}s, fenced $fenced, $LET_GO $let_go;")
}

# Chunks claimed more than once (an attempt whose lease ran out, taken
# over by another): what an executor's late commit would be fenced by.
reclaimed() { psql_q "SELECT count(*) FROM chunks WHERE attempts > 1"; }

cut_container() { # cut_container NAME SERVICE CONTAINER WHAT NETWORK...
  local name=$1 service=$2 victim=$3 what=$4 cut_at net fenced_before fenced reclaimed_before again
  shift 4
  round_up "$name"
  wait_for 120 "the runner reports progress" mid_batch 3000
  fenced_before=$(event_of "$service" fenced)
  reclaimed_before=$(reclaimed)
  cut_at=$(now)
  for net in "$@"; do docker network disconnect "$net" "$victim"; done
  log "$name: $victim cut from $what for ${CUT_S}s at $(runs_executed) runs"
  sleep "$CUT_S"
  for net in "$@"; do docker network connect "$net" "$victim"; done
  log "$name: reconnected after $(since "$cut_at")s"
  check_verdicts "$name" "$NUM_BATCHES"
  fenced=$(($(event_of "$service" fenced) - fenced_before))
  again=$(($(reclaimed) - reclaimed_before))
  log "$name: $service counted $fenced fenced effect(s) (late effects refused); $again chunk(s) claimed again meanwhile"
  REPORT+=("$name ($service cut from $what): fenced $fenced, chunks claimed again $again;")
}

# Whether the aggregator replicas have a disk each: no mount at all on
# /app/worker-data (their container's own filesystem).
disk_each() {
  local c
  for c in $(docker ps --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" --filter label=com.docker.compose.service=worker-2 --format '{{.Names}}'); do
    [[ -z $(docker inspect -f '{{range .Mounts}}{{.Destination}} {{end}}' "$c") ]] || return 1
  done
}

prepare_repo
[[ -z $(project_objects) ]] || die "project $COMPOSE_PROJECT_NAME already has containers, networks or volumes: docker compose -p $COMPOSE_PROJECT_NAME down --volumes"
dc up --detach --wait postgres rabbitmq >"$LOGS/faults-brokers.log" 2>&1 || die "postgres/rabbitmq did not become healthy: $(tail -n 5 "$LOGS/faults-brokers.log")"
wait_for 60 "RabbitMQ's AMQP port" dc exec -T rabbitmq rabbitmq-diagnostics -q check_port_connectivity

REPORT=()
export AGGREGATORS=2 EXECUTORS=2 NUM_BATCHES=4 RUNS_PER_BATCH=10000
SHARED=$COMPOSE_FILE
LET_GO=broker_silence_let_go
cut_aggregator faults1 "$NET_BROKER" "RabbitMQ only" "one disk"
LET_GO=store_silence_let_go
cut_aggregator faults2 "$NET_DB" "Postgres only" "one disk"
export COMPOSE_FILE=$SHARED:scripts/containers/compose.disk-each.yml
LET_GO=broker_silence_let_go
cut_aggregator faults3 "$NET_BROKER" "RabbitMQ only" "a disk each"
disk_each || die "faults3: an aggregator replica still mounts a shared /app/worker-data"
LET_GO=store_silence_let_go
cut_aggregator faults4 "$NET_DB" "Postgres only" "a disk each"
export COMPOSE_FILE=$SHARED
cut_container faults5 worker-1 "$(container worker-1 1)" "Postgres" "$NET_DB"
cut_container faults6 worker-3 "$(container worker-3)" "Postgres and RabbitMQ" "$NET_DB" "$NET_BROKER"

check_verified_once 24
dlq=$(dead_lettered)
((dlq == 0)) || die "$dlq message(s) dead-lettered"
log "faults: 24 batches SUCCESS once each, nothing dead-lettered; ${REPORT[*]}"
log "faults: SUCCESS"
