#!/usr/bin/env bash
# Serving benchmarks (SPEC §8), printed as figures and ratios against named peers:
#   1. redis-benchmark GET against expirabled and against redis-server holding the same value, alternated,
#      -c 50 -n 200000, then -P 16 -n 2000000: throughput and p99 ratios (target: >= 1.0x, p99 <= redis').
#   2. ExpirableClient sequential fetch round trip vs a bare C Unix-socket ping-pong (target: <= 1.5x).
#   3. 1,000 callers GET a cleared value at once: plugin calls (target: 1) and time to answer all
#      (target: the plugin's own 100 ms + 5 ms), from a C client (the daemon's figure) and from ExpirableClient.
#   4. Resident memory of the idle daemon (target < 20 MB) and with 1,000 open connections.
# Usage: Benchmarks/run.sh [rounds]     (needs redis-server, redis-tools and cc; builds in release)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
. Benchmarks/common.sh
cp "$bin/libfile.so" "$work/plugins/"
cc -shared -fPIC -O2 -I Sources/ExpirableABI/include Tests/Fixtures/sleeper.c -o "$work/plugins/libsleeper.so"
cc -O2 Benchmarks/pingpong/pingpong.c -o "$work/pingpong"
cc -O2 Benchmarks/burst/burst.c -o "$work/burst"
cc -O2 Benchmarks/burst/floor.c -o "$work/floor"
value="tok_$(head -c 30 /dev/urandom | od -An -tx1 | tr -d ' \n')"   # a 64-byte token
printf '%s' "$value" > "$work/token"
{ server_table e; file_expirable token infinity; printf '[expirable.slow]\nplugin = "sleeper"\n[expirable.slow.params]\nsleep_ms = 100\n'; } > "$work/expirable.toml"

"$bin/expirabled" --config "$work/expirable.toml" --log-level warning 2>"$work/daemon.log" &
daemon=$!; pids+=("$daemon")
redis-server --port 0 --unixsocket "$work/r.sock" --save "" --appendonly no --logfile "$work/redis.log" &
pids+=("$!")
for _ in $(seq 100); do
    redis-cli -s "$work/e.sock" PING >/dev/null 2>&1 && redis-cli -s "$work/r.sock" PING >/dev/null 2>&1 && break
    sleep 0.1
done
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
idle_rss=$(rss "$daemon")
redis-cli -s "$work/r.sock" SET token "$value" >/dev/null
[ "$(redis-cli -s "$work/e.sock" GET token)" = "$value" ] || { echo "expirabled does not serve the token"; exit 1; }
[ "$(redis-cli -s "$work/r.sock" GET token)" = "$value" ] || { echo "redis-server does not serve the token"; exit 1; }

echo "machine: $(nproc) cores, $(uname -sr), $(redis-server --version | cut -d' ' -f3), $(swift --version 2>&1 | head -1)"
echo "value: 64 bytes; expirabled (release) vs redis-server, Unix sockets, $rounds alternated rounds"
echo

bench() { # socket, extra args...; prints "rps p99"
    local sock=$1; shift
    redis-benchmark -s "$sock" "$@" --csv GET token 2>/dev/null | tail -1 | tr -d '"' | awk -F, '{print $2, $7}'
}

for mode in "-c 50 -n 200000" "-c 50 -n 2000000 -P 16"; do
    : > "$work/e.txt"; : > "$work/r.txt"
    for round in $(seq "$rounds"); do
        # Alternate which server goes first in each round.
        if [ $((round % 2)) -eq 1 ]; then order="e r"; else order="r e"; fi
        for who in $order; do
            # shellcheck disable=SC2086
            bench "$work/$who.sock" $mode >> "$work/$who.txt"
        done
    done
    e_rps=$(cut -d' ' -f1 "$work/e.txt" | median); r_rps=$(cut -d' ' -f1 "$work/r.txt" | median)
    e_p99=$(cut -d' ' -f2 "$work/e.txt" | median); r_p99=$(cut -d' ' -f2 "$work/r.txt" | median)
    echo "redis-benchmark $mode GET token"
    echo "  runs (rps p99_ms): expirabled: $(tr '\n' ';' < "$work/e.txt")  redis-server: $(tr '\n' ';' < "$work/r.txt")"
    awk -v er="$e_rps" -v rr="$r_rps" -v ep="$e_p99" -v rp="$r_p99" 'BEGIN {
        printf "  median throughput: expirabled %.0f rps, redis-server %.0f rps, ratio %.2fx (target >= 1.00x)\n", er, rr, er / rr
        printf "  median p99: expirabled %.3f ms, redis-server %.3f ms, ratio %.2fx (target <= 1.00x)\n", ep, rp, ep / rp }'
