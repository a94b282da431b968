#!/usr/bin/env bash
# TLS configuration scan of `mtls serve` by testssl.sh (a tool we did not
# write), in `required` and `optional` client-auth modes on 127.0.0.1.
# Fails on any finding rated MEDIUM or worse, listing each one, and on any
# expected property that does not hold: TLS 1.2 and 1.3 only, forward-secret
# AEAD suites only, no renegotiation, no compression, HSTS.
#
#   bash scripts/security-scan.sh            # needs testssl.sh (Debian: testssl.sh)
#   SCAN_KEEP=dir bash scripts/security-scan.sh   # keep the JSON and logs in dir
#
# What runs: testssl -p -s -f -P -S -h -U -E (protocols, cipher categories,
# forward secrecy, server preference, server defaults, HTTP headers, every
# vulnerability check, every cipher per protocol), --sneaky, no DNS.
# Left out, because they cannot change a finding about this server:
#   -c  client simulation: which browser would pick what; informational
#       and slow (dozens of handshakes)
#   -e  each cipher: the same ciphers -E already lists per protocol
#   -g  GREASE and size-limit probing of buggy middleboxes; slow
#   --phone-out  revocation lookups on the internet (none here)
#
# testssl 3.0 (Debian's) has no --mtls option. In `required` mode it would
# see the certificate request, call the service "certificate-based
# authentication" and skip every HTTP check; so its openssl is wrapped to
# present the test client certificate (`s_client -cert -key`), and the HTTP
# checks (HSTS) run on an authenticated request. The socket-based checks
# (protocols, ciphers, vulnerabilities) need no certificate.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

testssl=$(command -v testssl || command -v testssl.sh || true)
if [ -z "$testssl" ]; then
    echo "SKIPPED: testssl.sh is not installed (apt-get install testssl.sh); the TLS scan did not run"
    exit 0
fi
command -v python3 >/dev/null || { echo "security-scan: python3 is needed to read testssl's JSON"; exit 1; }

cargo build --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/debug/mtls"
work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    if [ -n "${SCAN_KEEP:-}" ]; then mkdir -p "$SCAN_KEEP" && cp -r "$work"/. "$SCAN_KEEP"/; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$bin" pki init --dir "$work/pki" >/dev/null
pki=$work/pki

cat >"$work/openssl-with-client-cert" <<EOF
#!/bin/sh
# openssl for testssl: s_client presents the test client certificate.
if [ "\$1" = s_client ]; then
    shift
    exec openssl s_client -cert "$pki/client.crt" -key "$pki/client.key" "\$@"
fi
exec openssl "\$@"
EOF
chmod 755 "$work/openssl-with-client-cert"

# Findings about the development certificate, not about the server: the
# scan uses `mtls pki init`'s certificate, which has no CRL or OCSP address
# (a production certificate from a CA has them).
ignored="cert_revocation"

