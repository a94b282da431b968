#!/usr/bin/env bash
# Builds a statically linked mtls (glibc, static-pie) into dist/mtls, for the
# Dockerfile's `prebuilt` target or for copying to a machine without Rust.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --quiet --target x86_64-unknown-linux-gnu
mkdir -p dist
cp "$target_dir/x86_64-unknown-linux-gnu/release/mtls" dist/mtls
echo "built dist/mtls ($(du -h dist/mtls | cut -f1), statically linked)"
