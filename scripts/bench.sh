#!/usr/bin/env bash
# Benchmark of `mtls serve --client-auth required` against nginx
# (ssl_verify_client on) and a bare hyper + tokio-rustls server, in one run,
# with the same certificates and the same load (docs/benchmarks.md).
#
# Every server runs on one core (taskset -c $BENCH_SERVER_CPU), the load
# generator on another ($BENCH_CLIENT_CPU). For each repeat and each server:
# start-up time, then full handshakes, resumed handshakes and keep-alive
# requests over HTTP/1.1 and over HTTP/2 (each after a warm-up, for
# $BENCH_SECONDS), then memory with $BENCH_IDLE_CONNS idle connections over
# HTTP/1.1 and, after a restart, over HTTP/2. The table of medians goes to
# standard output and to target/bench/results.md (and results.json).
#
# Settings (environment):
#   BENCH_SECONDS      measured seconds per phase (10)
#   BENCH_WARMUP       warm-up seconds before each phase (2)
#   BENCH_REPEATS      repeats; medians are reported (3)
#   BENCH_CONNS        concurrent connections of the load generator (32)
#   BENCH_IDLE_CONNS   idle connections for the memory phase (10000)
#   BENCH_HOLD_SECONDS seconds the idle connections are held after measuring (5)
#   BENCH_SERVERS      servers to run ("mtls nginx bare bare-aws-lc-rs")
#   BENCH_QUICK=1      sanity run: 2 s phases, 1 s warm-up, 1 repeat, 1000 idle
#   BENCH_SERVER_CPU / BENCH_CLIENT_CPU   cores (0 / 1)
#   BENCH_PORT         loopback port the servers listen on (15443)
#   BENCH_SERVER_LOG   where the servers' request logs go (/dev/null)
#   BENCH_MTLS_PROVIDER  crypto provider mtls is built with (read from src/tls/mod.rs)
#   BENCH_OUT          result directory (target/bench)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

if [ "${BENCH_QUICK:-0}" = 1 ]; then
    : "${BENCH_SECONDS:=2}" "${BENCH_WARMUP:=1}" "${BENCH_REPEATS:=1}"
    : "${BENCH_IDLE_CONNS:=1000}" "${BENCH_HOLD_SECONDS:=1}"
    criterion_args=(--warm-up-time 0.5 --measurement-time 1 --sample-size 20)
else
    criterion_args=(--warm-up-time 2 --measurement-time 5)
fi
seconds=${BENCH_SECONDS:-10}
warmup=${BENCH_WARMUP:-2}
repeats=${BENCH_REPEATS:-3}
conns=${BENCH_CONNS:-32}
idle=${BENCH_IDLE_CONNS:-10000}
hold_seconds=${BENCH_HOLD_SECONDS:-5}
servers=${BENCH_SERVERS:-mtls nginx bare bare-aws-lc-rs}
server_cpu=${BENCH_SERVER_CPU:-0}
client_cpu=${BENCH_CLIENT_CPU:-1}
port=${BENCH_PORT:-15443}
server_log=${BENCH_SERVER_LOG:-/dev/null}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
out=${BENCH_OUT:-$target_dir/bench}
sni=api.flaskmtlsauth.com
# The crypto provider mtls is built with: its floor is the one that counts,
# and the bare server with the same provider is the one mtls is divided by.
if grep -q 'aws_lc_rs::default_provider' src/tls/mod.rs; then mtls_provider=aws-lc-rs; else mtls_provider=ring; fi
mtls_provider=${BENCH_MTLS_PROVIDER:-$mtls_provider}

say() { echo "== $*" >&2; }
die() { echo "bench.sh: $*" >&2; exit 1; }

# --- prerequisites -----------------------------------------------------------
command -v taskset >/dev/null || die "taskset is missing (apt-get install util-linux)"
command -v python3 >/dev/null || die "python3 is missing (it writes the table)"
cores=$(nproc)
[ "$cores" -gt "$server_cpu" ] && [ "$cores" -gt "$client_cpu" ] && [ "$server_cpu" != "$client_cpu" ] ||
    die "needs two distinct cores (BENCH_SERVER_CPU=$server_cpu, BENCH_CLIENT_CPU=$client_cpu, nproc=$cores)"
if [[ " $servers " == *" nginx "* ]] && ! command -v nginx >/dev/null; then
    say "installing nginx (Debian)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx) >/tmp/bench-nginx-install.log 2>&1 ||
        die "could not install nginx (see /tmp/bench-nginx-install.log); or leave it out: BENCH_SERVERS='mtls bare'"
