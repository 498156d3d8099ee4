#!/usr/bin/env bash
# SPEC §8's idle memory: the daemon's private memory (anonymous + private file pages) and resident memory, with
# its plugins in helper processes (the default), inline, and as a cluster node (helpers; a [cluster] table whose
# two peers are not running, so nothing else maps its libraries), each run started alone and read after 5 s idle.
#     Benchmarks/idle-memory.sh [ROUNDS]      (default 5; the three kinds alternate)
# Private pages are the ones no other process maps. A helper runs the daemon's own binary, so with helpers the
# daemon's code pages are shared with them and leave its private count; inline, they stay private to it. The
# same holds for shared libraries: libswiftCore's and libcrypto's pages count as private unless another process
# (another Swift program, sshd, a test run) has the same pages mapped, so run this on an otherwise idle machine.
# The last round's private memory is broken down by mapping, largest first. "Of which dirty" is Private_Dirty: the
# pages written (the heap, stacks, libraries' relocated data), which no other process can ever share and the kernel
# cannot drop; the rest of the private figure is clean file pages (code, read-only data) that count as private
# only while no other process maps them. A binary written moments ago (the release build this script makes) still
# has dirty page-cache pages, which smaps counts as Private_Dirty too: "anonymous" is the steadier figure of pages
# only this process holds (its heap, stacks and relocated data).
# A fourth kind, "cluster of 3", is the same cluster node with its two peers running on this machine (linked to it,
# each with its own helpers): what a node of a cluster tried out on one machine shows, its code pages shared with
# the other nodes. PSS (proportional set size: private pages plus each shared page divided by the processes that
# map it) is printed for every kind: the node's share of the memory in use.
set -euo pipefail
cd "$(dirname "$0")/.."
. Benchmarks/common.sh
rounds=${1:-5}
cp "$bin/libcommand.so" "$bin/libfile.so" "$work/plugins/"
echo token-value > "$work/token"
config() {
    server_table idle
    printf '[expirable.token]\nplugin = "command"\nisolation = "%s"\n[expirable.token.params]\nargv = ["echo", "tok"]\nttl = "1h"\n' "$1"
    printf '[expirable.key]\nplugin = "command"\nisolation = "%s"\n[expirable.key.params]\nargv = ["echo", "key"]\nttl = "1h"\n' "$1"
    file_expirable file 1h "$1"
}
"$bin/expirablectl" cert ca --dir "$work" >/dev/null
for node in node-a node-b node-c; do "$bin/expirablectl" cert node $node --dir "$work" >/dev/null; done
# The [cluster] table of node $1 (default node-a) and its own socket name, for the three-node kind.
cluster_table() {
    local node=${1:-node-a} a=127.0.0.2:7811 b=127.0.0.3:7811 c=127.0.0.4:7811
    printf '[cluster]\nnode = "%s"\n' "$node"
    case $node in
        node-a) printf 'listen = "%s"\npeers = { node-b = "%s", node-c = "%s" }\n' $a $b $c ;;
        node-b) printf 'listen = "%s"\npeers = { node-a = "%s", node-c = "%s" }\n' $b $a $c ;;
        node-c) printf 'listen = "%s"\npeers = { node-a = "%s", node-b = "%s" }\n' $c $a $b ;;
    esac
    printf 'ca = "%s"\ncert = "%s"\nkey = "%s"\n' "$work/ca.pem" "$work/$node.pem" "$work/$node.key"
}
kb() { awk -v f="$2" '$1 == f":" {print $2}' "/proc/$1/smaps_rollup"; }
for isolation in process inline; do config "$isolation" > "$work/$isolation.toml"; done
{ config process; cluster_table; } > "$work/cluster.toml"
cp "$work/cluster.toml" "$work/cluster3.toml"
for node in node-b node-c; do { config process | sed "s|idle.sock|$node.sock|"; cluster_table $node; } > "$work/$node.toml"; done
kinds="process inline cluster cluster3"
# The cluster of 3's other two nodes, started before node-a and stopped after it.
peers=()
start_peers() {
    for node in node-b node-c; do
        rm -f "$work/$node.sock"
        "$bin/expirabled" --config "$work/$node.toml" > "$work/$node.log" 2>&1 &
        peers+=($!); pids+=($!)
    done
    for node in node-b node-c; do for _ in $(seq 100); do [ -S "$work/$node.sock" ] && break; sleep 0.05; done; done
}
stop_peers() { for pid in "${peers[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done; peers=(); }
# Private memory by mapping (file name, or [anon] etc.), kB, largest first.
breakdown() {
    awk '/^[0-9a-f]+-[0-9a-f]+ / {n = NF >= 6 ? $6 : "[anon]"; sub(/.*\//, "", n)} /^Private_(Clean|Dirty):/ {p[n] += $2}
         END {for (k in p) if (p[k] > 0) print p[k], k}' "/proc/$1/smaps" | sort -rn | head -8 | awk '{printf "%s %s kB; ", $2, $1}'
}
# Private memory without shared libraries' file pages (kB): the guide counts "private memory (anonymous plus
# private file pages), not shared library pages". This keeps every private page of the heap, the stacks, anonymous
# mappings and the binary, and of each `.so` mapping only its anonymous pages (its relocated data, copied on
# write), leaving out the libraries' clean code and read-only pages that count as private only while no other
# process maps them.
private_outside_libraries() {
    # A library mapping's private anonymous pages: the smaller of its Private_Dirty (which also holds dirty
    # page-cache pages of a file written moments ago) and its Anonymous (which also holds pages shared after fork).
    awk 'function flush() {if (lib) p += (d < a ? d : a); d = a = 0}
         /^[0-9a-f]+-[0-9a-f]+ / {flush(); lib = (NF >= 6 && $6 ~ /\.so(\.[0-9]+)*$/)}
         /^Private_(Clean|Dirty):/ && !lib {p += $2} /^Private_Dirty:/ {d = $2} /^Anonymous:/ {a = $2}
         END {flush(); print p + 0}' "/proc/$1/smaps"
}
declare -A parts
declare -A private resident anonymous helpers dirty pss outside
for round in $(seq "$rounds"); do
    for isolation in $kinds; do
        rm -f "$work/idle.sock"
        if [ "$isolation" = cluster3 ]; then start_peers; fi
        "$bin/expirabled" --config "$work/$isolation.toml" > "$work/log" 2>&1 &
        daemon=$!
        for _ in $(seq 100); do [ -S "$work/idle.sock" ] && break; sleep 0.05; done
        for name in token key file; do redis-cli -s "$work/idle.sock" GET "$name" > /dev/null; done
        sleep 5
        private[$isolation]+="$(( $(kb $daemon Private_Clean) + $(kb $daemon Private_Dirty) )) "
        resident[$isolation]+="$(kb $daemon Rss) "
        anonymous[$isolation]+="$(kb $daemon Anonymous) "
        dirty[$isolation]+="$(kb $daemon Private_Dirty) "
        outside[$isolation]+="$(private_outside_libraries $daemon) "
        pss[$isolation]+="$(kb $daemon Pss) "
        h=0; for child in $(pgrep -P $daemon || true); do h=$(( h + $(kb $child Private_Clean) + $(kb $child Private_Dirty) )); done
        helpers[$isolation]+="$h "
        parts[$isolation]=$(breakdown $daemon)
        kill $daemon; wait $daemon 2>/dev/null || true
        if [ "$isolation" = cluster3 ]; then stop_peers; fi
    done
done
mb() { tr ' ' '\n' | grep . | median | awk '{printf "%.2f MB", $1/1024}'; }
range() { tr ' ' '\n' | grep . | sort -n | awk 'NR==1 {a=$1} {b=$1} END {printf "%.2f–%.2f", a/1024, b/1024}'; }
echo "idle daemon, 3 expirables, medians of $rounds rounds (range); targets: private < 5 MB, resident < 24 MB"
for isolation in $kinds; do
    echo "  $isolation: private $(echo "${private[$isolation]}" | mb) ($(echo "${private[$isolation]}" | range)), of which dirty $(echo "${dirty[$isolation]}" | mb), without libraries' file pages $(echo "${outside[$isolation]}" | mb), anonymous $(echo "${anonymous[$isolation]}" | mb), PSS $(echo "${pss[$isolation]}" | mb), resident $(echo "${resident[$isolation]}" | mb); helpers' private, together: $(echo "${helpers[$isolation]}" | mb)"
done
echo "private memory by mapping, last round:"
for isolation in $kinds; do echo "  $isolation: ${parts[$isolation]}"; done
# The floor OpenSSL alone sets under a cluster node: its initialization and one TLS context with the node's
# certificate, in a C program started alone.
if cc Benchmarks/openssl-floor/floor.c -o "$work/floor" -lssl -lcrypto 2>/dev/null; then
    "$work/floor" "$work/node-a.pem" "$work/node-a.key" "$work/ca.pem" | sed 's/^/  /'
fi
