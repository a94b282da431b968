//! `mtls client` against the real server, and PKCS#12 client identities
//! (`input::pkcs12_identity`, `tls::client_identity_from_pkcs12`) read from
//! bundles the system openssl made.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{DOMAIN, TestPki, TestServer, mtls_command};
use mtls::config::ClientAuthMode;
use mtls::input::{self, InputError};
use mtls::tls::{self, TlsConfigError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const P12_PASSWORD: &str = "s3cret";

/// What one `mtls client` run left behind.
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

/// Runs `mtls client ARGS` in the PKI directory, off the runtime's threads
/// (the server under test runs on them).
async fn client(pki: &TestPki, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut command = mtls_command(pki.dir.path());
    command.arg("client").args(args).stdin(Stdio::null());
    for (name, value) in envs {
        command.env(name, value);
    }
    let out: Output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `--resolve DOMAIN:PORT:127.0.0.1` and the URL of `path` on the test server.
fn target(server: &TestServer, path: &str) -> [String; 3] {
    let port = server.addr.port();
    [
        "--resolve".to_owned(),
        format!("{DOMAIN}:{port}:127.0.0.1"),
        format!("https://{DOMAIN}:{port}{path}"),
    ]
}

fn with<'a>(target: &'a [String; 3], args: &[&'a str]) -> Vec<&'a str> {
    target
        .iter()
        .map(String::as_str)
        .chain(args.iter().copied())
        .collect()
}

const WELCOME: &str = "{\"message\":\"Welcome to the mTLS Flask App!\"}\n";
const IDENTITY: [&str; 6] = [
    "--cacert",
    "ca.crt",
    "--cert",
    "client.crt",
    "--key",
    "client.key",
];

/// Bundles `client.crt`, `client.key` and `ca.crt` as `name` with the
/// system openssl; `legacy` gives 3DES/RC2 instead of AES.
fn export_p12(openssl: &Path, dir: &Path, name: &str, legacy: bool, extra: &[&str]) -> PathBuf {
    let mut command = Command::new(openssl);
    command.current_dir(dir).args([
        "pkcs12",
        "-export",
        "-in",
        "client.crt",
        "-certfile",
        "ca.crt",
        "-passout",
        &format!("pass:{P12_PASSWORD}"),
        "-out",
        name,
    ]);
    if legacy {
        command.arg("-legacy");
    }
    if !extra.contains(&"-nokeys") {
        command.args(["-inkey", "client.key"]);
    }
    command.args(extra);
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "openssl pkcs12 {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join(name)
}

fn pem_cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

// ---------------------------------------------------------------- PKCS#12

#[test]
fn pkcs12_identity_reads_modern_and_legacy_openssl_bundles() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let pki = TestPki::new();
    let leaf = pem_cert(&pki.path("client.crt"));
    let ca = pem_cert(&pki.path("ca.crt"));
    for (name, legacy) in [("modern.p12", false), ("legacy.p12", true)] {
        let path = export_p12(&openssl, pki.dir.path(), name, legacy, &[]);
        let bytes = std::fs::read(&path).unwrap();
        let (chain, key) = input::pkcs12_identity(&path, &bytes, P12_PASSWORD)
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(chain, vec![leaf.clone(), ca.clone()], "{name}: leaf first");
        assert!(matches!(key, PrivateKeyDer::Pkcs8(_)), "{name}: PKCS#8");
        // The key is the one of the leaf: rustls accepts the pair.
        let (chain, key) = tls::client_identity_from_pkcs12(&path, P12_PASSWORD)
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_client_auth_cert(chain, key)
            .unwrap_or_else(|err| panic!("{name}: {err}"));
    }
}

#[test]
fn pkcs12_identity_errors_are_clear() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let pki = TestPki::new();
    let modern = export_p12(&openssl, pki.dir.path(), "modern.p12", false, &[]);
    let bytes = std::fs::read(&modern).unwrap();
    let err = input::pkcs12_identity(&modern, &bytes, "wrong").unwrap_err();
    assert!(matches!(err, InputError::WrongPassword { .. }), "{err}");
    assert!(err.to_string().contains("wrong PKCS#12 password"), "{err}");

    let certs_only = export_p12(&openssl, pki.dir.path(), "certs.p12", false, &["-nokeys"]);
    let bytes = std::fs::read(&certs_only).unwrap();
    let err = input::pkcs12_identity(&certs_only, &bytes, P12_PASSWORD).unwrap_err();
    assert!(
        matches!(err, InputError::NoPrivateKeyInPkcs12 { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("certs.p12"), "names the file: {text}");
    assert!(text.contains("holds no private key"), "{text}");

    let pem = std::fs::read(pki.path("client.crt")).unwrap();
    let err = input::pkcs12_identity(Path::new("client.crt"), &pem, "x").unwrap_err();
    assert!(err.to_string().contains("it is PEM"), "{err}");
    for garbage in [&b""[..], b"\x30", b"\x30\x03\x02\x01\x03", b"garbage"] {
        assert!(input::pkcs12_identity(Path::new("g.p12"), garbage, "x").is_err());
    }

    let err = tls::client_identity_from_pkcs12(&modern, "wrong").unwrap_err();
    assert!(
        matches!(
            err,
            TlsConfigError::ClientPkcs12(InputError::WrongPassword { .. })
        ),
        "{err}"
    );
    let err = tls::client_identity_from_pkcs12(&pki.path("missing.p12"), "x").unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[test]
fn pkcs12_identity_writes_nothing_to_disk() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let pki = TestPki::new();
    let path = export_p12(&openssl, pki.dir.path(), "id.p12", false, &[]);
    let listing = || {
        let mut names: Vec<_> = std::fs::read_dir(pki.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing();
    tls::client_identity_from_pkcs12(&path, P12_PASSWORD).unwrap();
    assert_eq!(listing(), before);
}

// ------------------------------------------------------------ mtls client

#[tokio::test]
async fn cert_and_key_get_the_welcome_from_a_required_server() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    let run = client(&pki, &with(&t, &IDENTITY), &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, WELCOME, "{run:?}");
    assert_eq!(run.stderr, "", "quiet without -v: {run:?}");
}

#[tokio::test]
async fn a_p12_made_by_openssl_gets_the_welcome() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let pki = TestPki::new();
    export_p12(&openssl, pki.dir.path(), "modern.p12", false, &[]);
    export_p12(&openssl, pki.dir.path(), "legacy.p12", true, &[]);
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/whoami");
    for p12 in ["modern.p12", "legacy.p12"] {
        let args = [
            "--cacert",
            "ca.crt",
            "--p12",
            p12,
            "--password-env",
            "CLIENT_P12_PASSWORD",
        ];
        let run = client(
            &pki,
            &with(&t, &args),
            &[("CLIENT_P12_PASSWORD", P12_PASSWORD)],
        )
        .await;
        assert_eq!(run.code, Some(0), "{p12}: {run:?}");
        let whoami: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(
            whoami["identity"]["common_name"], "client",
            "{p12}: {run:?}"
        );
    }
}

#[tokio::test]
async fn a_wrong_or_missing_p12_password_exits_2_with_a_clear_message() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let pki = TestPki::new();
    export_p12(&openssl, pki.dir.path(), "id.p12", false, &[]);
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    let args = [
        "--cacert",
        "ca.crt",
        "--p12",
        "id.p12",
        "--password-env",
        "CLIENT_P12_PASSWORD",
    ];
    let run = client(&pki, &with(&t, &args), &[("CLIENT_P12_PASSWORD", "nope")]).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr
            .contains("`id.p12`: wrong PKCS#12 password (the integrity check failed)"),
        "{run:?}"
    );
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert_eq!(run.stdout, "", "{run:?}");

    let run = client(&pki, &with(&t, &args), &[]).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr
            .contains("the environment variable CLIENT_P12_PASSWORD is not set"),
        "{run:?}"
    );
}

