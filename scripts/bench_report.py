#!/usr/bin/env python3
"""The table of scripts/bench.sh: medians over the repeats, the ratios
mtls/nginx and mtls/bare, the crypto floor, and the targets of issue #4.

Usage: bench_report.py OUT_DIR CRITERION_DIR
Reads OUT_DIR/runs/REPEAT/SERVER/{startup,full,resumed,keepalive,
keepalive-h2,hold,hold-h2}.json
(one JSON object each, written by the load generator) and the crypto floor
estimates of criterion; writes OUT_DIR/results.md and OUT_DIR/results.json
and prints the markdown.
"""

import json
import os
import statistics
import sys
from pathlib import Path

SERVER_TITLES = {
    "mtls": "mtls",
    "nginx": "nginx",
    "bare": "bare (ring)",
    "bare-aws-lc-rs": "bare (aws-lc-rs)",
}
PROVIDERS = ["ring", "aws-lc-rs"]


def load_runs(out):
    """{server: {phase: [result, ...]}} over all repeats."""
    runs = {}
    for repeat in sorted((out / "runs").iterdir()):
        for server_dir in sorted(repeat.iterdir()):
            for path in sorted(server_dir.glob("*.json")):
                text = path.read_text().strip()
                if not text:
                    continue
                result = json.loads(text)
                runs.setdefault(server_dir.name, {}).setdefault(path.stem, []).append(result)
    return runs


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def crypto_floor(criterion):
    """Median CPU time in microseconds of each crypto_floor benchmark."""
    floor = {}
    for provider in PROVIDERS:
        for name in ["x25519", "ecdsa_p256_sign", "ecdsa_p256_verify", "server_share"]:
            path = criterion / "crypto_floor" / f"{provider}_{name}" / "new" / "estimates.json"
            if path.exists():
                estimates = json.loads(path.read_text())
                floor.setdefault(provider, {})[name] = estimates["median"]["point_estimate"] / 1e3
    return floor


def floor_warnings(floor):
    """Lines that flag a combined floor median out of line with its parts:
    on this shared machine that means the benchmark was disturbed."""
    lines = []
    for provider, f in floor.items():
        parts = [f.get(name) for name in ["x25519", "ecdsa_p256_sign", "ecdsa_p256_verify"]]
        share = f.get("server_share")
        if share is None or None in parts:
            continue
        parts_sum = parts[0] + parts[1] + 2 * parts[2]
        off = share / parts_sum - 1
        if abs(off) > 0.10:
            lines += ["", f"**Check the floor:** {provider}'s combined median ({share:.1f} µs) is "
                      f"{abs(off):.0%} {'above' if off > 0 else 'below'} the sum of its parts "
                      f"({parts_sum:.1f} µs): the benchmark was probably disturbed. Re-run it "
                      f"(`cargo bench -p mtls-bench --bench crypto_floor`) before reading the ratio."]
    return lines


