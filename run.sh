#!/usr/bin/env bash
# Builds mtls, creates a development PKI in pki/ when there is none, and
# runs the server with the settings in .env (port 5001 by default).
#
#   ./run.sh            native: runs target/release/mtls serve in the foreground
#   ./run.sh docker     builds the image and (re)starts the container `mtls`,
#                       then prints `docker logs mtls`
# Extra arguments go to `mtls serve`.
set -euo pipefail
cd "$(dirname "$0")"

if [ "${1:-}" = docker ]; then
    shift
    # Debian's client where present: another one first on PATH may want buildx.
    docker=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
    target=${MTLS_DOCKER_TARGET:-prebuilt}
    if [ "$target" = prebuilt ]; then
        scripts/build-static.sh
    fi
    [ -f pki/ca.crt ] || dist/mtls pki init
    DOCKER_BUILDKIT=1 "$docker" build --quiet --target "$target" -t mtls . >/dev/null
    "$docker" rm -f mtls >/dev/null 2>&1 || true
    "$docker" run -d --name mtls --restart unless-stopped -p 5001:5001 \
        --env-file .env -v "$PWD/pki:/app/pki:ro" --user "$(id -u):$(id -g)" \
        mtls serve "$@" >/dev/null
    sleep 1
    exec "$docker" logs mtls
fi

cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/release/mtls"

if [ ! -f pki/ca.crt ]; then
    "$bin" pki init
fi

exec "$bin" serve "$@"
