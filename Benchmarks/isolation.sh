#!/usr/bin/env bash
# A plugin call through a helper process against the same call inline (SPEC §8: the difference <= 100 us).
# Two expirables serve the same 64-byte file with ttl "0ms", so every GET is a plugin call (a value already
# expired is answered, never kept); one runs inline, one in a helper. redis-benchmark -c 1 makes the calls one at
# a time, alternated between the two, several rounds; prints the mean round trip of each and the difference.
# Then the 1,000-caller burst (Benchmarks/burst/burst.c: 1,000 connections GET a cleared value whose plugin takes
# 100 ms) against the same sleeper plugin inline and in a helper, alternated; and the daemon's and the helper's
# memory after 100,000 plugin calls (each with its 30 s timeout timer, cancelled when the call returns).
# Usage: Benchmarks/isolation.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
. Benchmarks/common.sh
cp "$bin/libfile.so" "$work/plugins/"
cc -shared -fPIC -O2 -I Sources/ExpirableABI/include Tests/Fixtures/sleeper.c -o "$work/plugins/libsleeper.so"
cc -O2 Benchmarks/burst/burst.c -o "$work/burst"
printf 'tok_%060d' 0 > "$work/token"
{
    server_table e; file_expirable inline 0ms inline; file_expirable process 0ms process
    for mode in inline process; do
        printf '[expirable.slow_%s]\nplugin = "sleeper"\nisolation = "%s"\n[expirable.slow_%s.params]\nsleep_ms = 100\n' $mode $mode $mode
    done
} > "$work/e.toml"
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

echo "1,000 callers, one connection each, GET a cleared value whose plugin takes 100 ms; all answered (ms), $((rounds * 2)) rounds each"
answered() { sed 's/.*all_answered_ms=\([0-9.]*\).*/\1/' "$1"; }
: > "$work/burst_inline.txt"; : > "$work/burst_process.txt"
for round in $(seq "$rounds"); do
    if [ $((round % 2)) -eq 1 ]; then order="inline process"; else order="process inline"; fi
    for mode in $order; do "$work/burst" "$work/e.sock" "slow_$mode" 1000 2 >> "$work/burst_$mode.txt"; done
done
for mode in inline process; do
    echo "  $mode: $(answered "$work/burst_$mode.txt" | tr '\n' ' ')median $(answered "$work/burst_$mode.txt" | median)"
done

private_mb() { awk '/^Private_/ {s += $2} END {printf "%.1f", s/1024}' "/proc/$1/smaps_rollup"; }
resident_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
helper=$(pgrep -f -- "--plugin-helper $daemon process" | head -1)
echo "memory before and after 100,000 more plugin calls (GET process, redis-benchmark -c 4), resident / private MB"
before="daemon $(resident_mb "$daemon") / $(private_mb "$daemon"), helper $(resident_mb "$helper") / $(private_mb "$helper")"
redis-benchmark -s "$work/e.sock" -c 4 -n 100000 -q GET process >/dev/null 2>&1
echo "  before: $before"
echo "  after:  daemon $(resident_mb "$daemon") / $(private_mb "$daemon"), helper $(resident_mb "$helper") / $(private_mb "$helper")"
