//! The benchmark tools against each other: the bare server started on a
//! free loopback port, the load generator in each mode against it. Short
//! runs; what is checked is that the work was done and verified (answers,
//! handshake kinds, held connections, memory read), never how fast.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

fn pki() -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    mtls::pki::init(&mtls::pki::InitOptions {
        dir: dir.path().to_owned(),
        domain: "api.flaskmtlsauth.com".to_owned(),
        clients: Vec::new(),
        force: false,
        p12: None,
    })
    .expect("pki init");
    dir
}

fn bare_args(pki: &Path, listen: &str) -> Vec<String> {
    let file = |name: &str| pki.join(name).display().to_string();
    vec![
        "--listen".into(),
        listen.into(),
        "--cert".into(),
        file("server.crt"),
        "--key".into(),
        file("server.key"),
        "--client-ca".into(),
        file("ca.crt"),
    ]
}

/// The bare server on 127.0.0.1:0 and the address it reports.
struct Bare {
    child: Child,
    addr: String,
}

impl Bare {
    fn start(pki: &Path) -> Bare {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bare"))
            .args(bare_args(pki, "127.0.0.1:0"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bare");
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .expect("bare says where it listens");
        let addr = line
            .trim()
            .strip_prefix("bare: listening on https://")
            .unwrap_or_else(|| panic!("unexpected first line from bare: {line}"))
            .to_owned();
        Bare { child, addr }
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn loadgen(pki: &Path, addr: &str, args: &[&str]) -> Output {
    let file = |name: &str| pki.join(name).display().to_string();
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--addr", addr, "--x25519-only"])
        .args(["--ca", &file("ca.crt")])
        .args(["--cert", &file("client.crt")])
        .args(["--key", &file("client.key")])
        .args(args)
        .output()
        .expect("run loadgen")
}

fn result(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object on stdout")
}

#[test]
fn each_load_mode_completes_verified_operations_and_reads_the_server_cpu() {
    let pki = pki();
    let bare = Bare::start(pki.path());
    let pid = bare.child.id().to_string();
    for mode in ["full", "resumed", "keepalive"] {
        let run = result(&loadgen(
            pki.path(),
            &bare.addr,
            &[
                "--mode",
                mode,
                "--connections",
                "4",
                "--warmup",
                "0.3",
                "--duration",
                "0.5",
                "--server-pid",
                &pid,
            ],
        ));
        assert_eq!(run["mode"], mode);
        assert!(run["ops"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(run["errors"], 0, "{run}");
        assert_eq!(run["latency"]["samples"], run["ops"], "{run}");
        assert!(run["server_cpu_s"].as_f64().unwrap() >= 0.0, "{run}");
        if mode != "keepalive" {
            // Full mode never resumes; resumed mode always does after each
            // worker's first (uncounted) handshake.
            assert_eq!(run["wrong_handshake_kind"], 0, "{run}");
        }
    }
}

#[test]
fn keepalive_with_hyper_clients_answers_too() {
    let pki = pki();
    let bare = Bare::start(pki.path());
    for http in ["hyper", "h2"] {
        let run = result(&loadgen(
            pki.path(),
            &bare.addr,
            &[
                "--mode",
                "keepalive",
                "--http",
                http,
                "--connections",
                "2",
                "--warmup",
                "0.1",
                "--duration",
                "0.3",
            ],
        ));
        assert_eq!(run["http"], http, "{run}");
        assert!(run["ops"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(run["errors"], 0, "{run}");
        assert_eq!(run["reconnects"], 0, "{run}");
    }
}

#[test]
fn hold_mode_keeps_connections_open_and_measures_server_memory() {
    let pki = pki();
    let bare = Bare::start(pki.path());
    let pid = bare.child.id().to_string();
    // The default HTTP/1.1 request, and h2 (the bare server offers both).
    for http in ["raw", "h2"] {
        let run = result(&loadgen(
            pki.path(),
            &bare.addr,
            &[
                "--mode",
                "hold",
                "--http",
                http,
                "--hold",
                "50",
                "--connections",
                "8",
                "--duration",
                "0.2",
                "--server-pid",
                &pid,
            ],
        ));
        assert_eq!(run["opened"], 50, "{http}: {run}");
        assert_eq!(run["held_at_measure"], 50, "{http}: {run}");
        assert_eq!(run["errors"], 0, "{http}: {run}");
        assert_eq!(run["dropped_by_server"], 0, "{http}: {run}");
        assert!(
            run["server_rss_after"].as_u64().unwrap() > 0,
            "{http}: {run}"
        );
        assert!(run["rss_per_conn_bytes"].is_number(), "{http}: {run}");
    }
}

#[test]
fn a_wrong_expected_body_is_an_error_not_a_success() {
    let pki = pki();
    let bare = Bare::start(pki.path());
    let output = loadgen(
        pki.path(),
        &bare.addr,
        &[
            "--mode",
            "keepalive",
            "--connections",
            "1",
            "--warmup",
            "0",
            "--duration",
            "0.3",
            "--expect",
            "something else",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unexpected body"), "{stderr}");
}

#[test]
fn startup_mode_starts_the_server_and_stops_it_after_the_first_answer() {
    let pki = pki();
    // A free port: bind, read it, release it for the server to take.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["--mode", "startup", "--"];
    let command = bare_args(pki.path(), &addr);
    args.push(env!("CARGO_BIN_EXE_bare"));
    args.extend(command.iter().map(String::as_str));
    let run = result(&loadgen(pki.path(), &addr, &args));
    assert!(run["startup_ms"].as_f64().unwrap() > 0.0, "{run}");
    assert!(
        run["first_connect_ms"].as_f64().unwrap() <= run["startup_ms"].as_f64().unwrap(),
        "{run}"
    );
    // The server was stopped: the port is free again.
    assert!(std::net::TcpListener::bind(&addr).is_ok());
}
