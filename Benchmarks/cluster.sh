#!/usr/bin/env bash
# Cluster benchmarks (SPEC §8, issue 11): release nodes on 127.0.0.x loopback over mutual TLS, heartbeat 500 ms
# (the default: a silent peer is dead after 1.5 s, a starting node waits up to 2 s for its peers).
#   1. Replication at 3 and at 8 nodes: from the owner receiving the GET that fetches a new value until every peer
#      holds it, p50/p99 per round of REFRESHES refreshes; the two clusters run side by side and alternate rounds
#      (target p99 < 5 ms on loopback).
#   2. GET throughput of a cached cluster value on a non-owner node vs the owner (redis-benchmark -c 50).
#   3. The extra latency of a miss in quorum mode: GET of a just-cleared value on its owner, single_flight =
#      "quorum" vs "available" (the same `file` plugin, both in a helper process), alternated rounds.
#   4. Restart to serve: kill -9 a non-owner holding a value, start it again, and time from exec until it answers
#      GET with the cluster's value; no node may call the plugin (the test fixture `counter`, counting its calls
#      in a file per node).
#   5. Eager takeover: an eager value (lifetime 4 s, before_expiry 1 s) whose owner is stopped (SIGSTOP: to its
#      peers exactly a power loss, nothing closes its connections) or killed (kill -9: the kernel closes them)
#      100 ms before its refresh is due; time from then until the survivors hold a new value, and whether it
#      lapsed on any survivor (PTTL -2) in between. Alternated rounds.
# Usage: Benchmarks/cluster.sh [refreshes] [rounds]     (defaults 500 and 5; needs redis-tools and cc; builds in
#        release; about 90 s with the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
refreshes=${1:-500}
rounds=${2:-5}
. Benchmarks/common.sh
export LC_ALL=C
cp "$bin/libfile.so" "$work/plugins/"
cc -shared -fPIC -O2 -I Sources/ExpirableABI/include Tests/Fixtures/counter.c -o "$work/plugins/libcounter.so"
cc -O2 Benchmarks/cluster/probe.c -o "$work/probe"
head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/token"
"$bin/expirablectl" cert ca --dir "$work" >/dev/null

# Nodes a-c form the 3-node cluster (127.0.0.2-4), d-k the 8-node one (127.0.0.5-12); node n listens on
# 127.0.0.(2+i):(17501+i) where i is its place in `letters`.
letters=(a b c d e f g h i j k)
declare -A pid_of=() members=() owner_of=()
members[a]="a b c"; members[b]=${members[a]}; members[c]=${members[a]}
for n in d e f g h i j k; do members[$n]="d e f g h i j k"; done
address() {
    local i
    for i in "${!letters[@]}"; do
        if [ "${letters[$i]}" = "$1" ]; then echo "127.0.0.$((2 + i)):$((17501 + i))"; return; fi
    done
}
expirables() {
    cat <<TOML
[expirable.counted]
plugin = "counter"
[expirable.counted.params]
prefix = "node-$1-"
ttl_ms = "3600000"
count_file = "$work/$1.calls"
[expirable.token]
plugin = "file"
[expirable.token.params]
path = "$work/token"
ttl = "1h"
[expirable.eager]
plugin = "file"
refresh = "eager"
before_expiry = "1s"
[expirable.eager.params]
path = "$work/token"
ttl = "4s"
TOML
    for mode in available quorum; do
        printf '[expirable.miss_%s]\nplugin = "file"\ntimeout = "2s"\nsingle_flight = "%s"\n' "$mode" "$mode"
        printf '[expirable.miss_%s.params]\npath = "%s"\nttl = "1h"\n' "$mode" "$work/token"
    done
}
for n in "${letters[@]}"; do
    "$bin/expirablectl" cert node "node-$n" --dir "$work" >/dev/null
    peers=""
    for m in ${members[$n]}; do [ "$m" = "$n" ] || peers="$peers node-$m = \"$(address "$m")\","; done
    cat > "$work/$n.toml" <<TOML
[server]
socket = "$work/$n.sock"
plugin_dir = "$work/plugins"
[cluster]
node = "node-$n"
listen = "$(address "$n")"
peers = { ${peers%,} }
ca = "$work/ca.pem"
cert = "$work/node-$n.pem"
key = "$work/node-$n.key"
$(expirables "$n")
TOML
done

