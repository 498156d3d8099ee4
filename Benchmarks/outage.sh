#!/usr/bin/env bash
# An identity provider outage (issue 10, SPEC §3.16–17): 50 concurrent readers loop on FETCH while the token
# endpoint (Tests/Fixtures/token_endpoint.py, fetched through the `command` plugin and curl) answers 500 for
# 10 s. Prints, for each freshness setting, the token requests the endpoint received during the outage (and per
# second), and the readers' answers by kind: fresh, stale, error. Settings, one expirable each, run in turn:
#   paced      retry_interval = "1s" (the default)
#   stale      retry_interval = "1s", stale_if_error = "1m"
#   unpaced    retry_interval = "1ms": pacing effectively off, for comparison
# Before each run the expirable holds a token that has just expired (tokens live 2 s); after it, the endpoint
# answers again and one FETCH shows the recovery.
# Usage: Benchmarks/outage.sh [readers] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
readers=${1:-50}
seconds=${2:-10}
command -v curl >/dev/null || { echo "outage.sh: needs curl (apt-get install curl)"; exit 1; }
. Benchmarks/common.sh
cp "$bin/libcommand.so" "$work/plugins/"
cc -O2 -pthread Benchmarks/outage/readers.c -o "$work/readers"

python3 Tests/Fixtures/token_endpoint.py --expires-in 2 --lifetime 600 > "$work/endpoint.out" 2>"$work/endpoint.err" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/endpoint.out" ] && break; sleep 0.1; done
read -r port control < "$work/endpoint.out" || { echo "the token endpoint did not start"; cat "$work/endpoint.err"; exit 1; }
ctl() { curl -sS --max-time 10 "$@"; }
mode() { ctl -X POST "http://127.0.0.1:$control/mode/$1" >/dev/null; }
requests() { ctl "http://127.0.0.1:$control/count"; }

declare -A keys=([paced]='retry_interval = "1s"' [stale]='retry_interval = "1s", stale_if_error = "1m"' [unpaced]='retry_interval = "1ms"')
{
    server_table e
    for name in paced stale unpaced; do
        printf '[expirable.%s]\nplugin = "command"\n%s\n' "$name" "${keys[$name]//, /$'\n'}"
        printf '[expirable.%s.params]\nargv = ["curl", "-sS", "--fail-with-body", "--max-time", "2", "http://127.0.0.1:%s/token"]\n' "$name" "$port"
        printf 'output = "json"\nvalue_key = "access_token"\n'
    done
} > "$work/e.toml"
"$bin/expirabled" --config "$work/e.toml" --log-level error 2>"$work/e.log" & pids+=($!)
for _ in $(seq 100); do redis-cli -s "$work/e.sock" PING >/dev/null 2>&1 && break; sleep 0.1; done

echo "$readers readers loop on FETCH while the token endpoint answers 500 for $seconds s (curl through the command plugin)"
for name in paced stale unpaced; do
    mode ok
    token=$(redis-cli -s "$work/e.sock" GET "$name")
    [[ $token == tok-* ]] || { echo "$name does not answer: $token"; cat "$work/e.log"; exit 1; }
    for _ in $(seq 60); do [ "$(redis-cli -s "$work/e.sock" PTTL "$name")" = -2 ] && break; sleep 0.05; done
    before=$(requests)
    mode 500
    start=$(date +%s%3N)
    "$work/readers" "$work/e.sock" "$name" "$readers" "$seconds" > "$work/$name.txt"
    total=$(( $(requests) - before ))
    # Requests in each second of the outage; a reader's last FETCH, sent before the end, may wait for one more.
    per_second=$(ctl "http://127.0.0.1:$control/arrivals" | awk -v s="$start" -v n="$seconds" \
        '$1 >= s { b = int(($1 - s) / 1000); if (b < n) c[b]++ } END { for (i = 0; i < n; i++) printf "%d ", c[i] + 0 }')
    during=$(echo "$per_second" | awk '{ for (i = 1; i <= NF; i++) t += $i; print t + 0 }')
    mode ok
    after=$(redis-cli -s "$work/e.sock" FETCH "$name" | sed -n '1p;3p' | tr '\n' ' ')
    calls=$(redis-cli -s "$work/e.sock" INFO "$name" | tr -d '\r' | awk -F: '$1 == "plugin_calls" { print $2 }')
    echo "$name (${keys[$name]})"
    echo "  token requests during the $seconds s: $during (per second: ${per_second% }); in all, with the call answering the last FETCHes: $total"
    echo "  answers: $(head -1 "$work/$name.txt")"
    echo "  $(sed -n 2p "$work/$name.txt")"
    echo "  after the endpoint came back: FETCH -> $after(plugin calls in all: $calls)"
done
