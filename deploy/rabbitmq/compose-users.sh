#!/usr/bin/env bash
# Creates the RabbitMQ users of the compose stack (the `rabbitmq-users` one-shot service).
#
# Why a separate step: the node imports definitions.json at boot, and a node that does so
# creates no default user, while definitions.json deliberately holds no users (no password
# hashes in the repository). Idempotent: it runs on every `docker compose up`.
#
# Runs in a container of the rabbitmq image that mounts the broker's data volume read-only,
# only to read the Erlang cookie that rabbitmqctl needs to talk to the node.
set -euo pipefail

node="${RABBITMQ_NODENAME:-rabbit@rabbitmq}"
vhost=opora

ctl() { rabbitmqctl --node "$node" --quiet "$@"; }

ensure_user() {  # NAME PASSWORD
    if ctl list_users --silent | cut -f1 | grep -qxF "$1"; then
        ctl change_password "$1" "$2"
    else
        ctl add_user "$1" "$2"
    fi
}

ctl await_startup

# The application's user: everything inside its own vhost, nothing elsewhere.
ensure_user opora "${RABBITMQ_APP_PASSWORD:?RABBITMQ_APP_PASSWORD is not set}"
ctl set_permissions --vhost "$vhost" opora '.*' '.*' '.*'

# An operator for the management UI (http://127.0.0.1:15672), only when a password is given.
if [ -n "${RABBITMQ_ADMIN_PASSWORD:-}" ]; then
    ensure_user admin "$RABBITMQ_ADMIN_PASSWORD"
    ctl set_user_tags admin administrator
    ctl set_permissions --vhost "$vhost" admin '.*' '.*' '.*'
fi

echo "rabbitmq users ready on $node"
