#!/usr/bin/env bash
# The test command: installs what the suite needs on a fresh Debian machine, then runs
#     swift build && swift test [ARGUMENTS…]
# (arguments go to `swift test`, e.g. scripts/test.sh --filter RedisClientTests).
#
# Debian packages: installed with apt-get when run as root, after one `apt-get update`; otherwise the script stops
# before building with one line naming the packages to install.
# Python packages (Tests/Clients/requirements.txt: the Redis clients; Tests/Fixtures/requirements.txt: Authlib for the
# OAuth 2.0 server the oauth2 plugin is tested against, the AWS CLI that credential-process is tested with): installed
# with pip into .build/python-clients, never into the system's site-packages; the tests that run them put that
# directory on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the suite runs or links, and the Debian package that brings it.
missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
[ -e /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
pkg-config --exists libcurl 2>/dev/null || missing+=(libcurl4-openssl-dev)   # the oauth2 plugin links libcurl
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
{ command -v redis-cli && command -v redis-benchmark; } >/dev/null 2>&1 || missing+=(redis-tools)
[ -e /usr/include/hiredis/hiredis.h ] || missing+=(libhiredis-dev)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)   # a terminal for redis-cli's interactive mode
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v curl >/dev/null 2>&1 || missing+=(curl)   # the outage tests fetch tokens through the command plugin and curl
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
command -v git >/dev/null 2>&1 || missing+=(git)   # git credential fill drives the git-credential adapter
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)   # kubectl drives exec-credential

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "scripts/test.sh: missing packages, install them and run again: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "scripts/test.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Reinstalled when requirements.txt or the Python version changes, or when an import fails.
clients=.build/python-clients
wanted="$(cat Tests/Clients/requirements.txt Tests/Fixtures/requirements.txt; python3 --version)"
if [ "$(cat "$clients/.installed" 2>/dev/null)" != "$wanted" ] \
    || ! PYTHONPATH="$clients" python3 -c 'import redis, coredis, authlib, prometheus_client, awscli' >/dev/null 2>&1; then
    echo "scripts/test.sh: installing the Python clients, Authlib and the AWS CLI into $clients"
    rm -rf "$clients"
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
        --target "$clients" -r Tests/Clients/requirements.txt -r Tests/Fixtures/requirements.txt
    printf '%s' "$wanted" > "$clients/.installed"
fi
PYTHONPATH="$clients" python3 -c 'import redis, coredis, authlib; print(f"scripts/test.sh: Python packages: redis-py {redis.__version__}, coredis {coredis.__version__}, Authlib {authlib.__version__}")'

swift build

# The suite's output also goes to .build/test-output.txt. When a test fails, the lines that name the failure are
# printed again at the end, so the tail of a long log (what CI shows) says which test failed and why.
log=.build/test-output.txt
status=0
swift test "$@" 2>&1 | tee "$log" || status=$?
if [ "$status" -ne 0 ]; then
    echo "scripts/test.sh: swift test exited with status $status; its failures (the whole output is in $log):"
    grep -E -A 6 'recorded an issue|✘ Test "|error: |Fatal error|Test .* failed' "$log" | grep -v '^--$' | head -120 || true
fi
exit "$status"
