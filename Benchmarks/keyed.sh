#!/usr/bin/env bash
# A keyed family holding 1,000,000 keys (SPEC §8): `GET NAME:KEY` throughput against `GET NAME` of a plain value,
# and the memory each key costs beyond its value.
# The family `k` (keyed, max_keys 1,000,000) and the plain expirable `plain_00000000` both serve a 64-byte token
# through the `file` plugin inline with a day's ttl. Every key k:000000000000 … k:000000999999 is filled first (one
# plugin call each, through one pipelined `redis-cli --pipe`), then redis-benchmark alternates, round by round,
# `GET k:__rand_int__` (-r 1000000: random keys over the filled range) and `GET plain_00000000`, whose requests have
# the same length (names of 14 bytes), without and with pipelining; medians and ratios. Memory per key: resident and
# private (Private_Clean + Private_Dirty, /proc/PID/smaps_rollup) after the fill minus before it, divided by the
# keys, minus the 64 value bytes.
# Usage: Benchmarks/keyed.sh [rounds] [keys]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
keys=${2:-1000000}
. Benchmarks/common.sh
cp "$bin/libfile.so" "$work/plugins/"
printf 'tok_%060d' 0 > "$work/token"
value_bytes=$(wc -c < "$work/token")
{
    server_table e
    printf '[expirable.k]\nplugin = "file"\nisolation = "inline"\nkeyed = true\nmax_keys = %d\n' "$keys"
    printf '[expirable.k.params]\npath = "%s"\nttl = "24h"\n' "$work/token"
    file_expirable plain_00000000 24h inline
} > "$work/e.toml"
"$bin/expirabled" --config "$work/e.toml" --log-level warning 2>"$work/e.log" & daemon=$!; pids+=("$daemon")
for _ in $(seq 100); do redis-cli -s "$work/e.sock" PING >/dev/null 2>&1 && break; sleep 0.1; done
cli() { redis-cli -s "$work/e.sock" "$@"; }
[ "$(cli GET plain_00000000)" = "$(cat "$work/token")" ] || { echo "plain_00000000 does not answer"; cat "$work/e.log"; exit 1; }
# The first key of the range, so the family never holds more than $keys keys (one beyond would evict).
[ "$(cli GET k:000000000000)" = "$(cat "$work/token")" ] || { echo "k:000000000000 does not answer"; cat "$work/e.log"; exit 1; }

kb() { awk -v f="$2" '$1 == f":" {print $2}' "/proc/$1/smaps_rollup"; }
private_kb() { echo $(( $(kb "$1" Private_Clean) + $(kb "$1" Private_Dirty) )); }
rss0=$(kb "$daemon" Rss); priv0=$(private_kb "$daemon")
awk -v n="$keys" 'BEGIN { for (i = 0; i < n; i++) { k = sprintf("k:%012d", i); printf "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", length(k), k } }' > "$work/fill.resp"
start=$(date +%s.%N)
# redis-cli --pipe ends with an empty line before its closing ECHO, which expirabled answers with an error (Redis
# ignores empty lines): one error is expected, and the family's key count is checked below.
cli --pipe < "$work/fill.resp" > "$work/fill.txt" 2>&1 || true
end=$(date +%s.%N)
rm -f "$work/fill.resp"
held=$(cli INFO k | tr -d '\r' | awk -F: '$1 == "keys" {print $2}')
[ "$held" = "$keys" ] || { echo "the family holds $held keys, not $keys"; cli INFO k; tail "$work/fill.txt"; exit 1; }
rss1=$(kb "$daemon" Rss); priv1=$(private_kb "$daemon")
echo "filled $keys keys in $(awk -v s="$start" -v e="$end" 'BEGIN {printf "%.1f", e - s}') s ($(grep -o 'errors: [0-9]*, replies: [0-9]*' "$work/fill.txt"))"
echo "memory before / after the fill: resident $rss0 / $rss1 kB, private $priv0 / $priv1 kB"
awk -v r0="$rss0" -v r1="$rss1" -v p0="$priv0" -v p1="$priv1" -v n="$keys" -v v="$value_bytes" 'BEGIN {
    printf "  per key: resident %.0f B, private %.0f B; beyond the %d-byte value: resident %.0f B, private %.0f B (target <= 200 B)\n",
        (r1 - r0) * 1024 / n, (p1 - p0) * 1024 / n, v, (r1 - r0) * 1024 / n - v, (p1 - p0) * 1024 / n - v }'

bench() { # name, extra args...; prints rps
    local name=$1; shift
    redis-benchmark -s "$work/e.sock" -r "$keys" "$@" --csv GET "$name" 2>/dev/null | tail -1 | tr -d '"' | awk -F, '{print $2}'
}
for mode in "-c 50 -n 200000" "-c 50 -n 2000000 -P 16"; do
    : > "$work/keyed.txt"; : > "$work/plain.txt"
    for round in $(seq "$rounds"); do
        if [ $((round % 2)) -eq 1 ]; then order="keyed plain"; else order="plain keyed"; fi
        for which in $order; do
            # shellcheck disable=SC2086
            if [ "$which" = keyed ]; then bench 'k:__rand_int__' $mode >> "$work/keyed.txt"; else bench plain_00000000 $mode >> "$work/plain.txt"; fi
        done
    done
    k=$(median < "$work/keyed.txt"); p=$(median < "$work/plain.txt")
    echo "redis-benchmark $mode, $rounds alternated rounds (rps)"
    echo "  GET k:__rand_int__ over $keys keys: $(tr '\n' ' ' < "$work/keyed.txt")median $k"
    echo "  GET plain_00000000:                 $(tr '\n' ' ' < "$work/plain.txt")median $p"
    awk -v k="$k" -v p="$p" 'BEGIN { printf "  keyed / plain: %.3fx (target >= 0.95x)\n", k / p }'
done
field() { cli INFO "$1" | tr -d '\r' | awk -F: -v f="$2" '$1 == f {print $2}'; }
echo "after the loads: the family holds $(field k keys) keys, $(field k evictions) evictions; k:000000000007 made $(field k:000000000007 plugin_calls) plugin call(s) and answered $(field k:000000000007 hits) hits"
