# Shared by the benchmark scripts: a release build, a work directory removed at exit with every process the
# script started (record their PIDs in `pids`; a stopped one is continued so that it ends), and the median of a
# column of numbers on stdin.
swift build -c release >/dev/null
bin=.build/release
work=$(mktemp -d /tmp/expbench.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; kill -CONT "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -m 755 "$work/plugins"
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Configuration pieces: a [server] table serving $work/NAME.sock from $work/plugins, and an expirable NAME served by
# the `file` plugin from $work/token with the given ttl (and isolation, if given).
server_table() { printf '[server]\nsocket = "%s"\nplugin_dir = "%s"\n' "$work/$1.sock" "$work/plugins"; }
file_expirable() {
    printf '[expirable.%s]\nplugin = "file"\n' "$1"
    [ $# -gt 2 ] && printf 'isolation = "%s"\n' "$3"
    printf '[expirable.%s.params]\npath = "%s"\nttl = "%s"\n' "$1" "$work/token" "$2"
}
