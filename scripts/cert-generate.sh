#!/usr/bin/env bash
# Creates the development PKI (pki/ca.crt, server.crt, client.crt and keys),
# like the Flask demo's cert-generate.sh. Extra arguments go to `mtls pki init`,
# e.g. --force to replace existing files or --client alice to name the client.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --quiet
exec "${CARGO_TARGET_DIR:-target}/release/mtls" pki init "$@"
