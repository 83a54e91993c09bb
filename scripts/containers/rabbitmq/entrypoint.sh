#!/bin/bash
# Writes rabbitmq.conf from the environment, then runs the node in the
# foreground as user rabbitmq. The CLI tools (rabbitmq-diagnostics in the
# healthcheck) switch to that user themselves and find the same cookie.
set -euo pipefail
conf=/etc/rabbitmq/rabbitmq.conf
{
  echo "default_user = ${RABBITMQ_DEFAULT_USER:-guest}"
  echo "default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}"
  # The default user may connect from other containers, as in the official image.
  echo "loopback_users = none"
  echo "log.console = true"
  echo "log.console.level = info"
  echo "log.file = false"
} >"$conf"
cookie=/var/lib/rabbitmq/.erlang.cookie
if [[ -n ${RABBITMQ_ERLANG_COOKIE:-} ]]; then
  printf '%s' "$RABBITMQ_ERLANG_COOKIE" >"$cookie"
  unset RABBITMQ_ERLANG_COOKIE # deprecated as a variable in 3.10: the file is enough
fi
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
[[ -f $cookie ]] && chmod 600 "$cookie"
cd /var/lib/rabbitmq
export HOME=/var/lib/rabbitmq
exec setpriv --reuid rabbitmq --regid rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
