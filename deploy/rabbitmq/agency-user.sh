#!/usr/bin/env bash
# Creates, updates or deletes the RabbitMQ user of an agency system (see agency-users.md).
#
#   AGENCY_PASSWORD=... agency-user.sh create AGENCY_ID   # or the password on stdin
#   agency-user.sh delete AGENCY_ID
#
# The user `agency-<id>` may only read its inbox `<prefix>.agency.<id>.inbox` and publish to
# `<prefix>.agency.ingress` with routing keys that start with `<id>.`; it configures nothing.
# Works with RabbitMQ 3.x and 4.x. Idempotent: `create` on an existing user changes its
# password and re-applies the permissions.
#
# Settings (environment): RABBITMQ_VHOST (default opora), OPORA_BROKER_PREFIX (default opora),
# RABBITMQ_NODENAME (optional, passed as --node), RABBITMQCTL (default rabbitmqctl),
# AGENCY_MAX_CONNECTIONS (default 5), AGENCY_MAX_CHANNELS (default 20).
set -euo pipefail

usage() { echo "usage: $0 create|delete AGENCY_ID" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
agency=$2

# The id goes into regular expressions: allow only what the directory allows, no metacharacters
# but '-', which is literal outside brackets.
if ! [[ $agency =~ ^[A-Za-z0-9_-]{1,64}$ ]]; then
    echo "invalid agency id: use letters, digits, '_' and '-' (at most 64)" >&2
    exit 2
fi

vhost="${RABBITMQ_VHOST:-opora}"
prefix="${OPORA_BROKER_PREFIX:-opora}"
if ! [[ $prefix =~ ^[A-Za-z0-9_-]+$ ]]; then
    echo "invalid prefix: letters, digits, '_' and '-' only" >&2
    exit 2
fi
user="agency-$agency"
ctl_cmd="${RABBITMQCTL:-rabbitmqctl}"

ctl() {
    if [ -n "${RABBITMQ_NODENAME:-}" ]; then
        "$ctl_cmd" --node "$RABBITMQ_NODENAME" --quiet "$@"
    else
        "$ctl_cmd" --quiet "$@"
    fi
}

user_exists() { ctl list_users --silent | cut -f1 | grep -qxF "$user"; }

case "$action" in
create)
    password="${AGENCY_PASSWORD:-}"
    if [ -z "$password" ]; then
        IFS= read -r password || true
    fi
    [ -n "$password" ] || { echo "no password: set AGENCY_PASSWORD or pipe it in" >&2; exit 2; }
    if user_exists; then
        ctl change_password "$user" "$password"
        ctl set_user_tags "$user"   # no tags: no management UI, no impersonation
    else
        ctl add_user "$user" "$password"
    fi
    # configure: nothing; write: the ingress exchange only; read: its own inbox only.
    ctl set_permissions -p "$vhost" "$user" \
        '^$' \
        "^${prefix}\\.agency\\.ingress\$" \
        "^${prefix}\\.agency\\.${agency}\\.inbox\$"
    # On the (topic) ingress exchange it may publish only with keys "<id>.<message type>".
    ctl set_topic_permissions -p "$vhost" "$user" "${prefix}.agency.ingress" \
        "^${agency}\\." '^$'
    ctl set_user_limits "$user" \
        "{\"max-connections\": ${AGENCY_MAX_CONNECTIONS:-5}, \"max-channels\": ${AGENCY_MAX_CHANNELS:-20}}"
    echo "user $user ready on vhost $vhost"
    ;;
delete)
    if user_exists; then
        ctl close_all_user_connections "$user" "access revoked" 2>/dev/null || true
        ctl delete_user "$user"
        echo "user $user deleted"
    else
        echo "no user $user"
    fi
    ;;
*)
    usage
    ;;
esac
