#!/bin/sh
# nginx resolves names in its config through its own resolver, not the C library: point it
# at the container's nameserver (the engine's DNS on the network's gateway).
set -e
nameserver="$(awk '$1 == "nameserver" { print $2; exit }' /etc/resolv.conf)"
if [ -n "$nameserver" ]; then
    echo "resolver $nameserver valid=5s ipv6=off;" > /etc/nginx/conf.d/00-resolver.conf
fi
exec "$@"
