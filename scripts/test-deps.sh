#!/usr/bin/env bash
# Installs what the tests need that cargo does not bring: InfluxDB 1.x's `influxd` (Debian
# package `influxdb`), etcd 3.4 (`etcd-server`, for fleet's registry), Prometheus (`prometheus`)
# and `kubectl` (`kubernetes-client`, unless a kubectl is already on PATH). Idempotent. The tests
# start their own servers on loopback, so the packages' services must not be left running.
set -euo pipefail

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
else
    SUDO=(sudo)
fi

# command -> Debian package, for each command still missing.
packages=()
command -v influxd >/dev/null 2>&1 || packages+=(influxdb)
command -v etcd >/dev/null 2>&1 || packages+=(etcd-server)
command -v prometheus >/dev/null 2>&1 || packages+=(prometheus)
command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client)
if [ "${#packages[@]}" -eq 0 ]; then
    echo "influxd, etcd, prometheus and kubectl already installed"
    exit 0
fi

# policy-rc.d exit 101 tells invoke-rc.d not to start services from maintainer scripts.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    added_policy=1
fi
cleanup() {
    if [ "$added_policy" -eq 1 ]; then
        "${SUDO[@]}" rm -f "$policy"
    fi
}
trap cleanup EXIT

"${SUDO[@]}" apt-get update
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y --no-install-recommends "${packages[@]}"

# Belt and braces: if a service manager started one anyway, stop it.
for service in influxdb etcd prometheus; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
        "${SUDO[@]}" systemctl stop "$service" || true
    fi
    if command -v service >/dev/null 2>&1; then
        "${SUDO[@]}" service "$service" stop >/dev/null 2>&1 || true
    fi
done

for cmd in influxd etcd prometheus kubectl; do
    command -v "$cmd" >/dev/null 2>&1 || { echo "$cmd still not on PATH after install" >&2; exit 1; }
done
echo "installed ${packages[*]}"
