//! `mtls check` run as a binary against the real server in each failure
//! mode, offline, and against `openssl s_server`.

mod common;

use std::io::{BufRead, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{DOMAIN, TestPki, TestServer, authority_from, mtls_command};
use mtls::config::ClientAuthMode;
use mtls::pki::{Issued, LeafSpec, Validity};
use serde_json::Value;

/// Every run of the binary is killed after this long.
const DEADLINE: Duration = Duration::from_secs(40);

/// What one `mtls check` run left behind.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {self:?}"))
    }

    /// The step named `name` of a `--json` run.
    fn step(&self, name: &str) -> Value {
        self.json()["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no step {name}: {self:?}"))
    }

    fn has_step(&self, name: &str) -> bool {
        self.json()["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["step"] == name)
    }
}

/// Waits for `child` at most [`DEADLINE`], killing it after that.
fn wait_bounded(mut child: Child) -> Run {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mtls check did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `mtls check ARGS` in the PKI directory, off the runtime's threads
/// (the server under test runs on them).
async fn check(pki: &TestPki, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut command = mtls_command(pki.dir.path());
    command
        .arg("check")
        .args(args)
        .args(["--timeout", "10s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in envs {
        command.env(name, value);
    }
    tokio::task::spawn_blocking(move || wait_bounded(command.spawn().unwrap()))
        .await
        .unwrap()
}

/// `--resolve DOMAIN:PORT:127.0.0.1 https://DOMAIN:PORT/path`.
fn target(server: &TestServer, path: &str) -> Vec<String> {
    let port = server.addr.port();
    vec![
        "--resolve".to_owned(),
        format!("{DOMAIN}:{port}:127.0.0.1"),
        format!("https://{DOMAIN}:{port}{path}"),
    ]
}

fn args<'a>(target: &'a [String], rest: &[&'a str]) -> Vec<&'a str> {
    target
        .iter()
        .map(String::as_str)
        .chain(rest.iter().copied())
        .collect()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

/// A run that failed with exit 1, and whose first failed step is `name`.
fn assert_fails_at(run: &Run, name: &str) {
    assert_eq!(run.code, Some(1), "{run:?}");
    let json = run.json();
    assert_eq!(json["ok"], false, "{run:?}");
    let first = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["ok"] == false)
        .unwrap_or_else(|| panic!("no failed step: {run:?}"));
    assert_eq!(first["step"], name, "{run:?}");
    assert!(text(&first["cause"]).len() > 10, "a cause: {run:?}");
    assert!(text(&first["fix"]).len() > 5, "a fix: {run:?}");
    assert!(
        text(&json["summary"]).starts_with("FAILED at step"),
        "{run:?}"
    );
}

fn identity<'a>(cert: &'a Path, key: &'a Path) -> [&'a str; 4] {
    [
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]
}

const CLIENT: [&str; 6] = [
    "--cacert",
    "ca.crt",
    "--cert",
    "client.crt",
    "--key",
    "client.key",
];

// ----------------------------------------------------------------- success

#[tokio::test]
async fn a_good_client_certificate_passes_every_step_and_exits_0() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    let run = check(&pki, &args(&t, &CLIENT), &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    for (number, name) in [
        (1, "connect"),
        (2, "server certificate"),
        (3, "certificate request"),
        (4, "client certificate"),
        (5, "handshake"),
        (6, "http"),
    ] {
        let prefix = format!("✓ {number}. {name}: ");
        assert!(
            lines.iter().any(|l| l.starts_with(&prefix)),
            "{prefix}: {run:?}"
        );
    }
    assert!(!run.stdout.contains('✗'), "{run:?}");
    assert!(
        run.stdout.contains("TCP connected to 127.0.0.1:"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("issued by: CN=mtls development CA; ours chains to CN=mtls development CA"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("client certificate CN=client accepted"),
        "{run:?}"
    );
    assert!(run.stdout.contains("✓ 6. http: HTTP/2 200"), "{run:?}");
    let last = lines.last().unwrap();
    assert!(last.starts_with("OK: https://"), "{run:?}");
    assert!(last.contains("HTTP/2 200"), "{run:?}");
}

#[tokio::test]
async fn json_output_has_the_documented_shape() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    let run = check(&pki, &args(&t, &[&CLIENT[..], &["--json"]].concat()), &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let json = run.json();
    assert_eq!(json["ok"], true);
    assert!(text(&json["summary"]).starts_with("OK: "), "{json}");
    assert_eq!(json["url"], t[2].as_str());
    let steps = json["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| text(&s["step"])).collect();
    assert_eq!(
        names,
        [
            "connect",
            "server_certificate",
            "certificate_request",
            "client_certificate",
            "handshake",
            "http"
        ]
    );
    for step in steps {
        let object = step.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            ["cause", "details", "fix", "ok", "step", "summary"],
            "{step}"
        );
        assert_eq!(step["ok"], true, "{step}");
        assert!(step["cause"].is_null() && step["fix"].is_null(), "{step}");
    }
    assert_eq!(
        run.step("certificate_request")["details"]["acceptable_cas"],
        serde_json::json!(["CN=mtls development CA"])
    );
    assert_eq!(run.step("handshake")["details"]["version"], "TLSv1.3");
    assert_eq!(run.step("http")["details"]["status"], 200);
    let presented = &run.step("server_certificate")["details"]["presented"];
    assert_eq!(presented[0]["subject"], format!("CN={DOMAIN}"));
    assert_eq!(presented[0]["issuer"], "CN=mtls development CA");
}

// ------------------------------------------------- the client's failures

#[tokio::test]
async fn no_client_certificate_for_a_required_server_names_certificate_required() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    let run = check(&pki, &args(&t, &["--cacert", "ca.crt", "--json"]), &[]).await;
    assert_fails_at(&run, "handshake");
    let step = run.step("handshake");
    assert_eq!(step["details"]["alert"], "certificate_required", "{run:?}");
    assert!(
        text(&step["cause"]).contains("requires a client certificate and none was sent"),
        "{run:?}"
    );
    assert!(
        text(&step["fix"]).contains("--cert FILE --key FILE"),
        "{run:?}"
    );
    assert!(!run.has_step("http"), "{run:?}");

    // The text form says the same, with the summary line last.
    let run = check(&pki, &args(&t, &["--cacert", "ca.crt"]), &[]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout
            .contains("✗ 5. handshake: the server sent the alert certificate_required"),
        "{run:?}"
    );
    assert!(run.stdout.contains("      cause: "), "{run:?}");
    assert!(run.stdout.contains("      fix:   "), "{run:?}");
    assert!(
        run.stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("FAILED at step 5 (handshake): the server requires a client certificate"),
        "{run:?}"
    );
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_not_among_the_acceptable_cas() {
    let pki = TestPki::new();
    let (cert, key) = pki.write("stranger", &pki.other_ca_client);
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    let run = check(
        &pki,
        &args(
            &t,
            &[
                &["--cacert", "ca.crt", "--json"][..],
                &identity(&cert, &key),
            ]
            .concat(),
        ),
        &[],
    )
    .await;
    assert_fails_at(&run, "certificate_request");
    let request = run.step("certificate_request");
    assert!(
        text(&request["cause"]).contains(
            "our certificate is issued by `CN=some other CA`, which is not among the CAs the server accepts"
        ),
        "{run:?}"
    );
    assert!(
        text(&request["summary"]).contains("CN=mtls development CA"),
        "{run:?}"
    );
    let handshake = run.step("handshake");
    assert_eq!(handshake["details"]["alert"], "unknown_ca", "{run:?}");
    assert!(
        text(&handshake["cause"]).contains("does not trust the issuer `CN=some other CA`"),
        "{run:?}"
    );
    assert_eq!(run.step("client_certificate")["ok"], true, "{run:?}");
}

#[tokio::test]
async fn an_expired_client_certificate_is_named_offline_and_by_the_alert() {
    let pki = TestPki::new();
    let (cert, key) = pki.write("expired", &pki.expired_client);
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    let run = check(
        &pki,
        &args(
            &t,
            &[
                &["--cacert", "ca.crt", "--json"][..],
                &identity(&cert, &key),
            ]
            .concat(),
        ),
        &[],
    )
    .await;
    assert_fails_at(&run, "client_certificate");
    let client = run.step("client_certificate");
    assert!(text(&client["cause"]).contains("expired at "), "{run:?}");
    assert!(text(&client["fix"]).contains("renew"), "{run:?}");
    let handshake = run.step("handshake");
    assert_eq!(
        handshake["details"]["alert"], "certificate_expired",
        "{run:?}"
    );
    assert!(
        text(&handshake["cause"]).contains("as expired or not yet valid"),
        "{run:?}"
    );
}

#[tokio::test]
async fn a_client_certificate_without_client_auth_is_named() {
    let pki = TestPki::new();
    let (cert, key) = pki.write("server-auth-only", &pki.server_auth_only_client);
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    let run = check(
        &pki,
        &args(
            &t,
            &[
                &["--cacert", "ca.crt", "--json"][..],
                &identity(&cert, &key),
            ]
            .concat(),
        ),
        &[],
    )
    .await;
    assert_fails_at(&run, "client_certificate");
    assert!(
        text(&run.step("client_certificate")["cause"])
            .contains("the clientAuth extended key usage is missing (it has: serverAuth)"),
        "{run:?}"
    );
    let handshake = run.step("handshake");
    assert_eq!(
        handshake["details"]["alert"], "unsupported_certificate",
        "{run:?}"
    );
    assert!(
        text(&handshake["cause"]).contains("it lacks the clientAuth extended key usage"),
        "{run:?}"
    );
}

/// `openssl req -new` + `openssl x509 -req` without extensions: version 1.
fn version_1_certificate(pki: &TestPki) -> Option<()> {
    let openssl = common::system_openssl()?;
    let run = |args: &[&str]| {
        let out = Command::new(&openssl)
            .current_dir(pki.dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "v1.key",
        "-subj",
        "/CN=legacy",
        "-out",
        "v1.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "v1.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-out",
        "v1.crt",
    ]);
    Some(())
}

#[tokio::test]
async fn a_version_1_certificate_is_detected_offline_and_not_sent() {
    let pki = TestPki::new();
    if version_1_certificate(&pki).is_none() {
        return;
    }
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    let run = check(
        &pki,
        &args(
            &t,
            &[
                "--cacert", "ca.crt", "--cert", "v1.crt", "--key", "v1.key", "--json",
            ],
        ),
        &[],
    )
    .await;
    assert_fails_at(&run, "client_certificate");
    let client = run.step("client_certificate");
    assert_eq!(client["details"]["version"], 1, "{run:?}");
    assert!(
        text(&client["cause"]).contains("X.509 version 1"),
        "{run:?}"
    );
    assert!(
        text(&client["cause"]).contains("openssl x509 -req"),
        "{run:?}"
    );
    assert!(
        text(&client["fix"]).contains("mtls pki client NAME"),
        "{run:?}"
    );
    // Its key matches: only the version is wrong.
    let checks = client["details"]["checks"].as_array().unwrap();
    let key = checks.iter().find(|c| c["check"] == "key").unwrap();
    assert_eq!(key["ok"], true, "{run:?}");
    let handshake = run.step("handshake");
    assert_eq!(handshake["ok"], false);
    assert_eq!(
        handshake["summary"], "not attempted with this client identity",
        "{run:?}"
    );
    assert!(
        text(&handshake["cause"]).contains(
            "rustls will not load it as a client identity, so the handshake cannot be attempted"
        ),
        "{run:?}"
    );
    // Steps 1-3 still ran (without sending the certificate).
    assert_eq!(run.step("server_certificate")["ok"], true, "{run:?}");
    assert_eq!(
        run.step("certificate_request")["details"]["acceptable_cas"][0],
        "CN=mtls development CA"
    );
}

#[tokio::test]
async fn a_key_that_does_not_match_the_certificate_is_named() {
    let pki = TestPki::new();
    let mismatched = Issued {
        cert_pem: pki.client().cert_pem,
        key_pem: pki.other_ca_client.key_pem.clone(),
    };
    let (cert, key) = pki.write("mismatched", &mismatched);
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    let run = check(
        &pki,
        &args(
            &t,
            &[
                &["--cacert", "ca.crt", "--json"][..],
                &identity(&cert, &key),
            ]
            .concat(),
        ),
        &[],
    )
    .await;
    assert_fails_at(&run, "client_certificate");
    assert!(
        text(&run.step("client_certificate")["cause"])
            .contains("the private key does not match the certificate"),
        "{run:?}"
    );
    let handshake = run.step("handshake");
    assert_eq!(
        handshake["summary"],
        "not attempted with this client identity"
    );
    assert!(
        text(&handshake["cause"]).contains("the private key does not belong to the certificate"),
        "{run:?}"
    );
}

#[tokio::test]
async fn a_missing_intermediate_is_explained() {
    let pki = TestPki::new();
    let root = authority_from(pki.dir.path());
    let intermediate = root.issue_intermediate("mtls intermediate CA").unwrap();
    let leaf = intermediate.issue(&LeafSpec::client("deep")).unwrap();
    // Only the leaf, while the server trusts only the root.
    let (cert, key) = pki.write("deep", &leaf);
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    let run = check(
        &pki,
        &args(
            &t,
            &[
                &["--cacert", "ca.crt", "--json"][..],
                &identity(&cert, &key),
            ]
            .concat(),
        ),
        &[],
    )
    .await;
    assert_fails_at(&run, "certificate_request");
    let client = run.step("client_certificate");
    let checks = client["details"]["checks"].as_array().unwrap();
    let chain = checks.iter().find(|c| c["check"] == "chain").unwrap();
    assert_eq!(chain["detail"], "chain sent: the leaf only", "{run:?}");
    let request = run.step("certificate_request");
    assert!(
        text(&request["cause"]).contains("`CN=mtls intermediate CA`"),
        "{run:?}"
    );
    assert!(
        text(&request["cause"]).contains("we send the leaf only"),
        "{run:?}"
    );
    assert!(
        text(&request["fix"]).contains("if `CN=mtls intermediate CA` is an intermediate CA"),
        "{run:?}"
    );
    let handshake = run.step("handshake");
    assert_eq!(handshake["details"]["alert"], "unknown_ca", "{run:?}");
    assert!(
        text(&handshake["cause"]).contains("incomplete chain"),
        "{run:?}"
    );
    assert!(
        text(&handshake["fix"])
            .contains("append its certificate to the certificate file after the leaf"),
        "{run:?}"
    );

    // With the intermediate appended, the same check passes.
    let full = pki.path("deep-chain.crt");
    std::fs::write(
        &full,
        format!("{}{}", leaf.cert_pem, intermediate.cert_pem()),
    )
    .unwrap();
    let run = check(
        &pki,
        &args(
            &t,
            &[
                &["--cacert", "ca.crt", "--json"][..],
                &identity(&full, &key),
            ]
            .concat(),
        ),
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        text(&run.step("certificate_request")["summary"])
            .contains("ours chains to CN=mtls development CA"),
        "{run:?}"
    );
}

// ------------------------------------------------- the server's failures

#[tokio::test]
async fn a_wrong_host_name_lists_the_names_the_certificate_has() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    let expect_wrong_name = |run: &Run, name: &str| {
        assert_fails_at(run, "server_certificate");
        let step = run.step("server_certificate");
        assert_eq!(
            step["details"]["problems"],
            serde_json::json!(["wrong_name"]),
            "{run:?}"
        );
        assert!(
            text(&step["cause"]).contains(&format!(
                "the certificate is not valid for `{name}`; its names are: {DOMAIN}, localhost, 127.0.0.1, ::1"
            )),
            "{run:?}"
        );
        assert!(text(&step["fix"]).contains("--servername NAME"), "{run:?}");
        assert_eq!(
            run.step("handshake")["summary"],
            "ended by us: the server's certificate was rejected"
        );
        assert!(!run.has_step("http"), "no request is sent: {run:?}");
    };
    let with_servername = [&CLIENT[..], &["--servername", "wrong.example", "--json"]].concat();
    let run = check(&pki, &args(&t, &with_servername), &[]).await;
    expect_wrong_name(&run, "wrong.example");

    let port = server.addr.port();
    let resolve = format!("wrong.example:{port}:127.0.0.1");
    let url = format!("https://wrong.example:{port}/");
    let run = check(
        &pki,
        &[&["--resolve", &resolve, &url, "--json"][..], &CLIENT[..]].concat(),
        &[],
    )
    .await;
    expect_wrong_name(&run, "wrong.example");
}

#[tokio::test]
async fn an_untrusted_server_names_the_missing_issuer() {
    let pki = TestPki::new();
    // No --cacert: the "system" roots, made deterministic with
    // SSL_CERT_FILE (read by rustls-native-certs), hold another CA only.
    let other = mtls::pki::Authority::generate("unrelated root").unwrap();
    std::fs::write(pki.path("system-roots.pem"), other.cert_pem()).unwrap();
    let empty_dir = pki.path("no-cert-dir");
    std::fs::create_dir(&empty_dir).unwrap();
    let server = TestServer::start(pki.config(ClientAuthMode::Off)).await;
    let t = target(&server, "/");
    let run = check(
        &pki,
        &args(&t, &["--json"]),
        &[
            (
                "SSL_CERT_FILE",
                pki.path("system-roots.pem").to_str().unwrap(),
            ),
            ("SSL_CERT_DIR", empty_dir.to_str().unwrap()),
        ],
    )
    .await;
    assert_fails_at(&run, "server_certificate");
    let step = run.step("server_certificate");
    assert_eq!(
        step["details"]["problems"],
        serde_json::json!(["unknown_issuer"]),
        "{run:?}"
    );
    assert_eq!(
        step["details"]["missing_issuer"], "CN=mtls development CA",
        "{run:?}"
    );
    assert!(
        text(&step["cause"]).contains(&format!(
            "unknown issuer: `CN=mtls development CA`, the issuer of CN={DOMAIN} (the last certificate the server sent), is not a CA in the system's roots (1 CA certificate)"
        )),
        "{run:?}"
    );
    assert!(
        text(&step["fix"]).contains("this system does not trust `CN=mtls development CA`: pass its CA certificate with --cacert FILE"),
        "{run:?}"
    );
    assert_eq!(
        text(&step["details"]["trusted"]),
        "the system's roots (1 CA certificate)"
    );
    assert!(
        text(&step["details"]["rustls"]).starts_with("unknown issuer: no chain to a trusted CA"),
        "{run:?}"
    );
    assert!(!run.has_step("http"), "{run:?}");
}

#[tokio::test]
async fn an_expired_server_certificate_is_named() {
    let pki = TestPki::new();
    let ca = authority_from(pki.dir.path());
    let expired = ca
        .issue(&LeafSpec {
            validity: Validity {
                not_before: time::OffsetDateTime::now_utc() - time::Duration::days(30),
                not_after: time::OffsetDateTime::now_utc() - time::Duration::days(2),
            },
            ..LeafSpec::server(DOMAIN)
        })
        .unwrap();
    let (cert, key) = pki.write("expired-server", &expired);
    let mut config = pki.config(ClientAuthMode::Off);
    config.cert = cert;
    config.key = key;
    let server = TestServer::start(config).await;
    let t = target(&server, "/");
    let run = check(&pki, &args(&t, &["--cacert", "ca.crt", "--json"]), &[]).await;
    assert_fails_at(&run, "server_certificate");
    let step = run.step("server_certificate");
    assert_eq!(
        step["details"]["problems"],
        serde_json::json!(["expired"]),
        "{run:?}"
    );
    assert!(
        text(&step["cause"]).contains(&format!("CN={DOMAIN} expired at ")),
        "{run:?}"
    );
    assert!(text(&step["fix"]).contains("renew"), "{run:?}");
}

#[tokio::test]
async fn a_server_that_omits_its_intermediate_is_named() {
    let pki = TestPki::new();
    let root = authority_from(pki.dir.path());
    let intermediate = root.issue_intermediate("server intermediate CA").unwrap();
    let leaf = intermediate.issue(&LeafSpec::server(DOMAIN)).unwrap();
    let (cert, key) = pki.write("leaf-only-server", &leaf);
    let mut config = pki.config(ClientAuthMode::Off);
    config.cert = cert;
    config.key = key;
    let server = TestServer::start(config).await;
    let t = target(&server, "/");
    let run = check(&pki, &args(&t, &["--cacert", "ca.crt", "--json"]), &[]).await;
    assert_fails_at(&run, "server_certificate");
    let step = run.step("server_certificate");
    assert_eq!(
        step["details"]["missing_issuer"], "CN=server intermediate CA",
        "{run:?}"
    );
    assert!(
        text(&step["cause"])
            .contains("if it is an intermediate CA, the server's chain is incomplete"),
        "{run:?}"
    );
    assert!(
        text(&step["fix"]).contains("the server must send it after its own certificate"),
        "{run:?}"
    );
}

// ------------------------------------------------------- optional mode

#[tokio::test]
async fn optional_mode_shows_the_json_reason_in_step_6() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Optional)).await;
    let t = target(&server, "/");
    let run = check(&pki, &args(&t, &["--cacert", "ca.crt", "--json"]), &[]).await;
    assert_fails_at(&run, "http");
    assert_eq!(run.step("handshake")["ok"], true, "{run:?}");
    let http = run.step("http");
    assert_eq!(http["details"]["status"], 403, "{run:?}");
    assert_eq!(http["details"]["reason"], "no_certificate", "{run:?}");
    assert!(
        text(&http["cause"]).contains(
            "the server refused the request: reason `no_certificate`: no client certificate was presented"
        ),
        "{run:?}"
    );
    assert!(text(&http["fix"]).contains("--cert client.crt"), "{run:?}");

    // A certificate from another CA passes the handshake in optional mode;
    // the 403 names the reason.
    let (cert, key) = pki.write("stranger", &pki.other_ca_client);
    let run = check(
        &pki,
        &args(
            &t,
            &[&["--cacert", "ca.crt"][..], &identity(&cert, &key)].concat(),
        ),
        &[],
    )
    .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.contains("✓ 5. handshake: "), "{run:?}");
    assert!(run.stdout.contains("✗ 6. http: HTTP/2 403"), "{run:?}");
    assert!(run.stdout.contains("reason `unknown_issuer`"), "{run:?}");

    // The public path answers without a certificate: exit 0.
    let t = target(&server, "/healthz");
    let run = check(&pki, &args(&t, &["--cacert", "ca.crt"]), &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
}

