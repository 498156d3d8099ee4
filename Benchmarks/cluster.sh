#!/usr/bin/env bash
# Cluster benchmarks (SPEC §8): three release nodes on 127.0.0.2-4 over mutual TLS.
#   1. Replication: from the owner starting a refresh until both peers hold the new value, p50/p99 over many
#      refreshes (target p99 < 5 ms on loopback).
#   2. GET throughput of a cached cluster value on a non-owner node vs the owner (redis-benchmark -c 50).
# Usage: Benchmarks/cluster.sh [rounds]     (needs redis-tools and cc; builds in release)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-500}
. Benchmarks/common.sh
cp "$bin/libfile.so" "$work/plugins/"
head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/token"
"$bin/expirablectl" cert ca --dir "$work" >/dev/null
declare -A host=([a]=127.0.0.2 [b]=127.0.0.3 [c]=127.0.0.4) port=([a]=17501 [b]=17502 [c]=17503)
for n in a b c; do
    "$bin/expirablectl" cert node "node-$n" --dir "$work" >/dev/null
    peers=""
    for m in a b c; do [ "$m" = "$n" ] || peers="$peers node-$m = \"${host[$m]}:${port[$m]}\","; done
    cat > "$work/$n.toml" <<TOML
[server]
socket = "$work/$n.sock"
plugin_dir = "$work/plugins"
[cluster]
node = "node-$n"
listen = "${host[$n]}:${port[$n]}"
peers = { ${peers%,} }
ca = "$work/ca.pem"
cert = "$work/node-$n.pem"
key = "$work/node-$n.key"
[expirable.token]
plugin = "file"
[expirable.token.params]
path = "$work/token"
ttl = "1h"
TOML
    "$bin/expirabled" --config "$work/$n.toml" --log-level warning 2>"$work/$n.log" &
    pids+=("$!")
done
for _ in $(seq 100); do
    alive=$(redis-cli -s "$work/a.sock" CLUSTER 2>/dev/null | grep -c "state:alive" || true)
    [ "$alive" = "2" ] && break
    sleep 0.1
done
redis-cli -s "$work/a.sock" GET token >/dev/null
owner=$(redis-cli -s "$work/a.sock" INFO token | tr -d '\r' | awk -F: '/^owner:/ {print $2}')
o=${owner#node-}
others=(); for n in a b c; do [ "$n" = "$o" ] || others+=("$n"); done
echo "three nodes on 127.0.0.2-4 (mutual TLS, heartbeat 500 ms); token owned by $owner"
echo
echo "replication: owner refresh -> both peers hold the new value ($rounds refreshes)"
"$bin/ClientBenchmark" replication "$work/$o.sock" "$work/${others[0]}.sock" "$work/${others[1]}.sock" token "$rounds" | sed 's/^/  /'
echo "  (target: p99 < 5 ms)"
echo
echo "redis-benchmark -c 50 -n 200000 GET token (3 alternated rounds, median)"
bench() { redis-benchmark -s "$1" -c 50 -n 200000 --csv GET token 2>/dev/null | tail -1 | tr -d '"' | awk -F, '{print $2}'; }
: > "$work/owner.txt"; : > "$work/peer.txt"
for round in 1 2 3; do
    bench "$work/$o.sock" >> "$work/owner.txt"
    bench "$work/${others[0]}.sock" >> "$work/peer.txt"
done
own=$(median < "$work/owner.txt"); peer=$(median < "$work/peer.txt")
echo "  owner $owner: $own rps ($(tr '\n' ' ' < "$work/owner.txt")); non-owner node-${others[0]}: $peer rps ($(tr '\n' ' ' < "$work/peer.txt"))"
awk -v o="$own" -v p="$peer" 'BEGIN { printf "  non-owner / owner: %.2fx\n", p / o }'
