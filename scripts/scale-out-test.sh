#!/usr/bin/env bash
# Scale-out end to end, on loopback: HAProxy in TCP mode with send-proxy-v2
# in front of three `mtls serve` replicas that share a session ticket key.
# Checks that requests spread over all three, that each replica logs the
# real client address (the client binds 127.0.0.2; HAProxy connects from
# 127.0.0.1), that a session resumes on another replica, and that stopping a
# replica with SIGTERM under load loses no request.
# Installs haproxy with apt-get when CI=true or --install; otherwise says
# SKIPPED when it is missing.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
base=${SCALE_OUT_PORT:-15201}

if ! command -v haproxy >/dev/null || ! command -v openssl >/dev/null; then
    if [ "${CI:-}" = true ] || [ "${1:-}" = --install ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy openssl) \
            >/tmp/scale-out-install.log 2>&1 || true
    fi
    if ! command -v haproxy >/dev/null; then
        echo "SKIPPED: scale-out test: haproxy is not installed (run with --install)"
        exit 0
    fi
fi

echo "building release"
cargo build --release --locked --quiet
bin="$repo/${CARGO_TARGET_DIR:-target}/release/mtls"
[ -x "$bin" ] || bin="${CARGO_TARGET_DIR:-target}/release/mtls"

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
# Access-log lines are batched (written within 100 ms): wait until COUNT
# lines match PATTERN in the replicas' logs, for 3 s at most.
wait_log() { # wait_log PATTERN COUNT
    for _ in $(seq 30); do
        [ "$(cat "$work"/r*.log | grep -c -- "$1" || true)" -ge "$2" ] && return 0
        sleep 0.1
    done
}
check() { # check NAME CONDITION-RESULT(0/1) DETAIL
    if [ "$2" = 0 ]; then
        passed=$((passed + 1)); echo "ok   $1"
    else
        failed=$((failed + 1)); echo "FAIL $1: $3"
    fi
}

"$bin" pki init --dir "$work/pki" >/dev/null
(umask 077; head -c 32 /dev/urandom >"$work/tickets.key")
front=$base
for n in 1 2 3; do
    "$bin" serve --listen "127.0.0.1:$((base + n))" --admin-listen "127.0.0.1:$((base + 10 + n))" \
        --cert "$work/pki/server.crt" --key "$work/pki/server.key" --client-ca "$work/pki/ca.crt" \
        --client-auth required --proxy-protocol --trusted-proxy 127.0.0.1 \
        --session-ticket-key-file "$work/tickets.key" --watch false \
        >"$work/r$n.log" 2>&1 &
    pids+=($!)
    eval "pid$n=$!"
done
for n in 1 2 3; do
    for _ in $(seq 100); do grep -q "listening on" "$work/r$n.log" && break; sleep 0.1; done
done

cat >"$work/haproxy.cfg" <<CFG
global
    maxconn 2000
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    retries 3
    option redispatch
frontend mtls_public
    bind 127.0.0.1:$front
    default_backend mtls_replicas
backend mtls_replicas
    balance roundrobin
    option httpchk GET /readyz
    default-server inter 500ms fall 1 rise 1
    server mtls1 127.0.0.1:$((base + 1)) send-proxy-v2 check port $((base + 11))
    server mtls2 127.0.0.1:$((base + 2)) send-proxy-v2 check port $((base + 12))
    server mtls3 127.0.0.1:$((base + 3)) send-proxy-v2 check port $((base + 13))
CFG
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
pids+=($!)

R="--resolve api.flaskmtlsauth.com:$front:127.0.0.1"
URL="https://api.flaskmtlsauth.com:$front"
CLIENT=(--interface 127.0.0.2 --cacert "$work/pki/ca.crt" --cert "$work/pki/client.crt" --key "$work/pki/client.key")
for _ in $(seq 50); do curl -s $R "$URL/healthz" "${CLIENT[@]}" >/dev/null 2>&1 && break; sleep 0.2; done
sleep 1 # let every health check pass once

ok=0
for i in $(seq 9); do
    body=$(curl -sS --max-time 5 $R "$URL/spread-$i" "${CLIENT[@]}" -o /dev/null -w '%{http_code}' 2>&1 || true)
    [ "$body" = 404 ] && ok=$((ok + 1))
done
check "9 requests through HAProxy answered" "$([ $ok = 9 ] && echo 0 || echo 1)" "$ok of 9"
wait_log 'path="/spread-' 9
for n in 1 2 3; do
    count=$(grep -c 'path="/spread-' "$work/r$n.log" || true)
    check "replica $n served some ($count)" "$([ "$count" -ge 1 ] && echo 0 || echo 1)" "none"
done
real=$(grep -h 'path="/spread-' "$work"/r*.log | grep -c 'peer=127.0.0.2:' || true)
check "access logs show the real client address 127.0.0.2" "$([ "$real" = 9 ] && echo 0 || echo 1)" "$real of 9 lines"

request() { printf 'GET %s HTTP/1.1\r\nHost: api.flaskmtlsauth.com\r\nConnection: close\r\n\r\n' "$1"; }
s_client() { # s_client PATH EXTRA...
    local path=$1; shift
    request "$path" | timeout 10 openssl s_client -connect "127.0.0.1:$front" -servername api.flaskmtlsauth.com \
        -CAfile "$work/pki/ca.crt" -cert "$work/pki/client.crt" -key "$work/pki/client.key" \
        -ign_eof "$@" 2>&1 || true
}
s_client /first-session -sess_out "$work/session.pem" >"$work/first.txt"
s_client /resumed-session -sess_in "$work/session.pem" >"$work/second.txt"
check "a session resumes through HAProxy" "$(grep -q '^Reused, TLSv1.3' "$work/second.txt" && echo 0 || echo 1)" \
    "$(grep -E '^(New|Reused)' "$work/second.txt" | head -1)"
wait_log 'path="/first-session"' 1
wait_log 'path="/resumed-session"' 1
first=$(grep -l 'path="/first-session"' "$work"/r*.log || true)
second=$(grep -l 'path="/resumed-session"' "$work"/r*.log || true)
check "the resumed session landed on another replica" \
    "$([ -n "$first" ] && [ -n "$second" ] && [ "$first" != "$second" ] && echo 0 || echo 1)" "first $first, second $second"
check "the resumed request still carries the client identity" \
    "$(grep 'path="/resumed-session"' "$work"/r*.log | grep -q 'client_cn="client"' && echo 0 || echo 1)" "no client_cn"

# SIGTERM a replica in the middle of a request loop.
lost=0
for i in $(seq 30); do
    [ "$i" = 10 ] && kill -TERM "$pid1"
    code=$(curl -s --max-time 5 $R "$URL/healthz" "${CLIENT[@]}" -o /dev/null -w '%{http_code}' || true)
    [ "$code" = 200 ] || lost=$((lost + 1))
    sleep 0.05
done
check "SIGTERM on one replica under load loses no request" "$([ $lost = 0 ] && echo 0 || echo 1)" "$lost of 30 failed"
check "the stopped replica exited cleanly" "$(grep -q 'bye' "$work/r1.log" && echo 0 || echo 1)" "no shutdown line"

echo "scale-out: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