start_server() { # start_server MODE: on 127.0.0.1, a free port, until stop_server
    "$bin" serve --listen 127.0.0.1:0 --admin-listen off --watch false \
        --cert "$pki/server.crt" --key "$pki/server.key" --client-ca "$pki/ca.crt" \
        --client-auth "$1" >"$work/server-$1.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do
        port=$(sed -n 's/.*listening on https:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/server-$1.log")
        [ -n "$port" ] && return 0
        sleep 0.1
    done
    echo "mtls serve --client-auth $1 did not start:"; cat "$work/server-$1.log"; exit 1
}

stop_server() {
    kill "$server_pid"; wait "$server_pid" || true; server_pid=
}

scan() { # scan MODE [testssl options]: writes $work/MODE.json and MODE.txt
    local mode=$1; shift
    start_server "$mode"
    local started=$SECONDS
    # testssl exits non-zero when it has findings: judged below, not here.
    "$testssl" --quiet --color 0 --warnings off --sneaky --nodns none --ip 127.0.0.1 \
        --connect-timeout 5 --openssl-timeout 10 --add-ca "$pki/ca.crt" \
        --jsonfile "$work/$mode.json" "$@" \
        -p -s -f -P -S -h -U -E \
        "https://api.flaskmtlsauth.com:$port/" >"$work/$mode.txt" 2>&1 || true
    echo "testssl against --client-auth $mode took $((SECONDS - started)) s"
    stop_server
}

scan required --openssl "$work/openssl-with-client-cert"
scan optional

python3 - "$work" "$ignored" <<'PY'
import json, sys

work, ignored = sys.argv[1], set(sys.argv[2].split())
RANK = {"CRITICAL": 4, "HIGH": 3, "MEDIUM": 2}
problems = []

# What must hold, whatever testssl's rating: id -> test of its finding.
EXPECTED = {
    "SSLv2": lambda f: f.startswith("not offered"),
    "SSLv3": lambda f: f.startswith("not offered"),
    "TLS1": lambda f: f.startswith("not offered"),
    "TLS1_1": lambda f: f.startswith("not offered"),
    "TLS1_2": lambda f: f.startswith("offered"),
    "TLS1_3": lambda f: f.startswith("offered"),
    "cipherlist_NULL": lambda f: f.startswith("not offered"),
    "cipherlist_aNULL": lambda f: f.startswith("not offered"),
    "cipherlist_EXPORT": lambda f: f.startswith("not offered"),
    "cipherlist_LOW": lambda f: f.startswith("not offered"),
    "cipherlist_3DES_IDEA": lambda f: f.startswith("not offered"),
    "cipherlist_AVERAGE": lambda f: f.startswith("not offered"),
    "cipherlist_STRONG": lambda f: f.startswith("offered"),
    "PFS": lambda f: f.startswith("offered"),  # `FS` in testssl 3.2
    "cipher_order": lambda f: f.startswith("server"),
    "secure_renego": lambda f: f.startswith("supported"),
    # rustls ignores a renegotiation attempt: testssl waits, then says
    # "likely not vulnerable (timed out)".
    "secure_client_renego": lambda f: "not vulnerable" in f,
    "CRIME_TLS": lambda f: f.startswith("not vulnerable"),
    "BREACH": lambda f: f.startswith("not vulnerable") or "no HTTP compression" in f,
    "HSTS_time": lambda f: "31536000" in f,
}

for mode in ("required", "optional"):
    with open(f"{work}/{mode}.json") as handle:
        findings = json.load(handle)
    by_id = {}
    for item in findings:
        by_id.setdefault(item["id"], item)
    print(f"\n== testssl findings, --client-auth {mode} ({len(findings)} in all)")
    print(f"{'severity':9} {'id':32} finding")
    for item in findings:
        severity, ident, finding = item["severity"], item["id"], item["finding"]
        if severity in ("OK", "INFO", "DEBUG"):
            continue
        note = "  [ignored: the development certificate]" if ident in ignored else ""
        print(f"{severity:9} {ident:32} {finding[:100]}{note}")
        if RANK.get(severity, 0) >= RANK["MEDIUM"] and ident not in ignored:
            problems.append(f"{mode}: {severity} {ident}: {finding}")
    # The cipher suites -E found, per protocol.
    suites = sorted({item["finding"].split()[-1] for item in findings if item["id"].startswith("cipher-tls1_")})
    print(f"cipher suites offered: {', '.join(suites) or 'none found'}")
    for ident, holds in EXPECTED.items():
        item = by_id.get(ident) or by_id.get(ident.lstrip("P"))
        if item is None:
            problems.append(f"{mode}: testssl reported no `{ident}`")
        elif not holds(item["finding"]):
            problems.append(f"{mode}: {ident} is `{item['finding']}`")
    # Every suite offered is AEAD with an ephemeral key exchange.
    for item in findings:
        if item["id"].startswith("cipher-tls1_"):
            text = item["finding"]
            tls13 = item["id"].startswith("cipher-tls1_3")
            if not (tls13 or ("ECDH" in text and ("GCM" in text or "CHACHA20" in text or "POLY1305" in text))):
                problems.append(f"{mode}: suite without forward secrecy or AEAD: {text}")

if problems:
    print(f"\nFAILED: {len(problems)} finding(s) rated MEDIUM or worse, or expectations not met:")
    for problem in problems:
        print(f"  - {problem}")
    sys.exit(1)
print("\nTLS scan: no finding rated MEDIUM or worse; TLS 1.2/1.3 only, forward-secret AEAD suites only, no renegotiation, no compression, HSTS set")
PY
