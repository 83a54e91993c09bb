#!/usr/bin/env bash
# scripts/containers/drill.sh — the drill of docs/drill.md on the compose
# stack, as a user runs it with Docker, with checks: `make up`, then
# kill-worker-2 mid-batch, check-metadata, restart-worker-2; AGGREGATORS=3
# and back to 1; EXECUTORS=3 with one executor killed mid-batch; every
# round's batches SUCCESS once and nothing dead-lettered; the web console's
# /healthz; `make down` leaving no container, network or volume behind.
# Run it through scripts/containers/run.sh (make test-containers), which
# builds the images and sets CONTAINERS_WORK.
set -euo pipefail
# shellcheck source=scripts/containers/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

trap 'teardown drill' EXIT

volumes_before=$(docker volume ls -q | sort)
prepare_repo
[[ -z $(project_objects) ]] || die "project $COMPOSE_PROJECT_NAME already has containers, networks or volumes: docker compose -p $COMPOSE_PROJECT_NAME down --volumes"

# --- round 1: the README's drill through `make up` -----------------------
t0=$SECONDS
# Postgres and RabbitMQ first, then until RabbitMQ's AMQP listener accepts:
# its compose healthcheck (`rabbitmq-diagnostics ping`) answers before,
# and a stage that cannot connect at start exits.
dc up --detach --wait postgres rabbitmq >"$LOGS/brokers.log" 2>&1 || die "postgres/rabbitmq did not become healthy: $(tail -n 5 "$LOGS/brokers.log")"
wait_for 60 "RabbitMQ's AMQP port" dc exec -T rabbitmq rabbitmq-diagnostics -q check_port_connectivity
log "round 1: make up (3 batches x 20000 runs, the drill's defaults)"
stack_make up >"$LOGS/make-up.log" 2>&1 &
UP_PID=$! # it ends by itself once `make down` stopped its services
wait_for 240 "the runner starts (make up: $LOGS/make-up.log)" running "$(container runner)"
log "round 1: services up in $((SECONDS - t0))s"
wait_for 120 "the runner reports progress" mid_batch 5000
log "round 1: make kill-worker-2 at $(runs_executed) runs"
stack_make kill-worker-2 >>"$LOGS/round1.make.log" 2>&1
metadata=$(stack_make check-metadata 2>>"$LOGS/round1.make.log")
printf '%s\n' "$metadata" >"$LOGS/round1.metadata.log"
grep -Eq '^[0-9a-f-]{36} +p[0-9]{2} +[1-9]' <<<"$metadata" ||
  die "check-metadata after the kill shows no batch with rows: $metadata"
log "round 1: make check-metadata: $(grep -Ec '^[0-9a-f-]{36} ' <<<"$metadata") batch(es) with state on disk"
sleep 5 # results pile up in the queue while it is down
stack_make restart-worker-2 >>"$LOGS/round1.make.log" 2>&1
check_verdicts round1 3
log "round 1: done in $((SECONDS - t0))s"

# --- round 2: three aggregators ---------------------------------------------
t0=$SECONDS
export NUM_BATCHES=3 RUNS_PER_BATCH=10000
log "round 2: AGGREGATORS=3 make up-detached"
AGGREGATORS=3 stack_make up-detached >"$LOGS/round2.make.log" 2>&1 || die "AGGREGATORS=3 up-detached: $(tail -n 5 "$LOGS/round2.make.log")"
(($(replicas worker-2) == 3)) || die "round 2: $(replicas worker-2) aggregator replicas, not 3"
check_verdicts round2 3
# Round 1 restarted the only replica in its container (pid 1, the same
# hostname): its partitions must still spread over all three within a
# minute, idle or busy (issue 21, defect 2).
t_spread=$SECONDS
wait_for 60 "round 2: the partitions spread over the three replicas" spread_even 3
log "round 2: $(grep -E '^[0-9]+ replica' "$LOGS/partitions.log") (even $((SECONDS - t_spread))s after the verdicts)"
log "round 2: done in $((SECONDS - t0))s"

# --- round 3: back to one aggregator -----------------------------------------
t0=$SECONDS
log "round 3: AGGREGATORS=1 make up-detached"
AGGREGATORS=1 stack_make up-detached >"$LOGS/round3.make.log" 2>&1 || die "AGGREGATORS=1 up-detached: $(tail -n 5 "$LOGS/round3.make.log")"
(($(replicas worker-2) == 1)) || die "round 3: $(replicas worker-2) aggregator replicas, not 1"
check_verdicts round3 3
log "round 3: done in $((SECONDS - t0))s"

# --- round 4: three executors, one killed mid-batch -------------------------------
t0=$SECONDS
log "round 4: EXECUTORS=3 make up-detached; kill-worker-1-2 mid-batch"
EXECUTORS=3 stack_make up-detached >"$LOGS/round4.make.log" 2>&1 || die "EXECUTORS=3 up-detached: $(tail -n 5 "$LOGS/round4.make.log")"
(($(replicas worker-1) == 3)) || die "round 4: $(replicas worker-1) executors, not 3"
wait_for 120 "the runner reports progress" mid_batch 3000
EXECUTORS=3 stack_make kill-worker-1-2 >>"$LOGS/round4.make.log" 2>&1
sleep 5
EXECUTORS=3 stack_make restart-worker-1-2 >>"$LOGS/round4.make.log" 2>&1
check_verdicts round4 3
log "round 4: done in $((SECONDS - t0))s"

dlq=$(dead_lettered)
((dlq == 0)) || die "$dlq message(s) dead-lettered"
log "nothing dead-lettered"

# --- the web console -----------------------------------------------------------
wait_for 60 "the web container is healthy" healthy "$(container web)"
code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/healthz) || true
[[ $code == 200 ]] || die "the web console's /healthz on 127.0.0.1:8080 answered ${code:-nothing}, not 200"
log "web console: /healthz 200"

# --- make down: nothing left behind -----------------------------------------------
t0=$SECONDS
stack_make down >"$LOGS/down.log" 2>&1 || die "make down: $(tail -n 5 "$LOGS/down.log")"
wait "$UP_PID" 2>/dev/null || true
label=com.docker.compose.project=$COMPOSE_PROJECT_NAME
[[ -z $(docker ps -aq --filter "label=$label") ]] || die "make down left containers: $(docker ps -a --filter "label=$label" --format '{{.Names}}')"
[[ -z $(docker network ls -q --filter "label=$label") ]] || die "make down left networks: $(docker network ls --filter "label=$label" --format '{{.Name}}')"
# Only the data volumes stay (Postgres, RabbitMQ), on purpose; no anonymous ones.
left=$(comm -13 <(printf '%s\n' "$volumes_before") <(docker volume ls -q | sort) | grep -v "^${COMPOSE_PROJECT_NAME}_" || true)
[[ -z $left ]] || die "make down left anonymous volumes: $left"
DOWN_VOLUMES=1 stack_make down >>"$LOGS/down.log" 2>&1 || die "DOWN_VOLUMES=1 make down: $(tail -n 5 "$LOGS/down.log")"
[[ -z $(project_objects) ]] || die "DOWN_VOLUMES=1 make down left: $(project_objects | tr '\n' ' ')"
left=$(comm -13 <(printf '%s\n' "$volumes_before") <(docker volume ls -q | sort) || true)
[[ -z $left ]] || die "DOWN_VOLUMES=1 make down left volumes: $left"
log "make down: no container, network or anonymous volume left; DOWN_VOLUMES=1 also removed the data volumes ($((SECONDS - t0))s)"
log "drill: SUCCESS"