// ------------------------------------------------------------- offline

#[tokio::test]
async fn offline_mode_checks_the_identity_and_its_chain() {
    let pki = TestPki::new();
    let run = check(&pki, &[&CLIENT[..], &["--json"]].concat(), &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let json = run.json();
    assert_eq!(json["url"], Value::Null);
    let names: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| text(&s["step"]))
        .collect();
    assert_eq!(names, ["client_certificate", "client_chain"]);
    assert!(
        text(&run.step("client_chain")["summary"]).contains("CN=client -> CN=mtls development CA"),
        "{run:?}"
    );

    // Another CA's certificate does not chain to ca.crt, as the server says.
    let (cert, key) = pki.write("stranger", &pki.other_ca_client);
    let run = check(
        &pki,
        &[
            &["--cacert", "ca.crt", "--json"][..],
            &identity(&cert, &key),
        ]
        .concat(),
        &[],
    )
    .await;
    assert_fails_at(&run, "client_chain");
    assert!(
        text(&run.step("client_chain")["cause"]).contains("unknown issuer"),
        "{run:?}"
    );

    // A serverAuth-only certificate fails step 4 and the chain check.
    let (cert, key) = pki.write("server-auth-only", &pki.server_auth_only_client);
    let run = check(
        &pki,
        &[&["--cacert", "ca.crt"][..], &identity(&cert, &key)].concat(),
        &[],
    )
    .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.contains("✗ 4. client certificate"), "{run:?}");
    assert!(
        run.stdout.contains("extended key usage clientAuth missing"),
        "{run:?}"
    );

    // Without --cacert only step 4 runs.
    let run = check(&pki, &["--cert", "client.crt", "--key", "client.key"], &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("✓ 4. client certificate"), "{run:?}");
    assert!(!run.stdout.contains("client chain"), "{run:?}");
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let pki = TestPki::new();
    for bad in [
        &[][..],
        &["http://example.com/"],
        &["https://example.com/", "--resolve", "nonsense"],
        &["https://example.com/", "--cacert", "missing.pem"],
        &["--cert", "missing.crt", "--key", "client.key"],
    ] {
        let run = check(&pki, bad, &[]).await;
        assert_eq!(run.code, Some(2), "{bad:?}: {run:?}");
        assert!(!run.stderr.is_empty(), "{bad:?}: {run:?}");
    }
}