fi
# Both the servers and the load generator hold $idle connections.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -gt $((idle + 1000)) ] ||
    die "the open-file limit $(ulimit -n) is too low for $idle idle connections; lower BENCH_IDLE_CONNS or raise ulimit -Hn"

# --- build -------------------------------------------------------------------
# Two cargo runs on purpose: built together, the mtls binary would get the
# bench crate's extra rustls features (aws-lc-rs) and not be the one users get.
say "building release (mtls, then the bench tools)"
cargo build --release --locked --quiet
cargo build --release --locked --quiet -p mtls-bench --bins
cargo bench --locked --quiet -p mtls-bench --bench crypto_floor --no-run
mtls_bin=$target_dir/release/mtls
loadgen_bin=$target_dir/release/loadgen
bare_bin=$target_dir/release/bare

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
rm -rf "$out"
mkdir -p "$out/runs"

"$mtls_bin" pki init --dir "$work/pki" >/dev/null
pki=$work/pki

# --- the crypto floor ----------------------------------------------------------
say "crypto floor (criterion, on core $server_cpu)"
taskset -c "$server_cpu" cargo bench --locked --quiet -p mtls-bench --bench crypto_floor -- \
    "${criterion_args[@]}" >"$out/crypto_floor.txt" 2>&1 ||
    { cat "$out/crypto_floor.txt" >&2; die "the crypto floor benchmark failed"; }

# --- the servers ---------------------------------------------------------------
write_nginx_conf() {
    mkdir -p "$work/nginx/tmp"
    chmod 777 "$work/nginx/tmp"
    cat >"$work/nginx/nginx.conf" <<EOF
# Written by scripts/bench.sh: one worker on one core, mTLS required.
worker_processes 1;
daemon off;
master_process on;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
worker_rlimit_nofile $((idle + 2048));
events {
    worker_connections $((idle + 1024));
}
http {
    # Batched like mtls's access log (32 KiB or 100 ms, src/logging.rs),
    # so both pay the same for their log lines.
    access_log $server_log combined buffer=32k flush=100ms;
    client_body_temp_path $work/nginx/tmp/body;
    proxy_temp_path $work/nginx/tmp/proxy;
    fastcgi_temp_path $work/nginx/tmp/fastcgi;
    uwsgi_temp_path $work/nginx/tmp/uwsgi;
    scgi_temp_path $work/nginx/tmp/scgi;
    keepalive_timeout 300s;
    keepalive_requests 1000000000;
    server {
        # h2 for the HTTP/2 phases (ALPN h2, as mtls and the bare server
        # offer); the HTTP/1.1 phases offer only http/1.1.
        listen 127.0.0.1:$port ssl http2;
        server_name $sni;
        ssl_protocols TLSv1.2 TLSv1.3;
        # The suite mtls and the bare server choose (AES-128-GCM, SHA-256
        # key schedule), by the server's order as they do.
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
        ssl_prefer_server_ciphers on;
        ssl_certificate $pki/server.crt;
        ssl_certificate_key $pki/server.key;
        ssl_client_certificate $pki/ca.crt;
        ssl_verify_client on;
        ssl_session_cache shared:SSL:64m;
        ssl_session_tickets on;
        ssl_session_timeout 1h;
        location / {
            default_type application/json;
            return 200 '{"message":"Welcome to the mTLS Flask App!"}\n';
        }
    }
}
EOF
}

# Sets `cmd` to the command line of one server (without taskset).
server_command() {
    case "$1" in
    mtls)
        # Defaults otherwise; the header-read timeout (30 s) would close the
        # idle connections of the memory phase before they are measured.
        cmd=("$mtls_bin" serve --listen "127.0.0.1:$port" --cert "$pki/server.crt"
            --key "$pki/server.key" --client-ca "$pki/ca.crt" --client-auth required
            --admin-listen off --max-connections $((idle + 1024)) --header-read-timeout 300s)
        ;;
    nginx) cmd=(nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log") ;;
    bare) cmd=("$bare_bin" --listen "127.0.0.1:$port" --cert "$pki/server.crt" --key "$pki/server.key"
        --client-ca "$pki/ca.crt" --provider ring) ;;
    bare-aws-lc-rs) cmd=("$bare_bin" --listen "127.0.0.1:$port" --cert "$pki/server.crt"
        --key "$pki/server.key" --client-ca "$pki/ca.crt" --provider aws-lc-rs) ;;
    *) die "unknown server '$1' in BENCH_SERVERS (mtls, nginx, bare, bare-aws-lc-rs)" ;;
    esac
}

loadgen() { # loadgen RESULT-FILE ARGS...
    local result=$1
    shift
    taskset -c "$client_cpu" "$loadgen_bin" --addr "127.0.0.1:$port" --sni "$sni" \
        --ca "$pki/ca.crt" --cert "$pki/client.crt" --key "$pki/client.key" \
        --x25519-only "$@" >"$result" 2>>"$out/loadgen.log" ||
        die "the load generator failed ($*); see $out/loadgen.log and $result"
}

