#!/bin/bash
# Initialises $PGDATA on first start (superuser postgres, password
# $POSTGRES_PASSWORD from any address, trust on the local socket as the
# official image does), then runs Postgres in the foreground.
set -euo pipefail
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
if [[ ! -s $PGDATA/PG_VERSION ]]; then
  initdb -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
