#!/bin/bash
# Entrypoint for PostgreSQL from Debian's packages, honouring the official postgres image's
# environment variables: POSTGRES_PASSWORD (required on first start unless
# POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER (default postgres), POSTGRES_DB (default
# the user's name), POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256),
# each also as *_FILE; scripts in /docker-entrypoint-initdb.d (*.sh, *.sql) run once.
set -eo pipefail
shopt -s nullglob

log() { printf '%s [Entrypoint]: %s\n' "$(date -u '+%F %T')" "$*"; }
die() { log "error: $*" >&2; exit 1; }
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

file_env() {
    local var=$1 file="$1_FILE" default=${2:-}
    if [[ -n "${!var:-}" && -n "${!file:-}" ]]; then
        die "both $var and $file are set (they are exclusive)"
    fi
    if [[ -n "${!file:-}" ]]; then
        printf -v "$var" '%s' "$(<"${!file}")"
    elif [[ -z "${!var:-}" ]]; then
        printf -v "$var" '%s' "$default"
    fi
    export "${var?}"
    unset "$file"
}

sql_name() { printf '"%s"' "${1//\"/\"\"}"; }

initialise() {
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    local auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    if [[ -z "$POSTGRES_PASSWORD" && "$auth" != trust ]]; then
        die "the database is uninitialised and POSTGRES_PASSWORD is not set: set it (or" \
            "POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without a password)"
    fi

    log "initialising the database cluster in $PGDATA"
    local pwfile
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    chown postgres "$pwfile"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words, as upstream's
    as_postgres initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
        --auth-host="$auth" --encoding=UTF8 --locale=C.UTF-8 $POSTGRES_INITDB_ARGS >/dev/null
    rm -f "$pwfile"
    printf '\n# containers: peers connect from their own addresses\nhost all all all %s\n' \
        "$auth" >> "$PGDATA/pg_hba.conf"
    printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"

    # A temporary server on the socket only: healthchecks over TCP stay red meanwhile.
    as_postgres pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
    local psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --dbname postgres)
    if [[ "$POSTGRES_DB" != postgres ]]; then
        echo "CREATE DATABASE $(sql_name "$POSTGRES_DB");" | as_postgres "${psql[@]}" >/dev/null
        log "created database $POSTGRES_DB"
    fi
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) log "running $f"; . "$f" ;;
            *.sql) log "running $f"; as_postgres "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" >/dev/null ;;
            *) log "ignoring $f" ;;
        esac
    done
    as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    log "initialisation complete; ready for start up"
}

if [[ "${1:0:1}" == - ]]; then
    set -- postgres "$@"
fi
if [[ "$1" == postgres ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
        initialise
    fi
    unset POSTGRES_PASSWORD
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
fi
exec "$@"
