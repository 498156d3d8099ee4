#!/usr/bin/env bash
# Runs the client checks of RedisClientTests against a real redis-server, to show that the checks themselves
# are right: a failure here is a bug in a check, not in expirabled. Needs redis-server (Debian: redis-server) and
# what scripts/test.sh installs; not part of the suite. Where Redis differs from expirabled the server is told so:
# keys are SET with the values and lifetimes the daemon's counters would have, a list key stands in for an error
# (WRONGTYPE for NOTFOUND) and a PUBLISH for a new value. Redis before 7.2 lacks CLIENT SETINFO: that check is
# skipped then.
set -euo pipefail
cd "$(dirname "$0")/../.."
clients=Tests/Clients
export PYTHONPATH="${EXPIRABLE_PYTHON_CLIENTS:-$PWD/.build/python-clients}" PYTHONDONTWRITEBYTECODE=1

dir=$(mktemp -d /tmp/expirable-validate-XXXXXX)
sock=$dir/redis.sock
redis-server --port 0 --unixsocket "$sock" --save '' --appendonly no --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" >/dev/null
cleanup() {
    [ -n "${subscriber:-}" ] && kill "$subscriber" 2>/dev/null || true
    [ -s "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 100); do redis-cli -s "$sock" PING >/dev/null 2>&1 && break; sleep 0.05; done

cli() { redis-cli -s "$sock" "$@"; }
reset() {
    cli FLUSHALL >/dev/null
    cli SET token token-1 EX 60 >/dev/null
    cli SET other other-1 EX 60 >/dev/null
    cli SET forever forever-1 >/dev/null
    cli RPUSH alist x >/dev/null
}
skip=()
version=$(cli INFO server | sed -n 's/^redis_version:\([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | tr -d '\r')
read -r major minor <<<"$version"
if [ "$major" -lt 7 ] || { [ "$major" -eq 7 ] && [ "$minor" -lt 2 ]; }; then skip=(--skip client-setinfo); fi
expectations=(--value token=token-1 --value other=other-1 --value forever=forever-1 --lifetime token=60
              --lifetime other=60 --never forever --unstored unstored --unknown nope --error alist=WRONGTYPE)

for protocol in default 2; do
    reset
    python3 $clients/redis_py_check.py --socket "$sock" $([ $protocol = default ] || echo --protocol $protocol) \
        "${expectations[@]}" "${skip[@]}" --subscribe token=token-2 --trigger "PUBLISH token token-2"
done
reset
python3 $clients/coredis_check.py --socket "$sock" "${expectations[@]}"
reset
cc -Wall -Wextra -o "$dir/hiredis_check" $clients/hiredis_check.c -lhiredis
"$dir/hiredis_check" "$sock" --value token=token-1 --value other=other-1 --unknown nope --error alist=WRONGTYPE

# The redis-cli commands RedisClientTests runs, with what it expects.
expect() {
    local what=$1 expected=$2 got=$3
    if [[ "$got" == $expected ]]; then echo "ok   redis-cli: $what: $got"; else echo "FAIL redis-cli: $what: expected $expected, got $got"; exit 1; fi
}
for protocol in -2 -3; do
    reset
    expect "$protocol GET token" token-1 "$(cli $protocol GET token)"
    ttl=$(cli $protocol TTL token); expect "$protocol TTL token in 55..60" 1 "$(( ttl >= 55 && ttl <= 60 ))"
    pttl=$(cli $protocol PTTL token); expect "$protocol PTTL token in 55000..60000" 1 "$(( pttl >= 55000 && pttl <= 60000 ))"
    expect "$protocol TTL unstored" -2 "$(cli $protocol TTL unstored)"
    expect "$protocol TTL forever" -1 "$(cli $protocol TTL forever)"
    expect "$protocol HELLO 3 has the line 'proto 3'" "*proto 3*" "$(cli $protocol HELLO 3 | tr '\n' ' ')"
    expect "$protocol HELLO 2 has 'proto' then '2'" "*proto 2 *" "$(cli $protocol HELLO 2 | tr '\n' ' ')"
    expect "$protocol SELECT 0" OK "$(cli $protocol SELECT 0)"
    /usr/bin/timeout 60 redis-cli $protocol -s "$sock" SUBSCRIBE token > "$dir/subscribe.out" 2>&1 &
    subscriber=$!
    for _ in $(seq 200); do grep -qx subscribe "$dir/subscribe.out" && break; sleep 0.05; done
    cli PUBLISH token token-2 >/dev/null
    for _ in $(seq 200); do grep -qx token-2 "$dir/subscribe.out" && break; sleep 0.05; done
    expect "$protocol SUBSCRIBE token, before it is killed" "subscribe token 1 message token token-2 " "$(tr '\n' ' ' < "$dir/subscribe.out")"
    kill "$subscriber"; wait "$subscriber" 2>/dev/null || true; subscriber=
done
echo "validate-against-redis-server: every check passed against redis-server $(cli INFO server | sed -n 's/^redis_version://p' | tr -d '\r')"
