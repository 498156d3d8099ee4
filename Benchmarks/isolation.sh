#!/usr/bin/env bash
# A plugin call through a helper process against the same call inline (SPEC §8: the difference <= 100 us).
# Two expirables serve the same 64-byte file with ttl "0ms", so every GET is a plugin call (a value already
# expired is answered, never kept); one runs inline, one in a helper. redis-benchmark -c 1 makes the calls one at
# a time, alternated between the two, several rounds; prints the mean round trip of each and the difference.
# Usage: Benchmarks/isolation.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
. Benchmarks/common.sh
cp "$bin/libfile.so" "$work/plugins/"
printf 'tok_%060d' 0 > "$work/token"
{ server_table e; file_expirable inline 0ms inline; file_expirable process 0ms process; } > "$work/e.toml"
"$bin/expirabled" --config "$work/e.toml" --log-level warning 2>"$work/e.log" & daemon=$!; pids+=("$daemon")
for _ in $(seq 100); do redis-cli -s "$work/e.sock" PING >/dev/null 2>&1 && break; sleep 0.1; done
for name in inline process; do
    [ "$(redis-cli -s "$work/e.sock" GET $name)" = "$(cat "$work/token")" ] || { echo "$name does not answer"; cat "$work/e.log"; exit 1; }
done
mean_us() { redis-benchmark -s "$work/e.sock" -c 1 -n 20000 --csv GET "$1" 2>/dev/null | tail -1 | tr -d '"' | awk -F, '{printf "%.1f", $3 * 1000}'; }
: > "$work/inline.txt"; : > "$work/process.txt"
for round in $(seq "$rounds"); do
    if [ $((round % 2)) -eq 1 ]; then order="inline process"; else order="process inline"; fi
    for name in $order; do mean_us "$name" >> "$work/$name.txt"; echo >> "$work/$name.txt"; done
done
i=$(grep . "$work/inline.txt" | median); p=$(grep . "$work/process.txt" | median)
echo "GET of a value whose every read is a plugin call (file plugin, ttl 0), redis-benchmark -c 1 -n 20000, $rounds rounds"
echo "  inline mean round trip (us):  $(grep . "$work/inline.txt" | tr '\n' ' ')median $i"
echo "  process mean round trip (us): $(grep . "$work/process.txt" | tr '\n' ' ')median $p"
awk -v i="$i" -v p="$p" 'BEGIN { printf "  helper minus inline: %.1f us (target <= 100 us)\n", p - i }'
helper=$(pgrep -f -- "--plugin-helper $daemon process" | head -1)
awk '/VmRSS/ {printf "  resident: daemon %.1f MB", $2/1024}' "/proc/$daemon/status"
[ -n "$helper" ] && awk '/VmRSS/ {printf ", one helper %.1f MB", $2/1024}' "/proc/$helper/status"
echo