hold() { # hold RESULT-FILE raw|h2: memory per idle connection
    loadgen "$1" --mode hold --http "$2" --label "$server" --hold "$idle" --connections 64 \
        --duration "$hold_seconds" --timeout 60 "${pid_args[@]}"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

start_server() { # sets server_pids, and pid_args for the load generator
    local name=$1
    server_command "$name"
    port_free || die "something already listens on 127.0.0.1:$port; set BENCH_PORT"
    taskset -c "$server_cpu" "${cmd[@]}" >>"$server_log" 2>&1 </dev/null &
    local main=$!
    pids+=("$main")
    for _ in $(seq 200); do
        port_free || break
        kill -0 "$main" 2>/dev/null || die "$name exited at start; run it with BENCH_SERVER_LOG=/tmp/$name.log to see why"
        sleep 0.05
    done
    port_free && die "$name does not listen on 127.0.0.1:$port after 10 s"
    server_pids=("$main")
    if [ "$name" = nginx ]; then
        # The master (its share is small) and its one worker, which the
        # master forks after it has started listening.
        local worker=
        for _ in $(seq 100); do
            worker=$(pgrep -P "$main" || true)
            [ -n "$worker" ] && break
            sleep 0.05
        done
        [ -n "$worker" ] && [ "$(echo "$worker" | wc -l)" = 1 ] ||
            die "nginx should have one worker process, found: ${worker:-none}"
        server_pids+=("$worker")
    fi
    pid_args=()
    for pid in "${server_pids[@]}"; do pid_args+=(--server-pid "$pid"); done
}

stop_server() {
    kill -TERM "${server_pids[0]}" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "${server_pids[0]}" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "${server_pids[0]}" 2>/dev/null || true
    wait "${server_pids[0]}" 2>/dev/null || true
}

[[ " $servers " == *" nginx "* ]] && write_nginx_conf
phase_args=(--connections "$conns" --duration "$seconds" --warmup "$warmup")
for repeat in $(seq "$repeats"); do
    for server in $servers; do
        dir=$out/runs/$repeat/$server
        mkdir -p "$dir"
        say "repeat $repeat/$repeats: $server"
        server_command "$server"
        loadgen "$dir/startup.json" --mode startup --label "$server" -- taskset -c "$server_cpu" "${cmd[@]}"
        start_server "$server"
        for mode in full resumed keepalive; do
            loadgen "$dir/$mode.json" --mode "$mode" --label "$server" "${phase_args[@]}" "${pid_args[@]}"
        done
        loadgen "$dir/keepalive-h2.json" --mode keepalive --http h2 --label "$server" \
            "${phase_args[@]}" "${pid_args[@]}"
        hold "$dir/hold.json" raw
        # A new server for the HTTP/2 connections: memory freed by the
        # first hold would be reused, and they would look cheaper.
        stop_server
        start_server "$server"
        hold "$dir/hold-h2.json" h2
        stop_server
    done
done

# --- the report ----------------------------------------------------------------
export BENCH_FACT_DATE BENCH_FACT_COMMIT BENCH_FACT_CPU BENCH_FACT_NPROC BENCH_FACT_KERNEL \
    BENCH_FACT_RUSTC BENCH_FACT_NGINX BENCH_FACT_OPENSSL BENCH_FACT_BINARY_BYTES
BENCH_FACT_DATE=$(date -u +%Y-%m-%dT%H:%MZ)
BENCH_FACT_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
BENCH_FACT_CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
BENCH_FACT_NPROC=$cores
BENCH_FACT_KERNEL=$(uname -r)
BENCH_FACT_RUSTC=$(rustc --version)
BENCH_FACT_NGINX=$( (nginx -v 2>&1 || echo none) | sed 's/^nginx version: //')
BENCH_FACT_OPENSSL=$(openssl version 2>/dev/null | cut -d' ' -f1,2 || echo none)
BENCH_FACT_BINARY_BYTES=$(stat -c %s "$mtls_bin")
export BENCH_SECONDS=$seconds BENCH_WARMUP=$warmup BENCH_REPEATS=$repeats BENCH_CONNS=$conns
export BENCH_IDLE_CONNS=$idle BENCH_SERVER_CPU=$server_cpu BENCH_CLIENT_CPU=$client_cpu
export BENCH_QUICK=${BENCH_QUICK:-0} BENCH_MTLS_PROVIDER=$mtls_provider
python3 "$repo/scripts/bench_report.py" "$out" "$target_dir/criterion"
