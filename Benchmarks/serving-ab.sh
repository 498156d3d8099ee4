#!/usr/bin/env bash
# GET serving, this tree's expirabled (release) against another expirabled binary and against redis-server, in
# one run: for comparing a change with the build before it ("before and after, same run").
#   redis-benchmark -c 50 -n 200000 GET token, then -c 50 -n 2000000 -P 16, the three servers alternated in a
#   rotating order each round; medians of throughput and p99, and the ratios to redis-server and to the baseline.
# Usage: Benchmarks/serving-ab.sh BASELINE_EXPIRABLED [rounds]
#   e.g. git worktree add /tmp/before <commit> && (cd /tmp/before && swift build -c release --product expirabled)
#        Benchmarks/serving-ab.sh /tmp/before/.build/release/expirabled 5
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=$(realpath "${1:?usage: Benchmarks/serving-ab.sh BASELINE_EXPIRABLED [rounds]}")
rounds=${2:-5}
. Benchmarks/common.sh
cp "$bin/libfile.so" "$work/plugins/"
value="tok_$(head -c 30 /dev/urandom | od -An -tx1 | tr -d ' \n')"   # a 64-byte token
printf '%s' "$value" > "$work/token"
for who in a b; do { server_table "$who"; file_expirable token infinity; } > "$work/$who.toml"; done
"$bin/expirabled" --config "$work/a.toml" --log-level warning 2>"$work/a.log" & pids+=("$!")
"$baseline" --config "$work/b.toml" --log-level warning 2>"$work/b.log" & pids+=("$!")
redis-server --port 0 --unixsocket "$work/r.sock" --save "" --appendonly no --logfile "$work/redis.log" & pids+=("$!")
for _ in $(seq 100); do
    redis-cli -s "$work/a.sock" PING >/dev/null 2>&1 && redis-cli -s "$work/b.sock" PING >/dev/null 2>&1 \
        && redis-cli -s "$work/r.sock" PING >/dev/null 2>&1 && break
    sleep 0.1
done
redis-cli -s "$work/r.sock" SET token "$value" >/dev/null
for who in a b r; do
    [ "$(redis-cli -s "$work/$who.sock" GET token)" = "$value" ] || { echo "$who.sock does not serve the token"; exit 1; }
done

echo "machine: $(nproc) cores, $(uname -sr), $(redis-server --version | cut -d' ' -f3)"
echo "a = this tree ($(git rev-parse --short HEAD)), b = $baseline, r = redis-server; $rounds rounds, order rotated"
bench() { redis-benchmark -s "$1" "${@:2}" --csv GET token 2>/dev/null | tail -1 | tr -d '"' | awk -F, '{print $2, $7}'; }
for mode in "-c 50 -n 200000" "-c 50 -n 2000000 -P 16"; do
    : > "$work/a.txt"; : > "$work/b.txt"; : > "$work/r.txt"
    for round in $(seq "$rounds"); do
        case $((round % 3)) in 1) order="a b r";; 2) order="b r a";; 0) order="r a b";; esac
        # shellcheck disable=SC2086
        for who in $order; do bench "$work/$who.sock" $mode >> "$work/$who.txt"; done
    done
    echo "redis-benchmark $mode GET token"
    for who in a b r; do echo "  $who runs (rps p99_ms): $(tr '\n' ';' < "$work/$who.txt")"; done
    rps() { cut -d' ' -f1 "$work/$1.txt" | median; }
    p99() { cut -d' ' -f2 "$work/$1.txt" | median; }
    awk -v a="$(rps a)" -v b="$(rps b)" -v r="$(rps r)" -v ap="$(p99 a)" -v bp="$(p99 b)" -v rp="$(p99 r)" 'BEGIN {
        printf "  median rps: a %.0f, b %.0f, redis %.0f; a/redis %.2fx, b/redis %.2fx, a/b %.2fx\n", a, b, r, a / r, b / r, a / b
        printf "  median p99 ms: a %.3f, b %.3f, redis %.3f; a/redis %.2fx, b/redis %.2fx, a/b %.2fx\n", ap, bp, rp, ap / rp, bp / rp, ap / bp }'
done
