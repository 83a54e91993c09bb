#!/usr/bin/env bash
# scripts/test-services.sh — what `make test` runs first: the tests need
# Postgres and RabbitMQ (DATABASE_URL, RABBITMQ_URL; 127.0.0.1:5432 and
# :5672 by default). When one does not answer on a loopback address but a
# Docker engine does, it starts that service from docker-compose.yml, in a
# compose project of its own (batchline-test: its own volumes, never the
# drill's data), published on the URL's port, Postgres trusting local
# connections as the tests' default URL expects; and says so. When neither
# answers, it says in one line what to install. Services elsewhere (another
# host in the URL) are the tests' to reach: not checked here.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROJECT=batchline-test

# host and port of URL ("" when the URL has no host), DEFAULT_PORT if none.
host_port() {
  local url=$1 default_port=$2 rest hostport
  rest=${url#*://}
  rest=${rest%%/*}
  rest=${rest%%\?*}
  hostport=${rest##*@}
  if [[ $hostport == *:* ]]; then
    printf '%s %s\n' "${hostport%:*}" "${hostport##*:}"
  else
    printf '%s %s\n' "$hostport" "$default_port"
  fi
}

answers() { # answers PORT: something accepts TCP on 127.0.0.1:PORT
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

read -r pg_host pg_port < <(host_port "${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}" 5432)
read -r mq_host mq_port < <(host_port "${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}" 5672)

missing=() ports=()
local_host() { [[ $1 == 127.0.0.1 || $1 == localhost ]]; }
if local_host "$pg_host" && ! answers "$pg_port"; then
  missing+=(postgres) ports+=("Postgres on 127.0.0.1:$pg_port")
fi
if local_host "$mq_host" && ! answers "$mq_port"; then
  missing+=(rabbitmq) ports+=("RabbitMQ on 127.0.0.1:$mq_port")
fi
((${#missing[@]} == 0)) && exit 0

what=$(printf '%s and ' "${ports[@]}")
what=${what% and }
if ! command -v docker >/dev/null 2>&1 || ! timeout 15 docker info >/dev/null 2>&1; then
  echo "make test: nothing answers for $what and no Docker engine answers: install and start PostgreSQL and RabbitMQ (Debian: apt-get install postgresql rabbitmq-server) or Docker with Compose (make test then starts them from docker-compose.yml), or point DATABASE_URL / RABBITMQ_URL at running ones" >&2
  exit 1
fi
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  echo "make test: nothing answers for $what; a Docker engine answers but neither 'docker compose' nor 'docker-compose' is installed: install Docker Compose, or start PostgreSQL and RabbitMQ yourself" >&2
  exit 1
fi

override=$(mktemp "${TMPDIR:-/tmp}/batchline-test-services.XXXXXX.yml")
trap 'rm -f "$override"' EXIT
cat >"$override" <<YAML
services:
  postgres:
    environment:
      POSTGRES_HOST_AUTH_METHOD: trust
    ports: ["127.0.0.1:$pg_port:5432"]
  rabbitmq:
    ports: ["127.0.0.1:$mq_port:5672"]
YAML
echo "make test: nothing answers for $what; starting ${missing[*]} from docker-compose.yml (compose project $PROJECT; '${compose[*]} -p $PROJECT down -v' removes them)"
if ! "${compose[@]}" -p "$PROJECT" -f "$ROOT/docker-compose.yml" -f "$override" up -d --wait "${missing[@]}"; then
  echo "make test: '${compose[*]} -p $PROJECT up' failed for ${missing[*]} (its output is above)" >&2
  exit 1
fi
for service in "${missing[@]}"; do
  port=$pg_port
  [[ $service == rabbitmq ]] && port=$mq_port
  if ! answers "$port"; then
    echo "make test: $service was started from docker-compose.yml but nothing answers on 127.0.0.1:$port" >&2
    exit 1
  fi
done
echo "make test: ${missing[*]} up (compose project $PROJECT)"
