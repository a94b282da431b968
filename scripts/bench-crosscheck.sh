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
written() { awk '$1 == "wchar:" { print $2 }' "/proc/$pid/io"; }
now() { date +%s.%N; }

# run NAME OPS-COMMAND -- CLIENT...: runs a client (the functions below pin
# it to core 1) and prints a table row. OPS-COMMAND reads the client's output ($work/out) and
# prints the number of operations (and, after a tab, a note). The server's
# CPU time and the bytes it wrote (wchar: a full handshake sends the
# certificate, a resumed one does not) come from /proc around the run; the
# client's CPU time from the shell's `time`.
run() {
    local name=$1 parse=$2 t0 c0 w0 t1 c1 w1 parsed ops note
    shift 3
    t0=$(now) c0=$(ticks) w0=$(written)
    TIMEFORMAT='%U %S'
    { time "$@" >"$work/out" 2>"$work/err"; } 2>"$work/time" ||
        { cat "$work/err" >&2; echo "crosscheck: $name failed" >&2; exit 1; }
    t1=$(now) c1=$(ticks) w1=$(written)
    parsed=$($parse)
    ops=${parsed%%$'\t'*}
    note=${parsed#*$'\t'}
    [ "$note" = "$parsed" ] && note=
    awk -v name="$name" -v ops="$ops" -v wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
        -v ticks="$((c1 - c0))" -v bytes="$((w1 - w0))" -v client="$(cat "$work/time")" -v note="$note" 'BEGIN {
        split(client, c, " ")
        printf "| %s | %d | %.0f | %.1f | %.0f | %.0f | %s |\n", name, ops, ops / wall,
            ticks * 10000 / ops, bytes / ops, (c[1] + c[2]) * 1e6 / ops, note }'
}
s_time_ops() { # "N connections in X.XXs; ...": the last such line is the phase asked for
    grep -E '^[0-9]+ connections in [0-9.]+s;' "$work/out" | tail -1 | awk '{ print $1 }'
}
loadgen_ops() {
    python3 - "$work/out" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
note = []
if r["mode"] in ("full", "resumed"):
    note.append("handshakes of the other kind: %d" % r["wrong_handshake_kind"])
if r["mode"] == "keepalive":
    note.append("p50 %d µs, p99 %d µs" % (r["latency"]["p50_us"], r["latency"]["p99_us"]))
print("%d\t%s" % (r["ops"], "; ".join(note)))
EOF
}
oha_ops() {
    python3 - "$work/out" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
ops = sum(d["statusCodeDistribution"].values())
p = d.get("latencyPercentiles", {})
print("%d\tp50 %.0f µs, p99 %.0f µs" % (ops, (p.get("p50") or 0) * 1e6, (p.get("p99") or 0) * 1e6))
EOF
}
s_time() { # s_time -new|-reuse
    taskset -c 1 openssl s_time -connect "127.0.0.1:$port" "$1" -cert "$pki/client.crt" -key "$pki/client.key" \
        -CAfile "$pki/ca.crt" -time "$seconds" -www /
}
loadgen() {
    taskset -c 1 "$target_dir/release/loadgen" --addr "127.0.0.1:$port" --sni "$sni" --ca "$pki/ca.crt" \
        --cert "$pki/client.crt" --key "$pki/client.key" --warmup 0 --duration "$seconds" "$@"
}
oha_run() {
    taskset -c 1 "$oha" --no-tui -z "${seconds}s" --output-format json --cacert "$pki/ca.crt" \
        --cert "$pki/client.crt" --key "$pki/client.key" \
        --connect-to "$sni:$port:127.0.0.1:$port" "$@" "https://$sni:$port/"
}

echo "Server: $server on core 0; clients on core 1; $seconds s per run."
echo
echo "| client | operations | per second | server CPU µs per op | server bytes written per op | client CPU µs per op | note |"
echo "|---|---|---|---|---|---|---|"
run "openssl s_time -new" s_time_ops -- s_time -new
run "loadgen --mode full --connections 1" loadgen_ops -- loadgen --mode full --connections 1
run "loadgen --mode full --connections 1 --x25519-only" loadgen_ops -- loadgen --mode full --connections 1 --x25519-only
run "openssl s_time -reuse" s_time_ops -- s_time -reuse
run "loadgen --mode resumed --connections 1" loadgen_ops -- loadgen --mode resumed --connections 1
if [ -n "$oha" ]; then
    run "oha --disable-keepalive -c 1" oha_ops -- oha_run -c 1 --disable-keepalive
    run "oha --disable-keepalive -c 32" oha_ops -- oha_run -c 32 --disable-keepalive
    run "loadgen --mode full --connections 32" loadgen_ops -- loadgen --mode full --connections 32
    run "loadgen --mode resumed --connections 32" loadgen_ops -- loadgen --mode resumed --connections 32
    run "oha -c 32 (keep-alive)" oha_ops -- oha_run -c 32
else
    echo "| oha | – | – | – | – | – | not installed (cargo install oha --locked; or OHA=path) |"
fi
run "loadgen --mode keepalive --connections 32" loadgen_ops -- loadgen --mode keepalive --connections 32
run "loadgen --mode keepalive --connections 32 --http hyper" loadgen_ops -- loadgen --mode keepalive --connections 32 --http hyper