start_node() {
    "$bin/expirabled" --config "$work/$1.toml" --log-level warning 2>>"$work/$1.log" &
    pid_of[$1]=$!
    pids+=("$!")
}
# Ends node $1 with signal $2 (a stopped node is continued, so that it can die) and forgets its PID.
stop_node() {
    local pid=${pid_of[$1]} kept=() p
    kill -"${2:-TERM}" "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${pids[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
    pids=("${kept[@]}")
    unset "pid_of[$1]"
}
# Waits (at most 20 s) until every node of the cluster of $1 sees all its peers alive.
await_cluster() {
    local set=(${members[$1]}) n alive
    for _ in $(seq 200); do
        alive=0
        for n in "${set[@]}"; do
            [ "$(redis-cli -s "$work/$n.sock" CLUSTER 2>/dev/null | grep -c "state:alive" || true)" = "$((${#set[@]} - 1))" ] && alive=$((alive + 1))
        done
        [ "$alive" = "${#set[@]}" ] && return 0
        sleep 0.1
    done
    echo "the cluster of node-$1 did not come up; see $work/*.log" >&2
    exit 1
}
info() { redis-cli -s "$work/$1.sock" INFO "$2" | tr -d '\r' | awk -F: -v key="$3" '$1 == key {print $2}'; }
pttl() { redis-cli -s "$work/$1.sock" PTTL "$2"; }
field() { tr ' ' '\n' | awk -F= -v key="$1" '$1 == key {print $2}'; }
# "median M (min–max)" of a column of numbers on stdin.
spread() { sort -g | awk '{a[NR]=$1} END {printf "median %s (%s–%s)", a[int((NR+1)/2)], a[1], a[NR]}'; }
now_us() { echo "${EPOCHREALTIME/./}"; }

