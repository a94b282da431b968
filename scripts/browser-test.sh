#!/usr/bin/env bash
# A real browser against `mtls serve`: headless Chromium with the dev PKI's
# client.p12 imported into its NSS database, the test CA trusted there, and
# a managed policy that picks the certificate without a dialog.
#
#   required mode, with the certificate:  /cert shows CN=client (+ screenshot)
#   required mode, without it:            the handshake is refused
#   optional mode, without it:            the 403 explanation page (+ screenshot)
#   optional mode, with it:               /cert shows CN=client
#
# Needs chromium and pk12util/certutil (Debian: chromium, libnss3-tools);
# with --install or CI=true they are installed with apt-get when missing,
# otherwise the test says SKIPPED and exits 0. Writes a policy file under
# /etc/chromium/policies/managed/ for the run (so it needs root) and removes
# it afterwards. Screenshots go to target/browser-test/ (or
# $BROWSER_TEST_OUT).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

install=false
[ "${CI:-}" = true ] && install=true
for arg in "$@"; do
    case $arg in
        --install) install=true ;;
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (usage: $0 [--install])" >&2; exit 2 ;;
    esac
done

find_chromium() { command -v chromium || command -v chromium-browser || true; }
tools_present() {
    [ -n "$(find_chromium)" ] && command -v pk12util >/dev/null && command -v certutil >/dev/null
}
if ! tools_present; then
    if ! $install; then
        echo "SKIPPED: browser test: chromium/pk12util not installed (install them with: apt-get install -y chromium libnss3-tools, or run $0 --install)"
        exit 0
    fi
    sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing chromium libnss3-tools"
    log=/tmp/browser-test-install.log
    if ! { $sudo apt-get update -qq &&
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium libnss3-tools; } >"$log" 2>&1; then
        echo "SKIPPED: browser test: could not install chromium libnss3-tools (see $log)"
        exit 0
    fi
fi
chromium=$(find_chromium)

policy_dir=/etc/chromium/policies/managed
created_dirs=() # removed again afterwards, deepest first
dir=$policy_dir
while [ ! -d "$dir" ]; do
    created_dirs+=("$dir")
    dir=$(dirname "$dir")
done
if ! { mkdir -p "$policy_dir" && [ -w "$policy_dir" ]; } 2>/dev/null; then
    echo "SKIPPED: browser test: cannot write a Chromium policy to $policy_dir (run as root)"
    exit 0
fi

