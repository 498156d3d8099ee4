#!/usr/bin/env bash
# What scraping the metrics costs serving (SPEC §8: GET throughput while scraped once a second >= 0.98x of without).
# One release expirabled with [metrics] on loopback and 20 expirables, and one without [metrics]:
#   m  = with [metrics], not scraped;  s = the same daemon while curl scrapes GET /metrics once a second;
#   n  = the daemon without [metrics] (the request counters run in every daemon; this shows the endpoint's own cost).
# redis-benchmark -c 50 -n 600000 GET token, then -c 50 -n 4000000 -P 16; the three alternated in a rotating order
# each round; medians of throughput, and the ratios s/m and s/n; the same for the daemon's CPU time per request.
# Usage: Benchmarks/metrics.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
. Benchmarks/common.sh
cp "$bin/libfile.so" "$work/plugins/"
value="tok_$(head -c 30 /dev/urandom | od -An -tx1 | tr -d ' \n')"   # a 64-byte token
printf '%s' "$value" > "$work/token"
port=$((20000 + $$ % 20000))
expirables() { file_expirable token 1h; for i in $(seq 19); do file_expirable "other$i" 1h; done; }
{ server_table m; printf '[metrics]\nlisten = "127.0.0.1:%s"\n' "$port"; expirables; } > "$work/m.toml"
{ server_table n; expirables; } > "$work/n.toml"
"$bin/expirabled" --config "$work/m.toml" --log-level warning 2>"$work/m.log" & pids+=("$!")
"$bin/expirabled" --config "$work/n.toml" --log-level warning 2>"$work/n.log" & pids+=("$!")
for _ in $(seq 100); do
    redis-cli -s "$work/m.sock" PING >/dev/null 2>&1 && redis-cli -s "$work/n.sock" PING >/dev/null 2>&1 \
        && curl -sf -o /dev/null "http://127.0.0.1:$port/metrics" && break
    sleep 0.1
done
for who in m n; do
    [ "$(redis-cli -s "$work/$who.sock" GET token)" = "$value" ] || { echo "$who.sock does not serve the token"; exit 1; }
    for i in $(seq 19); do redis-cli -s "$work/$who.sock" GET "other$i" >/dev/null; done
done
curl -s "http://127.0.0.1:$port/metrics" > "$work/scrape.txt"
grep -q "$value" "$work/scrape.txt" && { echo "the scrape holds the value"; exit 1; }

echo "machine: $(nproc) cores, $(uname -sr); this tree $(git rev-parse --short HEAD); $rounds rounds, order rotated"
echo "one scrape: $(wc -c < "$work/scrape.txt") bytes, $(grep -vc '^#' "$work/scrape.txt") samples, $(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/metrics") s"
bench() { redis-benchmark -s "$1" "${@:2}" --csv GET token 2>/dev/null | tail -1 | tr -d '"' | awk -F, '{print $2}'; }
# The daemon's own CPU time (all its threads, /proc/PID/task/*/schedstat), in ns: steadier than throughput on a
# shared machine, and it leaves out what curl itself costs the machine.
mpid=${pids[0]}; npid=${pids[1]}
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f", s}'; }
# run WHO MODE...: prints "rps cpu_ns_per_request" of one load.
run() {
    local who=$1; shift
    local pid=$mpid; [ "$who" = n ] && pid=$npid
    local requests; requests=$(echo "$@" | awk '{for (i = 1; i < NF; i++) if ($i == "-n") print $(i + 1)}')
    local before; before=$(cpu_ns "$pid")
    local rps
    case $who in
        n) rps=$(bench "$work/n.sock" "$@") ;;
        m) rps=$(bench "$work/m.sock" "$@") ;;
        s)
            ( while :; do curl -s -o /dev/null "http://127.0.0.1:$port/metrics"; echo >> "$work/scrapes"; sleep 1; done ) & local scraper=$!
            rps=$(bench "$work/m.sock" "$@")
            kill "$scraper"; wait "$scraper" 2>/dev/null || true ;;
    esac
    echo "$rps $(( ($(cpu_ns "$pid") - before) / requests ))"
}
for mode in "-c 50 -n 600000" "-c 50 -n 4000000 -P 16"; do
    : > "$work/m.txt"; : > "$work/s.txt"; : > "$work/n.txt"; : > "$work/scrapes"
    for round in $(seq "$rounds"); do
        case $((round % 3)) in 1) order="m s n";; 2) order="s n m";; 0) order="n m s";; esac
        # shellcheck disable=SC2086
        for who in $order; do run "$who" $mode >> "$work/$who.txt"; done
    done
    echo "redis-benchmark $mode GET token ($(wc -l < "$work/scrapes") scrapes during the s runs)"
    for who in m s n; do echo "  $who runs (rps cpu_ns/request): $(tr '\n' ';' < "$work/$who.txt")"; done
    rps() { awk '{print $1}' "$work/$1.txt" | median; }
    cpu() { awk '{print $2}' "$work/$1.txt" | median; }
    awk -v m="$(rps m)" -v s="$(rps s)" -v n="$(rps n)" 'BEGIN {
        printf "  median rps: not scraped %.0f, scraped each second %.0f, no [metrics] %.0f; scraped/not scraped %.3fx, scraped/no [metrics] %.3fx\n", m, s, n, s / m, s / n }'
    awk -v m="$(cpu m)" -v s="$(cpu s)" -v n="$(cpu n)" 'BEGIN {
        printf "  median daemon CPU ns/request: not scraped %.0f, scraped %.0f, no [metrics] %.0f; not scraped/scraped %.3fx, no [metrics]/scraped %.3fx (the throughput ratios they imply)\n", m, s, n, m / s, n / s }'
done