// ------------------------------------------------------- openssl s_server

/// `openssl s_server -Verify 1 ... -www` on a free port, killed on drop.
struct OpensslServer {
    child: Child,
    port: u16,
}

impl OpensslServer {
    fn start(openssl: &Path, dir: &Path) -> Option<OpensslServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(openssl)
            .current_dir(dir)
            .args(["s_server", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .args([
                "-Verify",
                "1",
                "-CAfile",
                "ca.crt",
                "-cert",
                "server.crt",
                "-key",
                "server.key",
                "-www",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // It prints ACCEPT once it listens.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("ACCEPT") {
                    let _ = tx.send(());
                }
            }
        });
        let server = OpensslServer { child, port };
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(()) => Some(server),
            Err(_) => {
                eprintln!("SKIPPED: openssl s_server did not start; this test did not run");
                None
            }
        }
    }
}

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn against_openssl_s_server_step_3_lists_its_acceptable_ca() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let pki = TestPki::new();
    let Some(server) = OpensslServer::start(&openssl, pki.dir.path()) else {
        return;
    };
    let url = format!("https://localhost:{}/", server.port);
    let run = check(
        &pki,
        &[&[url.as_str(), "--json"][..], &CLIENT[..]].concat(),
        &[],
    )
    .await;
    let request = run.step("certificate_request");
    assert_eq!(request["ok"], true, "{run:?}");
    assert_eq!(
        request["details"]["acceptable_cas"],
        serde_json::json!(["CN=mtls development CA"]),
        "{run:?}"
    );
    assert_eq!(run.step("handshake")["ok"], true, "{run:?}");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.step("http")["details"]["status"], 200, "{run:?}");

    // Without a certificate, OpenSSL refuses the handshake.
    let run = check(&pki, &[url.as_str(), "--cacert", "ca.crt", "--json"], &[]).await;
    assert_fails_at(&run, "handshake");
    let handshake = run.step("handshake");
    assert_eq!(
        handshake["details"]["alert"], "certificate_required",
        "{run:?}"
    );
    assert!(
        text(&handshake["cause"]).contains("requires a client certificate and none was sent"),
        "{run:?}"
    );

    // `-Verify 1` does not enforce the CA list: a certificate from another
    // CA gets in, and step 3 says so instead of failing.
    let (cert, key) = pki.write("stranger", &pki.other_ca_client);
    let run = check(
        &pki,
        &[
            &[url.as_str(), "--cacert", "ca.crt", "--json"][..],
            &identity(&cert, &key),
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        text(&run.step("certificate_request")["summary"])
            .contains("yet the server accepted it (it does not enforce its list)"),
        "{run:?}"
    );
    drop(server);
}
