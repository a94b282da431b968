#!/usr/bin/env bash
# Docker end to end: builds the `prebuilt` image (no registry needed), runs it
# with a fresh PKI and a copy of .env, checks the welcome JSON and the health
# check, enables mTLS in the copy of .env, restarts, checks that a request
# without a client certificate fails and one with it succeeds; then does the
# same start with docker-compose when it is installed. Removes what it started.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
docker=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
# docker-compose v1 builds with the `docker` first on PATH: use the same one.
export PATH="$(dirname "$docker"):$PATH"
port=${DOCKER_SMOKE_PORT:-15001}
name=mtls-smoke
image=mtls:smoke
work=$(mktemp -d)
compose_up=

cleanup() {
    "$docker" rm -f "$name" >/dev/null 2>&1 || true
    if [ -n "$compose_up" ]; then
        (cd "$work" && docker-compose -p mtls-smoke down >/dev/null 2>&1) || true
    fi
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

wait_for_log() { # wait_for_log CONTAINER TEXT
    for _ in $(seq 100); do
        "$docker" logs "$1" 2>&1 | grep -q "$2" && return 0
        sleep 0.2
    done
    echo "container $1 did not log '$2':"; "$docker" logs "$1" 2>&1; return 1
}

start() { # start LOG_LINE: (re)starts the container with $work/.env
    "$docker" rm -f "$name" >/dev/null 2>&1 || true
    "$docker" run -d --name "$name" -p "127.0.0.1:$port:5001" \
        --env-file "$work/.env" -v "$work/pki:/app/pki:ro" --user "$(id -u):$(id -g)" \
        "$image" >/dev/null
    wait_for_log "$name" "$1"
}

scripts/build-static.sh
dist/mtls pki init --dir "$work/pki" >/dev/null
cp .env "$work/.env"
DOCKER_BUILDKIT=1 "$docker" build --quiet --target prebuilt -t "$image" . >/dev/null

size=$("$docker" image inspect "$image" --format '{{.Size}}')
check "image is a few MB ($((size / 1000000)) MB)" "yes" "$([ "$size" -lt 20000000 ] && echo yes)"
check "image runs as a non-root user" "10001:10001" "$("$docker" image inspect "$image" --format '{{.Config.User}}')"

R="--resolve api.flaskmtlsauth.com:$port:127.0.0.1"
URL=https://api.flaskmtlsauth.com:$port
WELCOME='{"message":"Welcome to the mTLS Flask App!"}'
CERT="--cert $work/pki/client.crt --key $work/pki/client.key"

# As the image's own user (10001) the 0600 key of another owner is unreadable:
# the container must stop with a message that says how to fix it.
"$docker" run --name "$name" -v "$work/pki:/app/pki:ro" "$image" >/dev/null 2>&1 || true
check "unreadable key: exit status 2" "2" "$("$docker" inspect --format '{{.State.ExitCode}}' "$name")"
check "unreadable key: the fix is named" "docker run --user" "$("$docker" logs "$name" 2>&1)"

start "client auth is disabled"
check "welcome with --cacert" "$WELCOME" "$(curl -sS $R $URL --cacert "$work/pki/ca.crt" 2>&1)"
health=
for _ in $(seq 60); do
    health=$("$docker" inspect --format '{{.State.Health.Status}}' "$name")
    [ "$health" = healthy ] && break
    sleep 0.5
done
check "HEALTHCHECK (mtls health) reports healthy" "healthy" "$health"

sed -i '/^#MTLS_ENABLED=true/s/^#//' "$work/.env"
start "mTLS is enabled"
check "log shows the mTLS state" "mTLS is enabled (client certificates required" "$("$docker" logs "$name" 2>&1)"
check "no client certificate is refused" "alert certificate required" \
    "$(curl -sS $R $URL --cacert "$work/pki/ca.crt" 2>&1 || true)"
check "client certificate is welcomed" "$WELCOME" \
    "$(curl -sS $R $URL --cacert "$work/pki/ca.crt" $CERT 2>&1)"
"$docker" stop "$name" >/dev/null
check "docker stop exits cleanly" "bye" "$("$docker" logs "$name" 2>&1)"
"$docker" rm -f "$name" >/dev/null

if command -v docker-compose >/dev/null && ! "$docker" ps -a --format '{{.Names}}' | grep -qx mtls; then
    cp -r docker-compose.yml Dockerfile .dockerignore dist "$work/"
    compose_up=yes
    (cd "$work" && MTLS_DOCKER_TARGET=prebuilt MTLS_UID=$(id -u) MTLS_GID=$(id -g) \
        DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1 \
        docker-compose -p mtls-smoke up -d --build >/dev/null 2>&1)
    wait_for_log mtls "mTLS is enabled"
    R5="--resolve api.flaskmtlsauth.com:5001:127.0.0.1"
    check "docker-compose: client certificate is welcomed" "$WELCOME" \
        "$(curl -sS $R5 https://api.flaskmtlsauth.com:5001 --cacert "$work/pki/ca.crt" $CERT 2>&1)"
else
    echo "SKIPPED docker-compose check (docker-compose missing, or a container named mtls exists)"
fi

echo "docker-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