#[tokio::test]
async fn a_required_server_without_a_client_certificate_exits_1_and_says_how_to_send_one() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    let run = client(&pki, &with(&t, &["--cacert", "ca.crt"]), &[]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stdout, "", "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line: {run:?}");
    assert!(
        run.stderr.contains("requires a client certificate"),
        "{run:?}"
    );
    assert!(run.stderr.contains("certificate_required"), "{run:?}");
    assert!(run.stderr.contains("--cert FILE --key FILE"), "{run:?}");
    assert!(run.stderr.contains("--p12 FILE"), "{run:?}");
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_explained() {
    let pki = TestPki::new();
    let (cert, key) = pki.write("stranger", &pki.other_ca_client);
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    let args = [
        "--cacert",
        "ca.crt",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    let run = client(&pki, &with(&t, &args), &[]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("does not trust the issuer of our client certificate (TLS alert unknown_ca)"),
        "{run:?}"
    );
    assert!(run.stderr.contains("CN=mtls development CA"), "{run:?}");
}

#[tokio::test]
async fn an_untrusted_server_exits_1_with_the_unknown_issuer_reason() {
    let pki = TestPki::new();
    // No --cacert: the "system" roots, made deterministic with
    // SSL_CERT_FILE (read by rustls-native-certs), hold another CA only.
    let other = mtls::pki::Authority::generate("unrelated root").unwrap();
    std::fs::write(pki.path("system-roots.pem"), other.cert_pem()).unwrap();
    let empty_dir = pki.path("no-cert-dir");
    std::fs::create_dir(&empty_dir).unwrap();
    let server = TestServer::start(pki.config(ClientAuthMode::Off)).await;
    let t = target(&server, "/");
    let run = client(
        &pki,
        &with(&t, &[]),
        &[
            (
                "SSL_CERT_FILE",
                pki.path("system-roots.pem").to_str().unwrap(),
            ),
            ("SSL_CERT_DIR", empty_dir.to_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stdout, "", "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line: {run:?}");
    assert!(
        run.stderr.contains(&format!(
            "the server certificate of {DOMAIN}:{} was rejected: unknown issuer: no chain to a trusted CA (the certificate's issuer is `CN=mtls development CA`)",
            server.addr.port()
        )),
        "{run:?}"
    );
    assert!(run.stderr.contains("--cacert FILE"), "{run:?}");

    // The same with an explicit but wrong --cacert.
    let run = client(&pki, &with(&t, &["--cacert", "system-roots.pem"]), &[]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("unknown issuer"), "{run:?}");
}

#[tokio::test]
async fn insecure_skips_server_verification_only_when_asked() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    let args = ["-k", "--cert", "client.crt", "--key", "client.key"];
    let run = client(
        &pki,
        &with(&t, &args),
        &[
            ("SSL_CERT_FILE", "/nonexistent"),
            ("SSL_CERT_DIR", "/nonexistent"),
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, WELCOME, "{run:?}");

    let run = client(
        &pki,
        &with(
            &t,
            &[
                "--insecure",
                "-v",
                "--cert",
                "client.crt",
                "--key",
                "client.key",
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("will not be verified"), "{run:?}");
    assert!(
        run.stderr.contains("NOT verified (-k/--insecure)"),
        "{run:?}"
    );
}

#[tokio::test]
async fn verbose_shows_the_connection_the_chain_and_the_response_head() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    let mut args = IDENTITY.to_vec();
    args.push("-v");
    let run = client(&pki, &with(&t, &args), &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, WELCOME, "stdout holds the body only: {run:?}");
    let err = &run.stderr;
    for needle in [
        &format!(
            "* Connected to {DOMAIN} (127.0.0.1) port {}",
            server.addr.port()
        ),
        "* TLS: TLSv1.3, cipher suite TLS13_",
        "ALPN h2",
        "* Server certificate chain (checked against --cacert ca.crt (1 certificate)):",
        &format!("*  0 subject:   CN={DOMAIN}"),
        "*    issuer:    CN=mtls development CA",
        "*    not after: ",
        "* Client certificate: sent CN=client (the server asked for one)",
        "> GET / HTTP/2",
        "< HTTP/2 200",
        "< content-type: application/json",
    ] {
        assert!(err.contains(needle), "missing {needle:?}: {run:?}");
    }

    // Without a certificate against a server that does not ask for one.
    let server = TestServer::start(pki.config(ClientAuthMode::Off)).await;
    let t = target(&server, "/");
    let run = client(&pki, &with(&t, &["--cacert", "ca.crt", "-v"]), &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stderr
            .contains("* Client certificate: not sent (the server did not ask for one)"),
        "{run:?}"
    );
}

#[tokio::test]
async fn post_with_data_reaches_the_server_and_a_405_exits_1_with_the_body() {
    let pki = TestPki::new();
    std::fs::write(pki.path("body.json"), "{\"hello\":1}").unwrap();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    for data in [
        &["-X", "POST", "-d", "{\"hello\":1}"][..],
        &["-d", "@body.json"],
    ] {
        let mut args = IDENTITY.to_vec();
        args.extend_from_slice(data);
        args.push("-v");
        let run = client(&pki, &with(&t, &args), &[]).await;
        assert_eq!(run.code, Some(1), "{run:?}");
        let body: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(body["error"], "method not allowed", "{run:?}");
        assert_eq!(body["allow"], "GET, HEAD", "{run:?}");
        assert!(run.stderr.contains("> POST / HTTP/2"), "{run:?}");
        assert!(run.stderr.contains("> (11 bytes of body)"), "{run:?}");
        assert!(run.stderr.contains("< allow: GET, HEAD"), "{run:?}");
        assert!(
            run.stderr
                .contains("error: the server answered HTTP 405 Method Not Allowed"),
            "{run:?}"
        );
    }
}

#[tokio::test]
async fn headers_are_sent_and_http_errors_exit_1() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/headers");
    let mut args = IDENTITY.to_vec();
    args.extend([
        "-H",
        "X-Request-Id: abc 123",
        "-H",
        "Accept: application/json",
    ]);
    let run = client(&pki, &with(&t, &args), &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let dump: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(dump["headers"]["x-request-id"], "abc 123", "{run:?}");
    assert_eq!(dump["headers"]["accept"], "application/json", "{run:?}");
    assert_eq!(dump["method"], "GET", "{run:?}");

    let t = target(&server, "/nope");
    let run = client(&pki, &with(&t, &IDENTITY), &[]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.contains("\"error\":\"not found\""), "{run:?}");
}

#[tokio::test]
async fn resolve_works_like_curls_and_ip_urls_work_without_it() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let port = server.addr.port();
    let resolve = format!("{DOMAIN}:{port}:127.0.0.1");
    let url = format!("https://{DOMAIN}:{port}/hello");
    let mut args = vec!["--resolve", &resolve, &url, "-v"];
    args.extend(IDENTITY);
    let run = client(&pki, &args, &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout.trim(), "Hello client!", "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "* Resolved {DOMAIN}:{port} to 127.0.0.1 (--resolve)"
        )),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains(&format!("> :authority: {DOMAIN}:{port}")),
        "the URL's name is the authority: {run:?}"
    );

    // The server certificate is also valid for 127.0.0.1.
    let url = format!("https://127.0.0.1:{port}/");
    let mut args = vec![url.as_str()];
    args.extend(IDENTITY);
    let run = client(&pki, &args, &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, WELCOME, "{run:?}");

    // --servername with a name the certificate does not have is refused.
    let url = format!("https://127.0.0.1:{port}/");
    let mut args = vec![url.as_str(), "--servername", "wrong.example"];
    args.extend(IDENTITY);
    let run = client(&pki, &args, &[]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("name mismatch: expected `wrong.example`"),
        "{run:?}"
    );
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let t = target(&server, "/");
    for (args, message) in [
        (
            with(&t, &["--cacert", "missing.crt"]),
            "--cacert: cannot read `missing.crt`",
        ),
        (
            with(
                &t,
                &[
                    "--cacert",
                    "ca.crt",
                    "--cert",
                    "client.crt",
                    "--key",
                    "missing.key",
                ],
            ),
            "--key: cannot read `missing.key`",
        ),
        (
            with(
                &t,
                &[
                    "--cacert",
                    "ca.crt",
                    "--cert",
                    "client.crt",
                    "--key",
                    "server.key",
                ],
            ),
            "the private key `server.key` (--key) does not match the certificate `client.crt` (--cert)",
        ),
        (
            with(
                &t,
                &[
                    "--cacert",
                    "ca.crt",
                    "--cert",
                    "client.crt",
                    "--key",
                    "client.crt",
                ],
            ),
            "--key `client.crt` holds no private key",
        ),
        (
            with(&t, &["--cacert", "ca.crt", "-d", "@missing.txt"]),
            "-d @missing.txt: cannot read `missing.txt`",
        ),
        (
            with(&t, &["--cacert", "ca.crt", "-H", "no colon"]),
            "-H `no colon` is not `Name: value`",
        ),
        (
            vec!["http://127.0.0.1:1/", "--cacert", "ca.crt"],
            "is not an https:// URL",
        ),
        (vec!["not a url", "--cacert", "ca.crt"], "is not a URL"),
        (
            vec!["--resolve", "nonsense", "https://x/", "--cacert", "ca.crt"],
            "--resolve `nonsense` is not HOST:PORT:ADDR",
        ),
        (vec!["https://x/", "--cert", "client.crt"], "--key <FILE>"),
    ] {
        let run = client(&pki, &args, &[]).await;
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(run.stderr.contains(message), "{args:?}: {run:?}");
        assert!(!run.stderr.contains("panicked"), "{args:?}: {run:?}");
    }
}

#[tokio::test]
async fn an_unreachable_server_exits_1() {
    let pki = TestPki::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("https://127.0.0.1:{port}/");
    let run = client(&pki, &[&url, "--cacert", "ca.crt"], &[]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{run:?}"
    );
}

/// The system `openssl s_server`, speaking TLS 1.2 and http/1.1 only and
/// requiring a client certificate: the HTTP/1.1 path and the TLS 1.2 alert.
#[tokio::test]
async fn http1_and_tls12_with_an_openssl_server() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let pki = TestPki::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(&openssl)
        .current_dir(pki.dir.path())
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            "server.crt",
            "-key",
            "server.key",
            "-tls1_2",
            "-alpn",
            "http/1.1",
            "-Verify",
            "1",
            "-CAfile",
            "ca.crt",
            "-www",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "s_server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let resolve = format!("{DOMAIN}:{port}:127.0.0.1");
    let url = format!("https://{DOMAIN}:{port}/");
    let mut args = vec!["--resolve", &resolve, &url, "-v"];
    args.extend(IDENTITY);
    let run = client(&pki, &args, &[]).await;
    let without = client(
        &pki,
        &["--resolve", &resolve, &url, "--cacert", "ca.crt"],
        &[],
    )
    .await;
    let _ = server.kill();
    let _ = server.wait();

    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("* TLS: TLSv1.2"), "{run:?}");
    assert!(run.stderr.contains("ALPN http/1.1"), "{run:?}");
    assert!(run.stderr.contains("> GET / HTTP/1.1"), "{run:?}");
    assert!(
        run.stderr.contains(&format!("> host: {DOMAIN}:{port}")),
        "{run:?}"
    );
    assert!(run.stderr.contains("< HTTP/1.0 200 OK"), "{run:?}");
    assert!(run.stdout.contains("s_server"), "{run:?}");

    assert_eq!(without.code, Some(1), "{without:?}");
    assert!(without.stderr.contains("client certificate"), "{without:?}");
    assert!(
        without.stderr.contains("--cert FILE --key FILE"),
        "{without:?}"
    );
}

#[tokio::test]
async fn a_silent_server_times_out_with_exit_1() {
    let pki = TestPki::new();
    // Connections complete in the kernel's backlog; nothing ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}/", silent.local_addr().unwrap().port());
    let started = std::time::Instant::now();
    let run = client(
        &pki,
        &[&url, "--cacert", "ca.crt", "--timeout", "300ms"],
        &[],
    )
    .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("within 300ms (--timeout)"), "{run:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    drop(silent);
}