def main():
    out, criterion = Path(sys.argv[1]), Path(sys.argv[2])
    env = os.environ
    runs = load_runs(out)
    floor = crypto_floor(criterion)
    mtls_provider = env.get("BENCH_MTLS_PROVIDER", "ring")
    bare = "bare" if mtls_provider == "ring" else "bare-aws-lc-rs"
    servers = [s for s in SERVER_TITLES if s in runs] + [s for s in runs if s not in SERVER_TITLES]
    idle = int(env.get("BENCH_IDLE_CONNS", "0"))

    def value(server, phase, *keys):
        results = runs.get(server, {}).get(phase, [])
        picked = []
        for result in results:
            for key in keys:
                result = result.get(key) if isinstance(result, dict) else None
            picked.append(result)
        return median(picked)

    def worst(server, phase, key):
        results = runs.get(server, {}).get(phase, [])
        values = [r.get(key) or 0 for r in results]
        return max(values) if values else None

    # Each row: label, {server: value}, format, target text, check(values) -> bool|None
    rows = []

    def row(label, getter, fmt, target="", check=None):
        values = {s: getter(s) for s in servers}
        rows.append((label, values, fmt, target, check))

    def ratio(values, other):
        a, b = values.get("mtls"), values.get(other)
        return a / b if a is not None and b else None

    floor_mtls = floor.get(mtls_provider, {}).get("server_share")
    row("full handshakes/s", lambda s: value(s, "full", "ops_per_s"), "{:,.0f}")
    row(
        "server CPU µs per full handshake",
        lambda s: value(s, "full", "server_cpu_us_per_op"),
        "{:,.1f}",
        f"≤ 1.6× floor ({mtls_provider}), ≤ 1.0× bare",
        lambda v: floor_mtls is not None
        and v.get("mtls") is not None
        and v["mtls"] <= 1.6 * floor_mtls
        and (ratio(v, bare) or 9) <= 1.0,
    )
    row("resumed handshakes/s", lambda s: value(s, "resumed", "ops_per_s"), "{:,.0f}")
    row(
        "server CPU µs per resumed handshake",
        lambda s: value(s, "resumed", "server_cpu_us_per_op"),
        "{:,.1f}",
        "≤ 1.0× bare, ≤ 0.8× nginx",
        lambda v: (ratio(v, bare) or 9) <= 1.0 and (ratio(v, "nginx") or 9) <= 0.8,
    )
    row(
        "handshakes that did not resume",
        lambda s: worst(s, "resumed", "wrong_handshake_kind"),
        "{:,.0f}",
    )
    # HTTP/1.1, the protocol the targets were written for, then h2
    # against the same bars (phases keepalive-h2 and hold-h2).
    for suffix, proto in [("", ""), ("-h2", " (h2)")]:
        keepalive, hold = "keepalive" + suffix, "hold" + suffix
        row(f"keep-alive requests/s{proto}", lambda s, p=keepalive: value(s, p, "ops_per_s"), "{:,.0f}")
        row(f"keep-alive p50 µs{proto}", lambda s, p=keepalive: value(s, p, "latency", "p50_us"), "{:,.0f}")
        row(
            f"keep-alive p99 µs{proto}",
            lambda s, p=keepalive: value(s, p, "latency", "p99_us"),
            "{:,.0f}",
            "≤ nginx",
            lambda v: (ratio(v, "nginx") or 9) <= 1.0,
        )
        row(
            f"server CPU µs per keep-alive request{proto}",
            lambda s, p=keepalive: value(s, p, "server_cpu_us_per_op"),
            "{:,.2f}",
            "≤ 1.0× bare, ≤ 0.8× nginx",
            lambda v: (ratio(v, bare) or 9) <= 1.0 and (ratio(v, "nginx") or 9) <= 0.8,
        )
        for measure in ["RSS", "PSS"]:
            row(
                f"{measure} bytes per idle connection{proto}",
                lambda s, p=hold, m=measure.lower(): value(s, p, f"{m}_per_conn_bytes"),
                "{:,.0f}",
                "≤ 0.6× nginx",
                lambda v: (ratio(v, "nginx") or 9) <= 0.6,
            )
        row(
            f"server RSS MiB with {idle:,} idle connections{proto}",
            lambda s, p=hold: (value(s, p, "server_rss_after") or 0) / 2**20 or None,
            "{:,.1f}",
        )
        row(
            f"idle connections held of {idle:,} (worst repeat){proto}",
            lambda s, p=hold: min((r.get("held_at_measure") or 0) - (r.get("dropped_by_server") or 0)
                                  for r in runs.get(s, {}).get(p, [{}])),
            "{:,.0f}",
            f"{idle:,}, no error",
            lambda v, p=hold: v.get("mtls") == idle and worst("mtls", p, "errors") == 0,
        )
    row(
        "errors, all phases (sum over repeats)",
        lambda s: sum(r.get("errors") or 0 for phase in runs.get(s, {}).values() for r in phase),
        "{:,.0f}",
    )
    row(
        "start-up: exec to first accepted connection, ms",
        lambda s: value(s, "startup", "first_connect_ms"),
        "{:,.1f}",
        "< 50 ms",
        lambda v: v.get("mtls") is not None and v["mtls"] < 50,
    )
    row(
        "start-up: exec to first answered mTLS request, ms",
        lambda s: value(s, "startup", "startup_ms"),
        "{:,.1f}",
    )

    def fmt(fmt_string, number):
        return "–" if number is None else fmt_string.format(number)

    titles = [SERVER_TITLES.get(s, s) for s in servers]
    has_nginx, has_bare = "nginx" in servers, bare in servers
    header = ["metric"] + titles
    header += ["mtls/nginx"] if has_nginx else []
    header += [f"mtls/{SERVER_TITLES[bare]}"] if has_bare else []
    header += ["target", "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table = []
    for label, values, fmt_string, target, check in rows:
        cells = [label] + [fmt(fmt_string, values[s]) for s in servers]
        if has_nginx:
            cells.append(fmt("{:.2f}", ratio(values, "nginx")))
        if has_bare:
            cells.append(fmt("{:.2f}", ratio(values, bare)))
        met = None
        if check is not None:
            try:
                met = bool(check(values))
            except TypeError:
                met = None
        cells += [target, "" if check is None else ("yes" if met else "no")]
        lines.append("| " + " | ".join(cells) + " |")
        table.append({"metric": label, "values": values, "target": target, "met": met})

    # Who was the bottleneck: busy fraction of each core per phase.
    busy = ["", "Share of its core each side used (1.00 = saturated; the busier side limits the rate):", ""]
    busy.append("| phase | " + " | ".join(f"{t} server / client" for t in titles) + " |")
    busy.append("|---|" + "---|" * len(titles))
    for phase in ["full", "resumed", "keepalive", "keepalive-h2"]:
        cells = [
            f"{fmt('{:.2f}', value(s, phase, 'server_cpu_util'))} / {fmt('{:.2f}', value(s, phase, 'client_cpu_util'))}"
            for s in servers
        ]
        busy.append(f"| {phase} | " + " | ".join(cells) + " |")

    floor_lines = ["", "Crypto floor: CPU µs of the server's share of one full handshake (one X25519 exchange, one ECDSA P-256 signature, two ECDSA P-256 verifications), criterion medians:", ""]
    floor_lines.append("| provider | X25519 | sign | verify | floor (all four) | mtls CPU per full handshake ÷ floor |")
    floor_lines.append("|---|---|---|---|---|---|")
    mtls_full = value("mtls", "full", "server_cpu_us_per_op")
    for provider in PROVIDERS:
        f = floor.get(provider, {})
        share = f.get("server_share")
        over = mtls_full / share if mtls_full and share else None
        floor_lines.append(
            f"| {provider}{' (mtls uses it)' if provider == mtls_provider else ''} | "
            f"{fmt('{:.1f}', f.get('x25519'))} | {fmt('{:.1f}', f.get('ecdsa_p256_sign'))} | "
            f"{fmt('{:.1f}', f.get('ecdsa_p256_verify'))} | {fmt('{:.1f}', share)} | {fmt('{:.2f}', over)} |"
        )
    floor_lines += floor_warnings(floor)

    quick = env.get("BENCH_QUICK") == "1"
    size = int(env.get("BENCH_FACT_BINARY_BYTES", "0"))
    facts = {
        "date": env.get("BENCH_FACT_DATE"),
        "commit": env.get("BENCH_FACT_COMMIT"),
        "cpu": env.get("BENCH_FACT_CPU"),
        "nproc": env.get("BENCH_FACT_NPROC"),
        "kernel": env.get("BENCH_FACT_KERNEL"),
        "rustc": env.get("BENCH_FACT_RUSTC"),
        "nginx": env.get("BENCH_FACT_NGINX"),
        "openssl": env.get("BENCH_FACT_OPENSSL"),
        "mtls_binary_bytes": size,
        "quick": quick,
        "seconds": env.get("BENCH_SECONDS"),
        "warmup": env.get("BENCH_WARMUP"),
        "repeats": env.get("BENCH_REPEATS"),
        "connections": env.get("BENCH_CONNS"),
        "idle_connections": idle,
        "server_cpu": env.get("BENCH_SERVER_CPU"),
        "client_cpu": env.get("BENCH_CLIENT_CPU"),
        "mtls_provider": mtls_provider,
    }
    intro = []
    if quick:
        intro += ["**QUICK sanity run (BENCH_QUICK=1): short phases, one repeat. Not a result.**", ""]
    intro += [
        f"{facts['date']}, commit {facts['commit']}; {facts['cpu']}, {facts['nproc']} cores, "
        f"Linux {facts['kernel']}; {facts['rustc']}; {facts['nginx']} ({facts['openssl']}).",
        f"Server on core {facts['server_cpu']}, load generator on core {facts['client_cpu']}; "
        f"{facts['seconds']} s per phase after {facts['warmup']} s of warm-up, "
        f"medians over {facts['repeats']} repeat(s), {facts['connections']} concurrent connections, "
        f"X25519 only, TLS 1.3, ECDSA P-256 certificates.",
        f"Release binary target/release/mtls: {size:,} bytes ({size / 2**20:.1f} MiB).",
        "",
    ]
    markdown = "\n".join(intro + lines + busy + floor_lines) + "\n"
    (out / "results.md").write_text(markdown)
    (out / "results.json").write_text(
        json.dumps({"machine": facts, "floor_us": floor, "table": table, "runs": runs}, indent=2) + "\n"
    )
    print(markdown)


if __name__ == "__main__":
    main()
