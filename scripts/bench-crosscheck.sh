#!/usr/bin/env bash
# Checks the load generator of scripts/bench.sh against independent clients
# on the same server: `openssl s_time` (full handshakes with -new, resumed
# with -reuse, one connection at a time) and, when it is installed, `oha`
# (with and without keep-alive). For each client it prints the rate and the
# server's CPU time per operation read from /proc around the run, so the
# load generator's own numbers can be compared with them
# (docs/benchmarks.md, "How we checked the load generator").
#
#   CROSSCHECK_SERVER   mtls (default) or bare
#   CROSSCHECK_SECONDS  seconds per client run (5)
#   CROSSCHECK_PORT     loopback port (15453)
#   OHA                 path of oha (default: oha on PATH; skipped if none)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
server=${CROSSCHECK_SERVER:-mtls}
seconds=${CROSSCHECK_SECONDS:-5}
port=${CROSSCHECK_PORT:-15453}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
oha=${OHA:-$(command -v oha || true)}
sni=api.flaskmtlsauth.com

command -v openssl >/dev/null || { echo "crosscheck: openssl is missing" >&2; exit 1; }
cargo build --release --locked --quiet
cargo build --release --locked --quiet -p mtls-bench --bins

work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
pki=$work/pki
"$target_dir/release/mtls" pki init --dir "$pki" >/dev/null

case "$server" in
mtls) cmd=("$target_dir/release/mtls" serve --listen "127.0.0.1:$port" --cert "$pki/server.crt"
    --key "$pki/server.key" --client-ca "$pki/ca.crt" --client-auth required --admin-listen off) ;;
bare) cmd=("$target_dir/release/bare" --listen "127.0.0.1:$port" --cert "$pki/server.crt"
    --key "$pki/server.key" --client-ca "$pki/ca.crt") ;;
*) echo "crosscheck: CROSSCHECK_SERVER is mtls or bare" >&2; exit 1 ;;
esac
taskset -c 0 "${cmd[@]}" >/dev/null 2>&1 </dev/null &
pid=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
done

ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
now() { date +%s.%N; }
# report NAME OPS WALL_SECONDS SERVER_TICKS [NOTE]
report() {
    awk -v name="$1" -v ops="$2" -v wall="$3" -v ticks="$4" -v note="${5:-}" 'BEGIN {
        printf "| %s | %d | %.0f | %.1f | %s |\n", name, ops, ops / wall, ticks * 10000 / ops, note }'
}
# loadgen_row NAME ARGS...: the load generator measures itself.
loadgen_row() {
    local name=$1
    shift
    taskset -c 1 "$target_dir/release/loadgen" --addr "127.0.0.1:$port" --sni "$sni" \
        --ca "$pki/ca.crt" --cert "$pki/client.crt" --key "$pki/client.key" \
        --server-pid "$pid" --warmup 1 --duration "$seconds" "$@" >"$work/result.json"
    python3 - "$name" "$work/result.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[2]))
note = f"client CPU {r['client_cpu_us_per_op']} µs/op"
if r["mode"] == "resumed":
    note += f"; not resumed: {r['wrong_handshake_kind']}"
if r["mode"] == "keepalive":
    note += f"; p50 {r['latency']['p50_us']} µs, p99 {r['latency']['p99_us']} µs"
print(f"| {sys.argv[1]} | {r['ops']} | {r['ops_per_s']:.0f} | {r['server_cpu_us_per_op']:.1f} | {note} |")
EOF
}
s_time_row() { # s_time_row NAME -new|-reuse
    local t0 c0 t1 c1 ops
    t0=$(now) c0=$(ticks)
    taskset -c 1 openssl s_time -connect "127.0.0.1:$port" "$2" -cert "$pki/client.crt" \
        -key "$pki/client.key" -CAfile "$pki/ca.crt" -time "$seconds" -www / >"$work/s_time.txt" 2>&1
    t1=$(now) c1=$(ticks)
    # "N connections in X.XXs; Y connections/user sec": the last such line
    # is the phase asked for (-reuse runs only the reuse phase).
    ops=$(grep -E '^[0-9]+ connections in [0-9.]+s;' "$work/s_time.txt" | tail -1 | awk '{ print $1 }')
    local user
    user=$(grep -E '^[0-9]+ connections in [0-9.]+s;' "$work/s_time.txt" | tail -1 | sed -E 's/.* in ([0-9.]+)s;.*/\1/')
    report "$1" "$ops" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$((c1 - c0))" \
        "client CPU $(awk -v u="$user" -v n="$ops" 'BEGIN { printf "%.0f", u * 1e6 / n }') µs/op (user time)"
}
oha_row() { # oha_row NAME CONNECTIONS [OHA-ARGS...]
    local name=$1 conns=$2 t0 c0 t1 c1 ops
    shift 2
    t0=$(now) c0=$(ticks)
    taskset -c 1 "$oha" --no-tui -z "${seconds}s" -c "$conns" --output-format json \
        --cacert "$pki/ca.crt" --cert "$pki/client.crt" --key "$pki/client.key" \
        --connect-to "$sni:$port:127.0.0.1:$port" "$@" "https://$sni:$port/" >"$work/oha.json"
    t1=$(now) c1=$(ticks)
    ops=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(d["statusCodeDistribution"].values()))' "$work/oha.json")
    report "$name" "$ops" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$((c1 - c0))" "$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
p = d.get("latencyPercentiles", {})
print(f"p50 {p.get(\"p50\", 0) * 1e6:.0f} µs, p99 {p.get(\"p99\", 0) * 1e6:.0f} µs")' "$work/oha.json")"
}

echo "Server: $server on core 0; clients on core 1; $seconds s per run."
echo
echo "| client | operations | per second | server CPU µs per operation | note |"
echo "|---|---|---|---|---|"
s_time_row "openssl s_time -new (1 connection at a time)" -new
loadgen_row "loadgen --mode full --connections 1" --mode full --connections 1
loadgen_row "loadgen --mode full --connections 1 --x25519-only" --mode full --connections 1 --x25519-only
s_time_row "openssl s_time -reuse (1 connection at a time)" -reuse
loadgen_row "loadgen --mode resumed --connections 1" --mode resumed --connections 1
if [ -n "$oha" ]; then
    oha_row "oha --disable-keepalive -c 1" 1 --disable-keepalive
    oha_row "oha --disable-keepalive -c 32" 32 --disable-keepalive
    loadgen_row "loadgen --mode full --connections 32" --mode full --connections 32
    oha_row "oha -c 32 (keep-alive)" 32
else
    echo "| oha | – | – | – | not installed (cargo install oha --locked; OHA=path) |"
fi
loadgen_row "loadgen --mode keepalive --connections 32" --mode keepalive --connections 32
loadgen_row "loadgen --mode keepalive --connections 32 --http hyper" --mode keepalive --connections 32 --http hyper
