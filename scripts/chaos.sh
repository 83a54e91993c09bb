#!/usr/bin/env bash
# scripts/chaos.sh — the drill without a human: starts the local stack,
# SIGKILLs a random worker every few seconds and restarts it while the
# runner's batches run, then checks that every batch ended SUCCESS and that
# the verifier printed each verdict exactly once. Exit 0 only then.
#
#   CHAOS_KILLS=8         kills at most (the run ends earlier if the batches do)
#   CHAOS_INTERVAL_S=4    mean seconds between kills (uniform in 1..2×mean)
#   CHAOS_DOWNTIME_S=2    seconds a killed worker stays down
#   CHAOS_TIMEOUT_S=900   give up waiting for the verdicts after this long
#   CHAOS_SEED            seed of the victim choice (random by default)
# plus the drill's settings (NUM_BATCHES, EXECUTORS, …: batchline stack --help).
# Local mode only: it reads the services' logs from WORKER_DATA_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STACK=scripts/stack.sh
export STACK_MODE=local RUNNER=1

log() { printf '[chaos] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

KILLS=${CHAOS_KILLS:-8}
INTERVAL=${CHAOS_INTERVAL_S:-4}
DOWNTIME=${CHAOS_DOWNTIME_S:-2}
TIMEOUT=${CHAOS_TIMEOUT_S:-900}
SEED=${CHAOS_SEED:-$$}
for v in KILLS INTERVAL DOWNTIME TIMEOUT SEED; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "CHAOS_${v}… must be a whole number, not '${!v}'"
done
RANDOM=$SEED

# (grep reads all of the status: with -q it could stop early and, under
# pipefail, turn a match into a failure)
if "$STACK" status 2>/dev/null | grep ' running ' >/dev/null; then
  die "a stack already runs (make ps); make down first"
fi

# The stack script resolves WORKER_DATA_DIR (from the environment or .env).
DATA=$("$STACK" data-dir)
LOG_DIR=$DATA/logs RUN_DIR=$DATA/run
offset_of() { if [[ -f $LOG_DIR/$1.log ]]; then echo $(($(wc -c <"$LOG_DIR/$1.log") + 1)); else echo 1; fi; }
RUNNER_FROM=$(offset_of runner)
VERIFIER_FROM=$(offset_of worker-3)
since() { tail -c "+$2" "$LOG_DIR/$1.log" 2>/dev/null || true; }

cleanup() { "$STACK" down >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

log "seed $SEED: up to $KILLS kills, one every ~${INTERVAL}s, ${DOWNTIME}s down each"
"$STACK" up-detached >/dev/null

runner_running() { "$STACK" status | grep -E '^runner +runner +[0-9]+ +running' >/dev/null; }

# What the stack resolved from the environment and .env, as the runner got it.
setting() { sed -n "s/^$1=//p" "$RUN_DIR/runner.env"; }
executors=$(setting EXECUTORS) want=$(setting NUM_BATCHES)
victims=(1 2 3)
if [[ ${executors:-1} -gt 1 ]]; then
  for ((k = 1; k <= executors; k++)); do victims+=("1-$k"); done
fi
kills=0 deadline=$((SECONDS + TIMEOUT))
while ((kills < KILLS)) && runner_running; do
  sleep $((1 + RANDOM % (2 * INTERVAL)))
  runner_running || break
  victim=${victims[RANDOM % ${#victims[@]}]}
  if "$STACK" kill "$victim" >/dev/null 2>&1; then
    kills=$((kills + 1))
    log "kill $kills: worker-$victim (SIGKILL), down for ${DOWNTIME}s"
    sleep "$DOWNTIME"
  fi
  "$STACK" restart "$victim" >/dev/null 2>&1 || die "worker-$victim did not restart: see $LOG_DIR"
done
log "$kills kills done; waiting for the verdicts"
while runner_running; do
  ((SECONDS < deadline)) || die "no verdicts after ${TIMEOUT}s: see $LOG_DIR/runner.log"
  sleep 1
done

runner_out=$(since runner "$RUNNER_FROM")
verifier_out=$(since worker-3 "$VERIFIER_FROM")
mapfile -t batches < <(grep -oE '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' <<<"$runner_out" | sort -u)
both=$(printf '%s\n%s\n' "$runner_out" "$verifier_out")
failed=0
if [[ ${#batches[@]} -eq 0 ]]; then
  log "FAIL: the runner printed no batch id (see $LOG_DIR/runner.log)"
  failed=1
fi
for id in "${batches[@]}"; do
  verdicts=$(grep -cE "^(SUCCESS|FAILURE) \[.*\] batch=$id( |$)" <<<"$verifier_out" || true)
  success=$(grep -cE "^SUCCESS \[.*\] batch=$id( |$)" <<<"$both" || true)
  if [[ $success -eq 0 ]]; then
    log "FAIL: batch $id did not end SUCCESS: $(grep -E "batch=$id" <<<"$both" | head -n1)"
    failed=1
  fi
  if [[ $verdicts -ne 1 ]]; then
    log "FAIL: the verifier printed $verdicts verdict lines for batch $id (want exactly 1)"
    failed=1
  fi
done
if [[ ${#batches[@]} -ne $want ]]; then
  log "FAIL: the runner submitted ${#batches[@]} batches, want $want"
  failed=1
fi
grep -E '^(SUCCESS|FAILURE) ' <<<"$verifier_out" | sed 's/^/[chaos] verifier: /' >&2 || true
if ((failed)); then
  log "FAILED after $kills kills (seed $SEED); logs in $LOG_DIR"
  exit 1
fi
log "ok: ${#batches[@]} batches SUCCESS, each verdict printed once, after $kills kills (seed $SEED)"
