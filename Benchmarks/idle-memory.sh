#!/usr/bin/env bash
# SPEC §8's idle memory: the daemon's private memory (anonymous + private file pages) and resident memory, with
# its plugins in helper processes (the default) and inline, each run started alone and read after 5 s idle.
#     Benchmarks/idle-memory.sh [ROUNDS]      (default 5; the two kinds alternate)
# Private pages are the ones no other process maps. A helper runs the daemon's own binary, so with helpers the
# daemon's code pages are shared with them and leave its private count; inline, they stay private to it.
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
kb() { awk -v f="$2" '$1 == f":" {print $2}' "/proc/$1/smaps_rollup"; }
for isolation in process inline; do config "$isolation" > "$work/$isolation.toml"; done
declare -A private resident anonymous helpers
for round in $(seq "$rounds"); do
    for isolation in process inline; do
        rm -f "$work/idle.sock"
        "$bin/expirabled" --config "$work/$isolation.toml" > "$work/log" 2>&1 &
        daemon=$!
        for _ in $(seq 100); do [ -S "$work/idle.sock" ] && break; sleep 0.05; done
        for name in token key file; do redis-cli -s "$work/idle.sock" GET "$name" > /dev/null; done
        sleep 5
        private[$isolation]+="$(( $(kb $daemon Private_Clean) + $(kb $daemon Private_Dirty) )) "
        resident[$isolation]+="$(kb $daemon Rss) "
        anonymous[$isolation]+="$(kb $daemon Anonymous) "
        h=0; for child in $(pgrep -P $daemon || true); do h=$(( h + $(kb $child Private_Clean) + $(kb $child Private_Dirty) )); done
        helpers[$isolation]+="$h "
        kill $daemon; wait $daemon 2>/dev/null || true
    done
done
mb() { tr ' ' '\n' | grep . | median | awk '{printf "%.2f MB", $1/1024}'; }
range() { tr ' ' '\n' | grep . | sort -n | awk 'NR==1 {a=$1} {b=$1} END {printf "%.2f–%.2f", a/1024, b/1024}'; }
echo "idle daemon, 3 expirables, medians of $rounds rounds (range); targets: private < 5 MB, resident < 24 MB"
for isolation in process inline; do
    echo "  $isolation: private $(echo "${private[$isolation]}" | mb) ($(echo "${private[$isolation]}" | range)), anonymous $(echo "${anonymous[$isolation]}" | mb), resident $(echo "${resident[$isolation]}" | mb); helpers' private, together: $(echo "${helpers[$isolation]}" | mb)"
done
