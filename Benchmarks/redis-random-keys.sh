#!/usr/bin/env bash
# The peer's figure for SPEC §8's keyed target: redis-server holding 1,000,000 keys, `GET` of a random key among them
# (-r 1000000) against `GET` of one key, without and with pipelining (-P 16), alternated round by round; medians and
# ratios. The same comparison as Benchmarks/keyed.sh makes for expirabled (keyed GET vs plain GET), so its ratio
# says how much of a gap a memory-latency-bound machine puts between "a random key of a million" and "one hot key"
# for Redis itself. Names have 14 bytes and values 64, as in keyed.sh.
# Usage: Benchmarks/redis-random-keys.sh [rounds] [keys]      (needs redis-server and redis-tools)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
keys=${2:-1000000}
work=$(mktemp -d /tmp/expbench.XXXXXX)
redis-server --port 0 --unixsocket "$work/r.sock" --save "" --appendonly no --logfile "$work/redis.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do redis-cli -s "$work/r.sock" PING >/dev/null 2>&1 && break; sleep 0.05; done
value=$(printf 'tok_%060d' 0)
awk -v n="$keys" -v v="$value" 'BEGIN { for (i = 0; i < n; i++) { k = sprintf("k:%012d", i); printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v } }' \
    | redis-cli -s "$work/r.sock" --pipe >/dev/null
redis-cli -s "$work/r.sock" SET plain_00000000 "$value" >/dev/null
echo "redis-server $(redis-server --version | cut -d' ' -f3), $(redis-cli -s "$work/r.sock" DBSIZE) keys, $(nproc) cores"
rps() { redis-benchmark -s "$work/r.sock" -c 50 -q "$@" | tr '\r' '\n' | grep 'requests per second' | tail -1 | sed -E 's/.*: ([0-9.]+) requests per second.*/\1/'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for pipeline in 1 16; do
    n=$(( pipeline == 1 ? 200000 : 2000000 ))
    random=(); one=()
    for round in $(seq "$rounds"); do
        random+=("$(rps -n $n -P $pipeline -r 1000000 GET k:__rand_int__)")
        one+=("$(rps -n $n -P $pipeline GET plain_00000000)")
    done
    r=$(printf '%s\n' "${random[@]}" | median); o=$(printf '%s\n' "${one[@]}" | median)
    echo "-P $pipeline: random key of $keys ${r} rps (${random[*]}), one key ${o} rps (${one[*]}); random/one $(awk -v a="$r" -v b="$o" 'BEGIN {printf "%.2f", a/b}')x"
done
