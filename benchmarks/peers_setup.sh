#!/bin/bash
# Installs the peers that benchmarks/peers.py compares Shipyard against, when they are missing:
#   Debian's podman 4.3 (rootful, with runc), docker.io 20.10 and docker-compose 1.29.2,
#   and podman-compose 1.6.0 from PyPI in its own venv (Debian ships only 1.0.3).
# Writes a private containers.conf / storage.conf for the benchmark (used through
# CONTAINERS_CONF and CONTAINERS_STORAGE_CONF); the machine's global config is not touched.
# Idempotent; run as root:  bash benchmarks/peers_setup.sh
set -euo pipefail

PEERS=${SHIPYARD_PEERS_DIR:-/var/tmp/shipyard-peers}
VENV="$PEERS/venv"
PODMAN_COMPOSE_VERSION=1.6.0

need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v conmon >/dev/null || need+=(conmon)
[ -x /usr/bin/docker ] && command -v dockerd >/dev/null || need+=(docker.io)
[ -x /usr/bin/docker-compose ] || need+=(docker-compose)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    # No recommends: rootless helpers (uidmap, slirp4netns, fuse-overlayfs) and buildah are not
    # needed for rootful podman, and the benchmark starts dockerd itself.
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$PEERS"
if ! "$VENV/bin/podman-compose" version 2>/dev/null | grep -q "$PODMAN_COMPOSE_VERSION"; then
    echo "installing podman-compose $PODMAN_COMPOSE_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "podman-compose==$PODMAN_COMPOSE_VERSION"
fi

# podman: rlimits within this machine's hard limits (podman asks for nofile=1048576 by default,
# which fails with EPERM without CAP_SYS_RESOURCE), runc (crun refuses hybrid cgroups), no
# systemd, never a pull (there is no registry to reach), and its own storage and network
# definitions, so the machine's podman store and /etc/containers stay as they were.
cat >"$PEERS/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$PEERS/podman-events.log"
pull_policy = "never"

[network]
network_config_dir = "$PEERS/podman-networks"
EOF
cat >"$PEERS/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$PEERS/podman-storage"
runroot = "/run/shipyard-peers-podman"
EOF

echo "peers ready:"
echo "  $(podman --version)"
echo "  podman-compose $("$VENV/bin/podman-compose" version 2>/dev/null | grep -o 'podman-compose version [0-9.]*' | head -1 | awk '{print $3}')"
echo "  $(/usr/bin/docker --version)"
echo "  $(/usr/bin/docker-compose version --short 2>/dev/null || true) (docker-compose)"
echo "  $(runc --version | head -1)"
