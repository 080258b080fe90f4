#!/bin/bash
# Entrypoint for MariaDB from Debian's packages, honouring the official mysql/mariadb images'
# environment variables:
#   MYSQL_ROOT_PASSWORD | MYSQL_ALLOW_EMPTY_PASSWORD | MYSQL_RANDOM_ROOT_PASSWORD (one is
#   required on first start), MYSQL_ROOT_HOST (default %), MYSQL_DATABASE, MYSQL_USER,
#   MYSQL_PASSWORD; each also as MARIADB_* (which wins; MARIADB_ALLOW_EMPTY_ROOT_PASSWORD),
#   and as *_FILE (read from a file, for secrets). Scripts in /docker-entrypoint-initdb.d
#   (*.sh, *.sql, *.sql.gz) run once, after the first initialisation.
# When the data directory has no `mysql` schema yet, it is initialised with a temporary
# server that listens on a private socket only, so healthchecks over TCP stay red until the
# real server starts.
set -eo pipefail
shopt -s nullglob

datadir=/var/lib/mysql
socket=/run/mysqld/init.sock

log() { printf '%s [Entrypoint]: %s\n' "$(date -u '+%F %T')" "$*"; }
die() { log "error: $*" >&2; exit 1; }

# setting NAME: the value of MARIADB_NAME, else MYSQL_NAME (or the file named by *_FILE);
# extra arguments are older spellings of the same setting.
setting() {
    local var file
    for var in "MARIADB_$1" "MYSQL_$1" "${@:2}"; do
        file="${var}_FILE"
        if [[ -n "${!var:-}" && -n "${!file:-}" ]]; then
            die "both $var and $file are set (they are exclusive)"
        elif [[ -n "${!var:-}" ]]; then
            printf '%s' "${!var}"; return
        elif [[ -n "${!file:-}" ]]; then
            [[ -r "${!file}" ]] || die "$file: cannot read ${!file}"
            printf '%s' "$(<"${!file}")"; return
        fi
    done
}

sql_string() { local v=${1//\\/\\\\}; printf "'%s'" "${v//\'/\\\'}"; }
sql_name() { printf '`%s`' "${1//\`/\`\`}"; }

run_sql() { mariadb --protocol=socket --socket="$socket" -uroot --batch --skip-column-names "$@"; }

start_temporary_server() {
    log "starting a temporary server (no networking)"
    "$@" --skip-networking --socket="$socket" --skip-log-bin \
        --loose-innodb-buffer-pool-load-at-startup=0 \
        --loose-innodb-buffer-pool-dump-at-shutdown=0 &
    temporary_pid=$!
    local i
    for ((i = 0; i < 300; i++)); do
        run_sql -e 'SELECT 1' >/dev/null 2>&1 && return
        kill -0 "$temporary_pid" 2>/dev/null || die "the temporary server exited"
        sleep 0.1
    done
    die "the temporary server did not answer within 30 s"
}

stop_temporary_server() {
    kill "$temporary_pid"
    wait "$temporary_pid" || true
    log "temporary server stopped"
}

initialise() {
    local root_password allow_empty random_root root_host database user password
    root_password="$(setting ROOT_PASSWORD)"
    allow_empty="$(setting ALLOW_EMPTY_ROOT_PASSWORD MYSQL_ALLOW_EMPTY_PASSWORD)"
    random_root="$(setting RANDOM_ROOT_PASSWORD)"
    root_host="$(setting ROOT_HOST)"
    root_host="${root_host:-%}"
    database="$(setting DATABASE)"
    user="$(setting USER)"
    password="$(setting PASSWORD)"

    if [[ -z "$root_password" && -z "$allow_empty" && -z "$random_root" ]]; then
        die "the database is uninitialised and no root password option is set: set one of" \
            "MYSQL_ROOT_PASSWORD, MYSQL_ALLOW_EMPTY_PASSWORD or MYSQL_RANDOM_ROOT_PASSWORD" \
            "(or their MARIADB_* forms)"
    fi
    if [[ "$user" == root ]]; then
        die "MYSQL_USER=root: MYSQL_USER and MYSQL_PASSWORD are for a regular user;" \
            "use MYSQL_ROOT_PASSWORD for root"
    fi
    [[ -n "$user" && -z "$password" ]] && die "MYSQL_USER is set but MYSQL_PASSWORD is not"
    [[ -z "$user" && -n "$password" ]] && log "warning: MYSQL_PASSWORD is set without MYSQL_USER; ignored"
    if [[ -n "$random_root" && -z "$root_password" ]]; then
        root_password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')"
        log "GENERATED ROOT PASSWORD: $root_password"
    fi

    log "initialising the database in $datadir"
    mkdir -p "$datadir"
    chown mysql:mysql "$datadir"
    mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db --cross-bootstrap \
        --auth-root-authentication-method=normal --rpm --skip-log-bin >/dev/null
    start_temporary_server "$@"

    # Only root@localhost (socket) and, unless MYSQL_ROOT_HOST=localhost, root@'%' remain:
    # peers connect from their own container address.
    {
        echo "SET @@SESSION.SQL_LOG_BIN=0;"
        echo "DROP USER IF EXISTS root@'127.0.0.1', root@'::1', ''@'localhost';"
        echo "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\\'', @@hostname, '\\', \\'\\'@\\'', @@hostname, '\\'');"
        echo "ALTER USER root@localhost IDENTIFIED BY $(sql_string "$root_password");"
        if [[ "$root_host" != localhost ]]; then
            echo "CREATE USER root@$(sql_string "$root_host") IDENTIFIED BY $(sql_string "$root_password");"
            echo "GRANT ALL ON *.* TO root@$(sql_string "$root_host") WITH GRANT OPTION;"
        fi
        if [[ -n "$database" ]]; then
            echo "CREATE DATABASE IF NOT EXISTS $(sql_name "$database");"
        fi
        if [[ -n "$user" ]]; then
            echo "CREATE USER $(sql_string "$user")@'%' IDENTIFIED BY $(sql_string "$password");"
            if [[ -n "$database" ]]; then
                echo "GRANT ALL ON $(sql_name "${database//_/\\_}").* TO $(sql_string "$user")@'%';"
            fi
        fi
        echo "FLUSH PRIVILEGES;"
    } | run_sql
    [[ -n "$database" ]] && log "created database $database"
    [[ -n "$user" ]] && log "created user $user"

    # From here on root needs its password (scripts may call run_sql too).
    export MYSQL_PWD="$root_password"
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) log "running $f"; . "$f" ;;
            *.sql) log "running $f"; run_sql ${database:+"$database"} < "$f" ;;
            *.sql.gz) log "running $f"; gunzip -c "$f" | run_sql ${database:+"$database"} ;;
            *) log "ignoring $f" ;;
        esac
    done
    unset MYSQL_PWD

    stop_temporary_server
    log "initialisation complete; ready for start up"
}

# `docker run IMAGE --some-option` passes options to the server, as the official images do.
if [[ "${1:0:1}" == - ]]; then
    set -- mariadbd "$@"
fi

if [[ "$1" == mariadbd || "$1" == mysqld ]]; then
    # A fresh volume may come with root's ownership; the server runs as mysql.
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld
    if [[ ! -d "$datadir/mysql" ]]; then
        initialise "$@"
    fi
fi
exec "$@"
