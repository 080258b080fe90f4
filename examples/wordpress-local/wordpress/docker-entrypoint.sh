#!/bin/bash
# Entrypoint for WordPress from Debian's packages, honouring the official wordpress image's
# environment variables:
#   WORDPRESS_DB_HOST (default mysql; host:port allowed), WORDPRESS_DB_USER (default root),
#   WORDPRESS_DB_PASSWORD (required; may be set to empty), WORDPRESS_DB_NAME (default
#   wordpress), WORDPRESS_TABLE_PREFIX (default wp_), WORDPRESS_AUTH_KEY and the other
#   keys/salts (default: random, kept for the container's life), WORDPRESS_DEBUG,
#   WORDPRESS_CONFIG_EXTRA (PHP appended to the config); each also as *_FILE.
# Debian's wp-config.php reads /etc/wordpress/config-<host>.php and falls back to
# config-default.php: that is the file written here, on every start.
set -eo pipefail

die() { echo "docker-entrypoint.sh: error: $*" >&2; exit 1; }

# file_env NAME [DEFAULT]: NAME from the environment, or from the file named by NAME_FILE.
file_env() {
    local var=$1 file="$1_FILE" default=${2:-}
    if [[ -n "${!var:-}" && -n "${!file:-}" ]]; then
        die "both $var and $file are set (they are exclusive)"
    fi
    if [[ -n "${!file:-}" ]]; then
        [[ -r "${!file}" ]] || die "$file: cannot read ${!file}"
        printf -v "$var" '%s' "$(<"${!file}")"
    elif [[ -z "${!var+set}" ]]; then
        printf -v "$var" '%s' "$default"
    fi
    unset "$file"
}

# A PHP single-quoted string literal.
php_string() { local v=${1//\\/\\\\}; printf "'%s'" "${v//\'/\\\'}"; }

salts=(AUTH_KEY SECURE_AUTH_KEY LOGGED_IN_KEY NONCE_KEY AUTH_SALT SECURE_AUTH_SALT
       LOGGED_IN_SALT NONCE_SALT)

write_config() {
    file_env WORDPRESS_DB_HOST mysql
    file_env WORDPRESS_DB_USER root
    file_env WORDPRESS_DB_NAME wordpress
    file_env WORDPRESS_TABLE_PREFIX wp_
    file_env WORDPRESS_DEBUG ''
    file_env WORDPRESS_CONFIG_EXTRA ''
    if [[ -z "${WORDPRESS_DB_PASSWORD+set}${WORDPRESS_DB_PASSWORD_FILE:-}" ]]; then
        die "WORDPRESS_DB_PASSWORD is not set (the password of WORDPRESS_DB_USER" \
            "\"$WORDPRESS_DB_USER\" on $WORDPRESS_DB_HOST; set it empty for no password)"
    fi
    file_env WORDPRESS_DB_PASSWORD ''
    [[ "$WORDPRESS_TABLE_PREFIX" =~ ^[A-Za-z0-9_]+$ ]] ||
        die "WORDPRESS_TABLE_PREFIX \"$WORDPRESS_TABLE_PREFIX\": only letters, digits and _"

    # Keys and salts: from the environment, else random once per container (a restart keeps
    # logins; a recreated container asks users to log in again).
    local keys=/etc/wordpress/keys.php name value
    if [[ ! -s "$keys" ]]; then
        {
            echo '<?php'
            for name in "${salts[@]}"; do
                value="$(head -c 48 /dev/urandom | base64 | tr -d '\n')"
                echo "if (!defined('$name')) define('$name', $(php_string "$value"));"
            done
        } > "$keys.tmp"
        chmod 0640 "$keys.tmp"
        chgrp www-data "$keys.tmp"
        mv "$keys.tmp" "$keys"
    fi

    local config=/etc/wordpress/config-default.php
    {
        echo '<?php'
        echo '// Written by docker-entrypoint.sh from WORDPRESS_* at each start: edits are lost.'
        echo "define('DB_NAME', $(php_string "$WORDPRESS_DB_NAME"));"
        echo "define('DB_USER', $(php_string "$WORDPRESS_DB_USER"));"
        echo "define('DB_PASSWORD', $(php_string "$WORDPRESS_DB_PASSWORD"));"
        echo "define('DB_HOST', $(php_string "$WORDPRESS_DB_HOST"));"
        echo "define('DB_CHARSET', 'utf8mb4');"
        echo "define('DB_COLLATE', '');"
        echo "\$table_prefix = $(php_string "$WORDPRESS_TABLE_PREFIX");"
        for name in "${salts[@]}"; do
            file_env "WORDPRESS_$name" ''
            value="WORDPRESS_$name"
            if [[ -n "${!value}" ]]; then
                echo "define('$name', $(php_string "${!value}"));"
            fi
        done
        echo "require '$keys';"
        if [[ -n "$WORDPRESS_DEBUG" && "$WORDPRESS_DEBUG" != 0 && "$WORDPRESS_DEBUG" != false ]]; then
            echo "define('WP_DEBUG', true);"
        fi
        # A container on a private network: no calls home to wordpress.org (updates, news).
        echo "if (!defined('WP_HTTP_BLOCK_EXTERNAL')) define('WP_HTTP_BLOCK_EXTERNAL', true);"
        echo "define('FS_METHOD', 'direct');"
        # Behind a TLS-terminating proxy, as in the official image.
        echo "if (isset(\$_SERVER['HTTP_X_FORWARDED_PROTO']) && strpos(\$_SERVER['HTTP_X_FORWARDED_PROTO'], 'https') !== false) { \$_SERVER['HTTPS'] = 'on'; }"
        if [[ -n "$WORDPRESS_CONFIG_EXTRA" ]]; then
            echo "// WORDPRESS_CONFIG_EXTRA"
            printf '%s\n' "$WORDPRESS_CONFIG_EXTRA"
        fi
    } > "$config.tmp"
    chmod 0640 "$config.tmp"
    chgrp www-data "$config.tmp"
    mv "$config.tmp" "$config"
}

if [[ "$1" == apache2* ]]; then
    write_config
    # A fresh or foreign volume: the web server writes uploads, themes and plugins here.
    content=/var/lib/wordpress/wp-content
    if [[ "$(stat -c %U "$content")" != www-data ]]; then
        chown -R www-data:www-data "$content"
    fi
    # Not for the web server's children: the config file has them.
    unset "${!WORDPRESS_@}"
fi
exec "$@"
