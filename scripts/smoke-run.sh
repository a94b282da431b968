#!/usr/bin/env bash
# The README's walkthrough, end to end, from a fresh clone of this checkout:
# ./run.sh, curl without and with trust, enabling mTLS with the seed's sed
# line, curl without and with a client certificate.
# Needs curl. Uses port 5001 on 127.0.0.1 unless SMOKE_PORT says otherwise.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
port=${SMOKE_PORT:-5001}
work=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
check() { # check NAME EXPECTED ACTUAL
    if [[ "$3" == *"$2"* ]]; then
        passed=$((passed + 1)); echo "ok   $1"
    else
        failed=$((failed + 1)); echo "FAIL $1: expected '$2' in: $3"
    fi
}

start_server() { # waits for the log line naming the client-auth state
    : >"$work/server.log"
    LISTEN=127.0.0.1:$port CARGO_TARGET_DIR="$repo/target" ./run.sh >>"$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 600); do
        grep -q "$1" "$work/server.log" && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.5
    done
    echo "server did not log '$1':"; cat "$work/server.log"; exit 1
}

stop_server() {
    kill "$server_pid"; wait "$server_pid" || true; server_pid=
}

git clone --quiet "$repo" "$work/clone"
cd "$work/clone"
# Build first, with no time limit, so that the waits below time the server
# start and not the compiler (slow on a busy 2-core machine).
echo "building release"
CARGO_TARGET_DIR="$repo/target" cargo build --release --locked --quiet
R="--resolve api.flaskmtlsauth.com:$port:127.0.0.1"
URL=https://api.flaskmtlsauth.com:$port
WELCOME='{"message":"Welcome to the mTLS Flask App!"}'

start_server "client auth is disabled"
check "pki/ was created" "ca.crt" "$(ls pki)"
check "untrusted server certificate fails" "(60)" "$(curl -sS $R $URL 2>&1 || true)"
check "-k is welcomed" "$WELCOME" "$(curl -sS $R $URL -k 2>&1)"
check "--cacert is welcomed" "$WELCOME" "$(curl -sS $R $URL --cacert pki/ca.crt 2>&1)"
stop_server

sed -i '/^#MTLS_ENABLED=true/s/^#//' .env
start_server "mTLS is enabled"
check "log says mTLS is enabled" "mTLS is enabled (client certificates required; trusted CAs: pki/ca.crt)" "$(cat "$work/server.log")"
check "no client certificate is refused" "alert certificate required" \
    "$(curl -sS $R $URL --cacert pki/ca.crt 2>&1 || true)"
check "client certificate is welcomed" "$WELCOME" \
    "$(curl -sS $R $URL --cacert pki/ca.crt --cert pki/client.crt --key pki/client.key 2>&1)"
check "/cert shows the client" '"rfc4514":"CN=client"' \
    "$(curl -sS $R $URL/cert --cacert pki/ca.crt --cert pki/client.crt --key pki/client.key 2>&1)"
stop_server
check "SIGTERM exits cleanly" "bye" "$(cat "$work/server.log")"

echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
