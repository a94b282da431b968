#!/usr/bin/env bash
# Builds mtls, creates a development PKI in pki/ when there is none, and
# runs the server with the settings in .env (port 5001 by default).
set -euo pipefail
cd "$(dirname "$0")"

cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/release/mtls"

if [ ! -f pki/ca.crt ]; then
    "$bin" pki init
fi

exec "$bin" serve "$@"
