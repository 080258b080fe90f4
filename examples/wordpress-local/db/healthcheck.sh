#!/bin/bash
# Healthy when the real server answers over TCP and, if MYSQL_USER/MYSQL_DATABASE are set,
# that user can use that database: the state a client such as WordPress needs. (The
# temporary server of the first start listens on no TCP port, so it never looks healthy.)
set -eo pipefail
user="${MARIADB_USER:-${MYSQL_USER:-}}"
password="${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}"
database="${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}"
password_file="${MARIADB_PASSWORD_FILE:-${MYSQL_PASSWORD_FILE:-}}"
[[ -z "$password" && -n "$password_file" ]] && password="$(<"$password_file")"
if [[ -n "$user" ]]; then
    MYSQL_PWD="$password" exec mariadb --protocol=tcp -h 127.0.0.1 -u"$user" \
        --connect-timeout=3 -e 'SELECT 1' ${database:+"$database"} >/dev/null
fi
# No application user: the server is alive if it answers at all (even "access denied").
exec mariadb-admin --protocol=tcp -h 127.0.0.1 --connect-timeout=3 ping >/dev/null