echo "building release (cargo build --release --locked)"
cargo build --release --locked --quiet
target_dir=${CARGO_TARGET_DIR:-target}
mtls=$(cd "$target_dir" && pwd)/release/mtls
out=${BROWSER_TEST_OUT:-$repo/target/browser-test}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/*.png "$out"/*.html

work=$(mktemp -d)
policy_file=$policy_dir/mtls-browser-test-$$.json
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    fi
    rm -f "$policy_file"
    for dir in "${created_dirs[@]}"; do rmdir "$dir" 2>/dev/null || break; done
    rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
# Access-log lines are batched (written within 100 ms): wait for PATTERN in
# the server's log, for 3 s at most.
wait_log() { # wait_log PATTERN
    for _ in $(seq 30); do
        grep -q -- "$1" "$work/server.log" && return 0
        sleep 0.1
    done
}
check() { # check NAME EXPECTED ACTUAL
    if [[ "$3" == *"$2"* ]]; then
        passed=$((passed + 1)); echo "ok   $1"
    else
        failed=$((failed + 1)); echo "FAIL $1: expected '$2' in: ${3:0:2000}"
    fi
}
png() { # png FILE: "PNG WIDTHxHEIGHT" for a PNG image
    [ -s "$1" ] && [ "$(head -c 4 "$1" | tail -c 3)" = PNG ] || { echo "no PNG at $1"; return; }
    echo "PNG $(od -An -tu1 -j16 -N8 "$1" | awk '{print $3*256+$4 "x" $7*256+$8}')"
}
check_absent() { # check_absent NAME UNEXPECTED ACTUAL
    if [[ "$3" != *"$2"* ]]; then
        passed=$((passed + 1)); echo "ok   $1"
    else
        failed=$((failed + 1)); echo "FAIL $1: did not expect '$2' in: ${3:0:2000}"
    fi
}

HOST=api.flaskmtlsauth.com

# The PKI, with a generated .p12 password that goes straight into a file
# for pk12util and is never shown.
mkdir "$work/pki"
(cd "$work" && "$mtls" pki init --dir pki >"$work/pki-init.out")
grep -v '^p12 password for ' "$work/pki-init.out"
(umask 077 && sed -n 's/^p12 password for client\.p12: //p' "$work/pki-init.out" >"$work/p12-password")
rm -f "$work/pki-init.out"
check "pki init printed the client.p12 password once" "[1]" "[$(wc -l <"$work/p12-password")]"

# Two browser homes. Chromium on Linux keeps certificates in $HOME/.pki/nssdb;
# both trust the test CA, only "with-cert" holds the client's key.
make_home() { # make_home NAME [p12]
    local home=$work/$1 db
    db=sql:$work/$1/.pki/nssdb
    mkdir -p "$home/.pki/nssdb" "$home/profile"
    certutil -N -d "$db" --empty-password
    certutil -A -d "$db" -n "mtls development CA" -t "C,," -i "$work/pki/ca.crt"
    if [ "${2:-}" = p12 ]; then
        pk12util -d "$db" -i "$work/pki/client.p12" -w "$work/p12-password" >/dev/null
    fi
    certutil -L -d "$db"
}
make_home with-cert p12 >"$work/nss-with-cert.txt"
make_home without-cert >"$work/nss-without-cert.txt"
check "pk12util imported the client certificate with its key (u,u,u)" "u,u,u" \
    "$(cat "$work/nss-with-cert.txt")"
check "the test CA is trusted in the NSS database (C,,)" "C,," "$(cat "$work/nss-with-cert.txt")"
check_absent "the second profile holds no client certificate" "u,u,u" \
    "$(cat "$work/nss-without-cert.txt")"

start_server() { # start_server MODE; sets server_pid and port
    : >"$work/server.log"
    (cd "$work" && exec env -i PATH="$PATH" HOME="$work" "$mtls" serve \
        --listen 127.0.0.1:0 --admin-listen off --client-auth "$1" \
        --cert pki/server.crt --key pki/server.key --client-ca pki/ca.crt) \
        >"$work/server.log" 2>&1 &
    server_pid=$!
    port=
    for _ in $(seq 100); do
        port=$(sed -n 's|.*listening on https://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$work/server.log" | head -1)
        [ -n "$port" ] && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "FAIL mtls serve did not start:"; cat "$work/server.log"
        echo "browser-test: $passed passed, $((failed + 1)) failed"
        exit 1
    fi
    # Pick the certificate for this server without asking.
    cat >"$policy_file" <<EOF
{"AutoSelectCertificateForUrls": ["{\"pattern\":\"https://$HOST:$port\",\"filter\":{\"ISSUER\":{\"CN\":\"mtls development CA\"}}}"]}
EOF
    chmod 644 "$policy_file"
}

stop_server() {
    kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
    server_pid=
}

browse() { # browse HOME ACTION PATH: --dump-dom prints the DOM, --screenshot=FILE
    local home=$work/$1
    HOME=$home timeout 90 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic \
        --no-first-run --disable-background-networking --disable-component-update \
        --disable-sync --user-data-dir="$home/profile" \
        --host-resolver-rules="MAP $HOST 127.0.0.1" --window-size=1024,1100 \
        "$2" "https://$HOST:$port$3" 2>>"$work/chromium.log" || true
}

start_server required
echo "mtls serve --client-auth required on https://$HOST:$port (mapped to 127.0.0.1)"
dom=$(browse with-cert --dump-dom /cert)
check "required: /cert page title" "<title>Your client certificate</title>" "$dom"
check "required: /cert shows the client's CN" "CN=client" "$dom"
check "required: /cert shows the issuer" "CN=mtls development CA" "$dom"
check "required: served over TLS 1.3" "TLSv1.3" "$dom"
echo "$dom" >"$out/required-cert.html"
browse with-cert "--screenshot=$out/required-cert.png" /cert >/dev/null
check "required: screenshot taken" "PNG " "$(png "$out/required-cert.png")"
wait_log 'client_cn="client"'
check "required: the access log names the client" 'client_cn="client"' "$(cat "$work/server.log")"
dom=$(browse without-cert --dump-dom /cert)
check_absent "required: a profile without the certificate gets no page" "CN=client" "$dom"
check "required: the server refused that handshake" \
    "TLS handshake failed: client certificate refused" "$(grep 'reason=no_certificate' "$work/server.log" || true)"
stop_server

start_server optional
echo "mtls serve --client-auth optional on https://$HOST:$port (mapped to 127.0.0.1)"
dom=$(browse without-cert --dump-dom /cert)
check "optional: no certificate gets the 403 page" "<title>Access denied</title>" "$dom"
check "optional: the page says why" "Client certificate required: no client certificate was presented" "$dom"
check "optional: the page says what to do" "What you can do" "$dom"
check "optional: the page names the reason code" "no_certificate" "$dom"
echo "$dom" >"$out/optional-403.html"
browse without-cert "--screenshot=$out/optional-403.png" /cert >/dev/null
check "optional: screenshot taken" "PNG " "$(png "$out/optional-403.png")"
wait_log 'status=403'
check "optional: the access log shows the 403 without a certificate" \
    'client_cn="-" client_cert=none method=GET path="/cert"' \
    "$(grep 'status=403' "$work/server.log" || true)"
dom=$(browse with-cert --dump-dom /cert)
check "optional: with the certificate /cert shows the client's CN" "CN=client" "$dom"
stop_server

if [ "$failed" -gt 0 ]; then
    echo "--- server log"; cat "$work/server.log"
    echo "--- chromium log (last 40 lines)"; tail -40 "$work/chromium.log"
fi
echo "screenshots: $out/required-cert.png $out/optional-403.png"
echo "browser-test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
