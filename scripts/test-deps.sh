#!/usr/bin/env bash
# Installs what the tests need that cargo does not bring: InfluxDB 1.x's `influxd` (Debian
# package `influxdb`). Idempotent. The tests start their own influxd on loopback, so the
# package's service must not be left running on 8086.
set -euo pipefail

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
else
    SUDO=(sudo)
fi

if command -v influxd >/dev/null 2>&1; then
    echo "influxd already installed: $(command -v influxd)"
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
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y --no-install-recommends influxdb

# Belt and braces: if a service manager started it anyway, stop it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet influxdb 2>/dev/null; then
    "${SUDO[@]}" systemctl stop influxdb || true
fi
if command -v service >/dev/null 2>&1; then
    "${SUDO[@]}" service influxdb stop >/dev/null 2>&1 || true
fi

command -v influxd >/dev/null 2>&1 || { echo "influxd still not on PATH after install" >&2; exit 1; }
echo "installed $(influxd version 2>/dev/null || command -v influxd)"
