#!/usr/bin/env bash
# GET serving with access rules (SPEC §9) against the same daemon without them: the cost of the per-connection
# read mask on the hot path for a caller the rules allow (issue 14: at least 0.98x of without rules).
#   a = no allow lists; b = the same expirable with allow = ["uid:4242", "exe:<redis-benchmark> sha256:<its hash>"]
#   (redis-benchmark is let in by its executable and hash, so the connection's rules are worked out in full) and
#   a second expirable it may not read (so its mask is not "everything": each GET tests its bit).
#   redis-benchmark -c 50 -n 200000 GET token, then -c 50 -n 2000000 -P 16; a and b alternated, the order
#   swapped each round; medians, min-max spread, and b/a. Besides throughput, the daemon's own CPU time per request
#   (summed over its threads from /proc/PID/task/*/schedstat): on a machine shared with other work, throughput
#   swings with the load while CPU per request barely does, so a/b of it is the figure to read there.
# Usage: Benchmarks/access.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-7}
. Benchmarks/common.sh
cp "$bin/libfile.so" "$work/plugins/"
value="tok_$(head -c 30 /dev/urandom | od -An -tx1 | tr -d ' \n')"   # a 64-byte token
printf '%s' "$value" > "$work/token"
benchmark=$(realpath "$(command -v redis-benchmark)")
digest=$(sha256sum "$benchmark" | cut -c1-64)
{ server_table a; file_expirable token infinity; file_expirable other infinity; } > "$work/a.toml"
{
    server_table b
    file_expirable token infinity | sed "2a allow = [\"uid:4242\", \"exe:$benchmark sha256:$digest\"]"
    file_expirable other infinity | sed '2a allow = ["uid:4242"]'
} > "$work/b.toml"
declare -A daemon
for who in a b; do "$bin/expirabled" --config "$work/$who.toml" --log-level warning 2>"$work/$who.log" & pids+=("$!"); daemon[$who]=$!; done
cpu_ns() { cat /proc/"${daemon[$1]}"/task/*/schedstat | awk '{s += $1} END {printf "%.0f", s}'; }
for _ in $(seq 100); do
    redis-cli -s "$work/a.sock" PING >/dev/null 2>&1 && redis-cli -s "$work/b.sock" PING >/dev/null 2>&1 && break
    sleep 0.1
done
[ "$(redis-cli -s "$work/a.sock" GET token)" = "$value" ] || { echo "a.sock does not serve the token"; exit 1; }
# redis-cli is not on b's list: refused; redis-benchmark is (checked by its first request below).
redis-cli -s "$work/b.sock" GET token | grep -q '^NOPERM' || { echo "b.sock serves the token to redis-cli: rules not applied"; exit 1; }
redis-benchmark -s "$work/b.sock" -n 10 -c 1 GET token >/dev/null 2>&1
refused() { grep 'refused read' "$work/b.log" | grep -c "exe=$benchmark" || true; }
[ "$(refused)" = 0 ] || { echo "b.sock refused redis-benchmark"; cat "$work/b.log"; exit 1; }

echo "machine: $(nproc) cores, $(uname -sr), $(redis-server --version 2>/dev/null | cut -d' ' -f3 || true)"
echo "a = no rules, b = allow rules (exe + sha256), this tree ($(git rev-parse --short HEAD)); $rounds rounds, order swapped each round"
# One run against daemon $1: rps, p99 ms, daemon CPU ns per request.
bench() {
    local before after requests
    before=$(cpu_ns "$1")
    line=$(redis-benchmark -s "$work/$1.sock" "${@:2}" --csv GET token 2>/dev/null | tail -1 | tr -d '"' | awk -F, '{print $2, $7}')
    after=$(cpu_ns "$1")
    requests=$(echo "$*" | sed -E 's/.*-n ([0-9]+).*/\1/')
    echo "$line $(( (after - before) / requests ))"
}
for mode in "-c 50 -n 200000" "-c 50 -n 2000000 -P 16"; do
    : > "$work/a.txt"; : > "$work/b.txt"
    for round in $(seq "$rounds"); do
        if [ $((round % 2)) = 1 ]; then order="a b"; else order="b a"; fi
        # shellcheck disable=SC2086
        for who in $order; do bench "$who" $mode >> "$work/$who.txt"; done
    done
    # b was answered, not refused: a refusal is an error reply, which redis-benchmark counts as a request too.
    [ "$(refused)" = 0 ] || { echo "b refused a request"; exit 1; }
    echo "redis-benchmark $mode GET token"
    for who in a b; do echo "  $who runs (rps p99_ms cpu_ns/request): $(tr '\n' ';' < "$work/$who.txt")"; done
    med() { cut -d' ' -f"$2" "$work/$1.txt" | median; }
    spread() { cut -d' ' -f"$2" "$work/$1.txt" | sort -g | awk 'NR==1{lo=$1} {hi=$1} END {printf "%.0f-%.0f", lo, hi}'; }
    awk -v a="$(med a 1)" -v b="$(med b 1)" -v ap="$(med a 2)" -v bp="$(med b 2)" -v as="$(spread a 1)" -v bs="$(spread b 1)" \
        -v ac="$(med a 3)" -v bc="$(med b 3)" -v acs="$(spread a 3)" -v bcs="$(spread b 3)" 'BEGIN {
        printf "  median rps: a %.0f (%s), b %.0f (%s); b/a %.3fx\n", a, as, b, bs, b / a
        printf "  median p99 ms: a %.3f, b %.3f; b/a %.2fx\n", ap, bp, bp / ap
        printf "  median daemon CPU ns/request: a %.0f (%s), b %.0f (%s); a/b %.3fx (the throughput ratio it implies)\n", ac, acs, bc, bcs, ac / bc }'
done
