#!/usr/bin/env bash
# Clients that misbehave, measured (issue 8's figures): the daemon's memory while one client pipelines 100,000
# GETs of a 64 KiB value without reading (then reads them all), and its CPU while out of file descriptors.
# Usage: Benchmarks/misbehaving.sh [BASELINE_EXPIRABLED]   (a baseline binary is measured the same way after)
set -euo pipefail
cd "$(dirname "$0")/.."
. Benchmarks/common.sh
cp "$bin/libfile.so" "$work/plugins/"
head -c 65536 /dev/zero | tr '\0' v > "$work/big.txt"
cat > "$work/e.toml" <<TOML
[server]
socket = "$work/e.sock"
plugin_dir = "$work/plugins"
max_connections = 1000
[expirable.big]
plugin = "file"
[expirable.big.params]
path = "$work/big.txt"
ttl = "10m"
TOML
measure() { # expirabled binary
    local daemon
    echo "== $1"
    "$1" --config "$work/e.toml" --log-level warning 2>"$work/e.log" & daemon=$!; pids+=("$daemon")
    for _ in $(seq 50); do redis-cli -s "$work/e.sock" GET big >/dev/null 2>&1 && break; sleep 0.1; done
    timeout 150 python3 Benchmarks/misbehaving/unread.py "$work/e.sock" "$daemon" || echo "  (did not finish)"
    kill "$daemon"; wait "$daemon" 2>/dev/null || true
    prlimit --nofile=64:64 "$1" --config "$work/e.toml" --log-level warning 2>"$work/e.log" & daemon=$!; pids+=("$daemon")
    for _ in $(seq 50); do redis-cli -s "$work/e.sock" PING >/dev/null 2>&1 && break; sleep 0.1; done
    timeout 60 python3 Benchmarks/misbehaving/emfile.py "$work/e.sock" "$daemon" 100 2 || echo "  (did not finish)"
    kill "$daemon"; wait "$daemon" 2>/dev/null || true
}
measure "$bin/expirabled"
[ $# -gt 0 ] && measure "$(realpath "$1")"
true