done
echo

request='*2\r\n$5\r\nFETCH\r\n$5\r\ntoken\r\n'
request_bytes=$(printf "$request" | wc -c)
reply_bytes=$(printf '*2\r\n$64\r\n%s\r\n:-1\r\n' "$value" | wc -c)
c_us=$("$work/pingpong" "$work/pp.sock" 200000 "$request_bytes" "$reply_bytes")
client=$("$bin/ClientBenchmark" rtt "$work/e.sock" token 100000)
client_us=$(echo "$client" | sed 's/.*mean_us=\([0-9.]*\).*/\1/')
echo "sequential round trip, FETCH token ($request_bytes bytes out, $reply_bytes back)"
echo "  C Unix-socket ping-pong: ${c_us} us; ExpirableClient.fetch: $client"
awk -v c="$c_us" -v s="$client_us" 'BEGIN { printf "  ratio %.2fx (target <= 1.50x)\n", s / c }'
echo

echo "1,000 callers, one connection each, GET a cleared value whose plugin takes 100 ms (target: all answered <= 105 ms, 1 plugin call)"
calls_before=$(redis-cli -s "$work/e.sock" INFO slow | tr -d '\r' | awk -F: '/^plugin_calls:/ {print $2}')
"$work/burst" "$work/e.sock" slow 1000 "$((rounds * 3))" > "$work/burst.txt"
calls=$(( $(redis-cli -s "$work/e.sock" INFO slow | tr -d '\r' | awk -F: '/^plugin_calls:/ {print $2}') - calls_before ))
"$work/floor" "$work/floor.sock" & pids+=("$!")
for _ in $(seq 50); do [ -S "$work/floor.sock" ] && break; sleep 0.1; done
"$work/burst" "$work/floor.sock" slow 1000 "$((rounds * 3))" > "$work/floor.txt"
answered() { sed 's/.*all_answered_ms=\([0-9.]*\).*/\1/' "$1"; }
echo "  C client (Benchmarks/burst/burst.c), $((rounds * 3)) rounds: plugin calls $calls (one per round expected)"
echo "    expirabled, all answered (ms): $(answered "$work/burst.txt" | tr '\n' ' ')median $(answered "$work/burst.txt" | median)"
echo "    floor (Benchmarks/burst/floor.c, a bare C epoll server holding the GETs 100 ms): $(answered "$work/floor.txt" | tr '\n' ' ')median $(answered "$work/floor.txt" | median)"
for _ in $(seq "$rounds"); do
    "$bin/ClientBenchmark" burst "$work/e.sock" slow 1000 | sed 's/^/  ExpirableClient: /'
done
echo

exec 3> >("$bin/ClientBenchmark" hold "$work/e.sock" 1000 > "$work/hold.out")
for _ in $(seq 300); do grep -q ready "$work/hold.out" 2>/dev/null && break; sleep 0.1; done
held=$(redis-cli -s "$work/e.sock" INFO | tr -d '\r' | awk -F: '/^connections:/ {print $2}')
busy_rss=$(rss "$daemon")
exec 3>&-
echo "resident memory of expirabled: idle ${idle_rss} MB (target < 20 MB); with ${held} open connections ${busy_rss} MB"
echo "  redis-server for comparison: $(rss "${pids[1]}") MB"
