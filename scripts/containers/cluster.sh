#!/usr/bin/env bash
# scripts/containers/cluster.sh — the pipeline on a three-node RabbitMQ
# cluster (CLUSTER=1: the compose profile `cluster`, quorum queues with a
# replica on every node, the stages given every node's URL). Drills, each
# while a runner's batches stream:
#   1. SIGKILL the node that leads the work queue (and the result queues
#      it leads) mid-batch, then start it again;
#   2. a rolling restart of all three nodes, one at a time, each only once
#      no quorum queue depends on it (rabbitmq-queues
#      check_if_node_is_quorum_critical).
# Checks: every batch SUCCESS exactly once (runner and verifier), nothing
# dead-lettered. Reports how long each node's loss stalled the pipeline:
# the longest pause between two chunks completing (in Postgres) from the
# kill or stop until the node is back, beside the usual time between two.
# Run it through scripts/containers/run.sh (make test-containers).
set -euo pipefail
# shellcheck source=scripts/containers/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export CLUSTER=1

NODES=(rabbitmq rabbitmq-2 rabbitmq-3)
node_container() { container "$1"; }

trap 'teardown cluster' EXIT

# rabbitmqctl on the first node that runs (any node answers for the cluster).
ctl() {
  local node
  for node in "${NODES[@]}"; do
    running "$(node_container "$node")" || continue
    if dc exec -T "$node" "$@" 2>/dev/null; then return 0; fi
  done
  return 1
}
running_nodes() { ctl rabbitmqctl -q cluster_status --formatter json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))'; }
cluster_of_three() { [[ $(running_nodes) == 3 ]]; }
# name, leader, members (count), online (count) of the batchline quorum queues.
quorum_queues() {
  ctl rabbitmqctl -q list_queues name type leader members online --formatter json |
    python3 -c '
import json, sys
for q in json.load(sys.stdin):
    if q["name"].startswith("batchline.") and q.get("type") == "quorum":
        print(q["name"], q["leader"], len(q["members"]), len(q["online"]))'
}
all_replicated() {
  local queues
  queues=$(quorum_queues) || return 1
  [[ -n $queues ]] && ! awk '$3 != 3 || $4 != 3 {bad = 1} END {exit !bad}' <<<"$queues"
}
not_quorum_critical() { dc exec -T "$1" rabbitmq-queues -q check_if_node_is_quorum_critical; }

psql_q() { dc exec -T postgres psql -U postgres -d postgres -Atc "$1"; }
now() { date +%s.%N; }
# The longest pause (seconds) between two chunks completing from the last
# completion before FROM to TO (epoch seconds).
longest_pause() {
  psql_q "WITH w AS (SELECT completed_at FROM chunks
            WHERE completed_at >= coalesce((SELECT max(completed_at) FROM chunks WHERE completed_at <= to_timestamp($1)), to_timestamp($1))
              AND completed_at <= to_timestamp($2))
          SELECT coalesce(round(max(extract(epoch FROM completed_at - prev)), 2), 0)
          FROM (SELECT completed_at, lag(completed_at) OVER (ORDER BY completed_at) AS prev FROM w) g"
}
# The mean time between the 20 chunk completions before FROM.
cadence() {
  psql_q "SELECT round(extract(epoch FROM max(c) - min(c)) / greatest(count(*) - 1, 1), 2)
          FROM (SELECT completed_at AS c FROM chunks WHERE completed_at <= to_timestamp($1)
                ORDER BY completed_at DESC LIMIT 20) x"
}
chunk_since() { [[ $(psql_q "SELECT count(*) FROM chunks WHERE completed_at > to_timestamp($1)") -gt 0 ]]; }
# "Xs (normally one chunk every Ys)" for a loss at FROM: waits for a chunk to complete
# after now, so that the pause the loss caused has ended.
stall_report() {
  local from=$1 to
  to=$(now)
  wait_for 300 "a chunk completes after the node is back" chunk_since "$to"
  to=$(now)
  printf '%ss (normally one chunk every %ss)' "$(longest_pause "$from" "$to")" "$(cadence "$from")"
}

node_back() { # node_back NODE: started, healthy, in the cluster, queues replicated again
  wait_for 120 "$1 healthy" healthy "$(node_container "$1")"
  wait_for 120 "three running nodes" cluster_of_three
  wait_for 120 "every quorum queue online on three nodes" all_replicated
}

prepare_repo
[[ -z $(project_objects) ]] || die "project $COMPOSE_PROJECT_NAME already has containers, networks or volumes: docker compose -p $COMPOSE_PROJECT_NAME down --volumes"