for n in "${letters[@]}"; do start_node "$n"; done
await_cluster a
await_cluster d
for n in a d; do redis-cli -s "$work/$n.sock" GET token >/dev/null; done
owner3=$(info a token owner); owner3=${owner3#node-}
owner8=$(info d token owner); owner8=${owner8#node-}
peers3=(); for n in ${members[a]}; do [ "$n" = "$owner3" ] || peers3+=("$work/$n.sock"); done
peers8=(); for n in ${members[d]}; do [ "$n" = "$owner8" ] || peers8+=("$work/$n.sock"); done

echo "3 nodes on 127.0.0.2-4 and 8 nodes on 127.0.0.5-12 (mutual TLS, heartbeat 500 ms)"
echo
echo "1. replication: owner's GET fetches a new value -> every peer holds it ($refreshes refreshes a round, $rounds alternated rounds)"
: > "$work/r3"; : > "$work/r8"
for round in $(seq "$rounds"); do
    for size in 3 8; do
        if [ "$size" = 3 ]; then owner=$owner3; peers=("${peers3[@]}"); else owner=$owner8; peers=("${peers8[@]}"); fi
        line=$("$bin/ClientBenchmark" replication "$work/$owner.sock" "${peers[@]}" token "$refreshes")
        echo "  round $round, $size nodes (owner node-$owner): $line"
        echo "$line" >> "$work/r$size"
    done
done
for size in 3 8; do
    echo "  $size nodes: p50 $(field p50_ms < "$work/r$size" | spread) ms, p99 $(field p99_ms < "$work/r$size" | spread) ms, max $(field max_ms < "$work/r$size" | sort -g | tail -1) ms"
done
echo "  (target: p99 < 5 ms)"
for n in ${members[d]}; do stop_node "$n"; done

others=(); for n in ${members[a]}; do [ "$n" = "$owner3" ] || others+=("$n"); done
echo
echo "2. redis-benchmark -c 50 -n 200000 GET token on 3 nodes (3 alternated rounds, median)"
bench() { redis-benchmark -s "$1" -c 50 -n 200000 --csv GET token 2>/dev/null | tail -1 | tr -d '"' | awk -F, '{print $2}'; }
: > "$work/owner.txt"; : > "$work/peer.txt"
for round in 1 2 3; do
    bench "$work/$owner3.sock" >> "$work/owner.txt"
    bench "$work/${others[0]}.sock" >> "$work/peer.txt"
done
own=$(median < "$work/owner.txt"); peer=$(median < "$work/peer.txt")
echo "  owner node-$owner3: $own rps ($(tr '\n' ' ' < "$work/owner.txt")); non-owner node-${others[0]}: $peer rps ($(tr '\n' ' ' < "$work/peer.txt"))"
awk -v o="$own" -v p="$peer" 'BEGIN { printf "  non-owner / owner: %.2fx\n", p / o }'

echo
echo "3. a miss on the owner: CLEAR, then GET timed (200 a round, $rounds alternated rounds; the file plugin in a helper)"
for mode in available quorum; do
    o=$(info a "miss_$mode" owner); owner_of[$mode]=${o#node-}
    for _ in $(seq 100); do
        [ "$(redis-cli -s "$work/${owner_of[$mode]}.sock" GET "miss_$mode" | head -c 4)" = "$(head -c 4 "$work/token")" ] && break
        sleep 0.1
    done
done
: > "$work/available"; : > "$work/quorum"
for round in $(seq "$rounds"); do
    order="available quorum"; [ $((round % 2)) = 0 ] && order="quorum available"
    for mode in $order; do
        line=$("$work/probe" miss "$work/${owner_of[$mode]}.sock" "miss_$mode" 200)
        echo "  round $round, $mode (owner node-${owner_of[$mode]}): $line"
        echo "$line" >> "$work/$mode"
    done
done
a50=$(field p50_us < "$work/available" | median); q50=$(field p50_us < "$work/quorum" | median)
echo "  available: p50 $(field p50_us < "$work/available" | spread) µs, p90 $(field p90_us < "$work/available" | spread) µs"
echo "  quorum:    p50 $(field p50_us < "$work/quorum" | spread) µs, p90 $(field p90_us < "$work/quorum" | spread) µs"
echo "  a quorum miss costs $((q50 - a50)) µs more (median of the rounds' p50s): the lease round trip"

echo
echo "4. restart to serve: kill -9 a non-owner holding \`counted\`, start it again, GET as soon as its socket answers ($rounds rounds)"
o=$(info a counted owner); counted_owner=${o#node-}
victim=""; for n in ${members[a]}; do [ "$n" = "$counted_owner" ] || victim=$n; done
held=$(redis-cli -s "$work/$counted_owner.sock" GET counted)
calls() { local n sum=0; for n in ${members[a]}; do [ "$n" = "$victim" ] || sum=$((sum + $(cat "$work/$n.calls" 2>/dev/null || echo 0))); done; echo "$sum"; }
: > "$work/restart"; : > "$work/socket"
for round in $(seq "$rounds"); do
    [ "$(redis-cli -s "$work/$victim.sock" GET counted)" = "$held" ] || { echo "node-$victim does not hold counted" >&2; exit 1; }
    before=$(calls)
    stop_node "$victim" KILL
    rm -f "$work/$victim.calls"
    started=$(now_us)
    start_node "$victim"
    line=$("$work/probe" serve "$work/$victim.sock" counted 10000)
    answered=$(field answered_us <<< "$line"); connected=$(field connected_us <<< "$line")
    own=$(cat "$work/$victim.calls" 2>/dev/null || echo 0)
    elsewhere=$(($(calls) - before))
    same=no; [ "$(field value <<< "$line")" = "$held" ] && same=yes
    ms=$(awk -v a="$answered" -v s="$started" 'BEGIN { printf "%.1f", (a - s) / 1000 }')
    up=$(awk -v c="$connected" -v s="$started" 'BEGIN { printf "%.1f", (c - s) / 1000 }')
    echo "  round $round: answered ${ms} ms after exec (socket accepting at ${up} ms); the cluster's value ($held): $same; plugin calls: $own on node-$victim, $elsewhere elsewhere (its INFO says plugin_calls:$(info "$victim" counted plugin_calls): that counter counts fetches that left the cache, here the GET that waited for the join)"
    echo "$ms" >> "$work/restart"; echo "$up" >> "$work/socket"
    [ "$same" = yes ] && [ "$own" = 0 ] && [ "$elsewhere" = 0 ] || { echo "  ^ the restart cost a plugin call" >&2; exit 1; }
    await_cluster a
done
echo "  exec -> GET answered: $(spread < "$work/restart") ms; exec -> socket accepting: $(spread < "$work/socket") ms; no plugin call in any round"

echo
echo "5. eager takeover: eager (lifetime 4 s, before_expiry 1 s; due 2 s before expiry, the dead time plus a heartbeat),"
echo "   its owner stopped or killed at PTTL 2100 ms, 100 ms before the refresh is due ($rounds alternated rounds each)"
o=$(info a eager owner); eager_owner=${o#node-}
survivors=(); for n in ${members[a]}; do [ "$n" = "$eager_owner" ] || survivors+=("$work/$n.sock"); done
: > "$work/STOP"; : > "$work/KILL"
for round in $(seq "$rounds"); do
    order="STOP KILL"; [ $((round % 2)) = 0 ] && order="KILL STOP"
    for signal in $order; do
        for _ in $(seq 100); do [ "$(pttl "$eager_owner" eager)" -gt 0 ] && break; sleep 0.1; done
        line=$("$work/probe" takeover eager 2100 "$(kill -l "$signal")" "${pid_of[$eager_owner]}" "$work/$eager_owner.sock" 10000 "${survivors[@]}") || true
        echo "  round $round, SIG$signal node-$eager_owner: $line"
        echo "$line" >> "$work/$signal"
        stop_node "$eager_owner" KILL 2>/dev/null  # bash's "Killed" notice for the probe's SIGKILL
        start_node "$eager_owner"
        await_cluster a
        for _ in $(seq 100); do [ "$(pttl "$eager_owner" eager)" -gt 0 ] && break; sleep 0.1; done
    done
done
for signal in STOP KILL; do
    lapses=$(grep -c "lapsed=yes" "$work/$signal" || true)
    echo "  SIG$signal: kill -> first survivor holds a new value $(field first_new_ms < "$work/$signal" | spread) ms, all survivors $(field all_new_ms < "$work/$signal" | spread) ms;"
    echo "           validity left just before it $(field least_left_ms < "$work/$signal" | spread) ms; lapsed in $lapses of $rounds rounds"
done
