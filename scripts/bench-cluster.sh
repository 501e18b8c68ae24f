#!/usr/bin/env bash
# Cluster mode's cost per process, in replay: one process of one worker, then PROCESSES
# processes of one worker each, over the same synthetic cluster. Reports wall time, CPU seconds
# (per window too), peak RSS and bytes exchanged with the peers, per process.
#
#   scripts/bench-cluster.sh [NODES] [PODS_PER_NODE] [WINDOWS] [PROCESSES]
#
# Defaults: 20000 nodes x 30 pods, 3 windows, 4 processes (the size; needs a release
# build: `cargo build --release -p heapster -p heapster-testbed`). HEAPSTER=path picks another
# collector binary, TESTBED=path another test-bed binary (it writes the scenario).
set -euo pipefail
NODES=${1:-20000}
PODS=${2:-30}
WINDOWS=${3:-3}
PROCESSES=${4:-4}
BIN=${HEAPSTER:-target/release/heapster}
TESTBED=${TESTBED:-target/release/heapster-testbed}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT

"$TESTBED" synth --nodes "$NODES" --pods-per-node "$PODS" --windows "$WINDOWS" --out "$DIR/scenario" 2>/dev/null
SOURCE="--source=replay:$DIR/scenario"

# label, then the command; /usr/bin/time writes "wall user sys maxrss_kb".
measure() {
    local label=$1
    shift
    /usr/bin/time -f "%e %U %S %M" -o "$DIR/$label.time" "$@" 2>"$DIR/$label.log"
}

report() {
    local label=$1
    read -r wall user sys rss <"$DIR/$label.time"
    local sent
    sent=$(sed 's/\x1b\[[0-9;]*m//g' "$DIR/$label.log" | grep -o 'bytes_sent=[0-9]*' | cut -d= -f2 || true)
    awk -v l="$label" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v n="$WINDOWS" -v b="${sent:-0}" \
        'BEGIN { printf "%-10s %8.2f %8.2f %10.2f %10.0f %14.0f\n", l, w, u + s, (u + s) / n, r / 1024, b / n }'
}

measure single "$BIN" "$SOURCE" --sink=file:/dev/null

ports=$(python3 -c "
import socket
socks = [socket.socket() for _ in range($PROCESSES)]
for s in socks: s.bind(('127.0.0.1', 0))
print(' '.join(str(s.getsockname()[1]) for s in socks))")
for port in $ports; do echo "127.0.0.1:$port"; done >"$DIR/hosts"

pids=()
for ((i = 0; i < PROCESSES; i++)); do
    measure "p$i" "$BIN" "$SOURCE" --sink=file:/dev/null \
        --processes "$PROCESSES" --process "$i" --hostfile "$DIR/hosts" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done

echo "$NODES nodes x $PODS pods, $WINDOWS windows; $PROCESSES processes x 1 worker against 1 x 1"
printf "%-10s %8s %8s %10s %10s %14s\n" run wall_s cpu_s cpu_s/win rss_MiB sent_B/win
report single
for ((i = 0; i < PROCESSES; i++)); do report "p$i"; done