t0=$SECONDS
# The cluster first, then until every node's AMQP listener accepts.
COMPOSE_PROFILES=cluster dc up --detach --wait postgres "${NODES[@]}" >"$LOGS/cluster-brokers.log" 2>&1 ||
  die "the cluster did not become healthy: $(tail -n 5 "$LOGS/cluster-brokers.log")"
for node in "${NODES[@]}"; do
  wait_for 60 "$node's AMQP port" dc exec -T "$node" rabbitmq-diagnostics -q check_port_connectivity
done
wait_for 60 "three running nodes" cluster_of_three
log "cluster: 3 nodes running ($(dc exec -T rabbitmq rabbitmqctl -q version 2>/dev/null || echo '?')) in $((SECONDS - t0))s"

# --- drill 1: SIGKILL the node leading the work queue -------------------------------------
t0=$SECONDS
export NUM_BATCHES=4 RUNS_PER_BATCH=10000
log "drill 1: CLUSTER=1 make up-detached (4 batches x 10000 runs)"
stack_make up-detached >"$LOGS/cluster1.make.log" 2>&1 || die "CLUSTER=1 up-detached: $(tail -n 5 "$LOGS/cluster1.make.log")"
wait_for 120 "every quorum queue on three nodes" all_replicated
log "drill 1: $(quorum_queues | wc -l) quorum queues, each with 3 members online"
wait_for 120 "the runner reports progress" mid_batch 5000
leader=$(quorum_queues | awk '$1 == "batchline.work" {print $2}')
victim=${leader#rabbit@}
[[ " ${NODES[*]} " == *" $victim "* ]] || die "the work queue's leader is '$leader', not a node of the cluster"
leads=$(quorum_queues | awk -v l="$leader" '$2 == l {n++} END {print n + 0}')
killed_at=$(now)
docker kill --signal SIGKILL "$(node_container "$victim")" >/dev/null
log "drill 1: SIGKILL $victim at $(runs_executed) runs: it led batchline.work and $((leads - 1)) other queue(s)"
sleep 5
restarted_at=$SECONDS
COMPOSE_PROFILES=cluster dc start "$victim" >>"$LOGS/cluster1.make.log" 2>&1
node_back "$victim"
log "drill 1: $victim back in the cluster, queues replicated on 3 nodes, in $((SECONDS - restarted_at))s"
stall_kill=$(stall_report "$killed_at")
log "drill 1: longest pause in chunk completions from the SIGKILL until $victim was back: $stall_kill"
check_verdicts cluster1 4
log "drill 1: done in $((SECONDS - t0))s"

# --- drill 2: rolling restart while batches stream ----------------------------------------
t0=$SECONDS
export NUM_BATCHES=6 RUNS_PER_BATCH=15000
log "drill 2: make up-detached (6 batches x 15000 runs); rolling restart of ${NODES[*]}"
stack_make up-detached >"$LOGS/cluster2.make.log" 2>&1 || die "up-detached: $(tail -n 5 "$LOGS/cluster2.make.log")"
wait_for 120 "the runner reports progress" mid_batch 3000
stalls=()
for node in "${NODES[@]}"; do
  wait_for 120 "$node is not quorum critical" not_quorum_critical "$node"
  stopped_at=$(now)
  restart_start=$SECONDS
  docker restart --time 60 "$(node_container "$node")" >>"$LOGS/cluster2.make.log" 2>&1 || die "restart $node failed"
  node_back "$node"
  stall=$(stall_report "$stopped_at")
  stalls+=("$node $stall;")
  log "drill 2: $node restarted and back in $((SECONDS - restart_start))s at $(runs_executed) runs; longest pause in chunk completions: $stall"
done
running "$(container runner)" || log "drill 2: note: the runner's batches ended before the last restart was through"
check_verdicts cluster2 6
log "drill 2: done in $((SECONDS - t0))s"

# --- every batch SUCCESS once, nothing dead-lettered -------------------------------------
check_verified_once 10
dlq=$(ctl rabbitmqctl -q list_queues name messages | awk '$1 == "batchline.dlq" {print $2}')
[[ ${dlq:-0} == 0 ]] || die "$dlq message(s) dead-lettered"
log "cluster: 10 batches SUCCESS once each, nothing dead-lettered"
log "cluster: longest pause per node loss: SIGKILL $victim $stall_kill; rolling restart: ${stalls[*]}"
log "cluster: SUCCESS"
