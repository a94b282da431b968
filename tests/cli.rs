//! The `mtls` binary as users run it: configuration errors, `.env`,
//! start-up lines, graceful shutdown and `mtls pki init`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use common::{ClientOptions, ServeProcess, TestPki, mtls_command, received_alert};
use rustls::AlertDescription;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `mtls serve` in the PKI directory with extra arguments; it must fail.
fn serve_fails(pki: &TestPki, args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut command = mtls_command(pki.dir.path());
    command.arg("serve").args(args).env("LISTEN", "127.0.0.1:0");
    // The PKI's files are at the top of its directory, not under pki/.
    command
        .env("SERVER_CERT", "server.crt")
        .env("SERVER_KEY", "server.key")
        .env("CLIENT_CA", "ca.crt");
    for (name, value) in envs {
        command.env(name, value);
    }
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    stderr(&out)
}

#[test]
fn a_missing_certificate_file_names_the_file_the_flag_and_the_fix() {
    let pki = TestPki::new();
    let err = serve_fails(&pki, &["--cert", "nope.crt"], &[]);
    assert!(
        err.contains("cannot read server certificate (--cert / SERVER_CERT) `nope.crt`"),
        "{err}"
    );
    assert!(err.contains("mtls pki init"), "{err}");
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
}

#[test]
fn a_file_without_a_certificate_is_refused() {
    let pki = TestPki::new();
    std::fs::write(pki.path("empty.crt"), "just text\n").unwrap();
    let err = serve_fails(&pki, &["--cert", "empty.crt"], &[]);
    assert!(
        err.contains("`empty.crt` holds no `BEGIN CERTIFICATE` block"),
        "{err}"
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let pki = TestPki::new();
    let err = serve_fails(&pki, &["--key", "client.key"], &[]);
    assert!(
        err.contains("server private key `client.key` does not match the certificate `server.crt`"),
        "{err}"
    );
}

#[test]
fn a_key_file_without_a_key_is_refused() {
    let pki = TestPki::new();
    common::write_secret(
        &pki.path("not-a-key.pem"),
        &std::fs::read(pki.path("server.crt")).unwrap(),
    );
    let err = serve_fails(&pki, &["--key", "not-a-key.pem"], &[]);
    assert!(err.contains("holds no private key"), "{err}");
}

#[test]
fn an_unknown_mode_is_refused() {
    let pki = TestPki::new();
    let err = serve_fails(&pki, &["--client-auth", "sometimes"], &[]);
    assert!(err.contains("invalid value 'sometimes'"), "{err}");
    assert!(err.contains("off, optional, required"), "{err}");

    let err = serve_fails(&pki, &[], &[("CLIENT_AUTH", "maybe")]);
    assert!(err.contains("invalid value 'maybe'"), "{err}");

    let err = serve_fails(&pki, &[], &[("MTLS_ENABLED", "perhaps")]);
    assert!(
        err.contains("MTLS_ENABLED has the value `perhaps`"),
        "{err}"
    );
}

#[test]
fn a_missing_client_ca_is_refused_when_client_auth_is_on() {
    let pki = TestPki::new();
    let err = serve_fails(
        &pki,
        &["--client-auth", "required", "--client-ca", "missing-ca.crt"],
        &[],
    );
    assert!(
        err.contains("client CA bundle (--client-ca / CLIENT_CA) `missing-ca.crt`"),
        "{err}"
    );
}

#[test]
fn a_port_in_use_is_refused() {
    let pki = TestPki::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = serve_fails(&pki, &["--listen", &addr], &[]);
    assert!(
        err.contains(&format!("cannot listen on {addr} (--listen / LISTEN)")),
        "{err}"
    );
    assert!(err.contains("another process is listening there"), "{err}");
}

#[test]
fn a_missing_env_file_is_refused() {
    let pki = TestPki::new();
    let err = serve_fails(&pki, &["--env-file", "missing.env"], &[]);
    assert!(
        err.contains("cannot load the env file `missing.env`"),
        "{err}"
    );
}

/// Writes the PKI under `pki/` as `./run.sh` would, with a `.env`.
fn seed_layout(pki: &TestPki, env_file: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("pki")).unwrap();
    for name in [
        "ca.crt",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ] {
        std::fs::copy(pki.path(name), root.path().join("pki").join(name)).unwrap();
    }
    std::fs::write(root.path().join(".env"), env_file).unwrap();
    root
}

#[tokio::test]
async fn dotenv_enables_mtls_and_sigterm_exits_cleanly() {
    let pki = TestPki::new();
    let root = seed_layout(&pki, "# comment\nMTLS_ENABLED=true\n");
    let mut command = mtls_command(root.path());
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    let mut server = ServeProcess::start(command);
    server.wait_for("mTLS is enabled (client certificates required; trusted CAs: pki/ca.crt)");

    let anonymous = common::get(server.addr, &ClientOptions::new(&pki), "/").await;
    assert_eq!(
        received_alert(&anonymous),
        Some(AlertDescription::CertificateRequired)
    );
    let with_cert = ClientOptions::new(&pki).identity(pki.client());
    let answer = common::get(server.addr, &with_cert, "/").await.unwrap();
    assert_eq!(answer.status, 200);
    server.wait_for("TLS handshake failed");
    let access = server.wait_for("mtls::access");
    for field in [
        "client_cn=\"client\"",
        "method=GET",
        "path=\"/\"",
        "status=200",
        "duration_us=",
    ] {
        assert!(
            access.contains(field),
            "access line lacks {field}: {access}"
        );
    }

    let (status, log) = server.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("received SIGTERM")),
        "{log:?}"
    );
}

#[tokio::test]
async fn the_commented_seed_line_leaves_client_auth_off() {
    let pki = TestPki::new();
    let root = seed_layout(&pki, "#MTLS_ENABLED=true\n");
    let mut command = mtls_command(root.path());
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    let mut server = ServeProcess::start(command);
    server.wait_for("client auth is disabled");
    let answer = common::get(server.addr, &ClientOptions::new(&pki), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
}

/// The process's worker threads, by the name `mtls serve` gives them.
fn worker_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "mtls-worker")
        .count()
}

/// `--worker-threads 1` serves from the main thread (no worker thread at
/// all); more threads are that many workers. Both serve.
#[tokio::test]
async fn worker_threads_sets_the_threads_that_serve() {
    let pki = TestPki::new();
    let root = seed_layout(&pki, "MTLS_ENABLED=true\n");
    for (threads, line, workers) in [
        ("1", "(1 worker thread)", 0),
        ("3", "(3 worker threads)", 3),
    ] {
        let mut command = mtls_command(root.path());
        // No file watch: a reload's blocking thread carries the same name.
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--watch", "false"])
            .env("WORKER_THREADS", threads);
        let mut server = ServeProcess::start(command);
        server.wait_for(line);
        let options = ClientOptions::new(&pki).identity(pki.client());
        for _ in 0..4 {
            let answer = common::get(server.addr, &options, "/").await.unwrap();
            assert_eq!(answer.status, 200);
        }
        assert_eq!(worker_threads(server.child.id()), workers, "{threads}");
    }
    for wrong in ["0", "1025"] {
        let refused = serve_fails(&pki, &["--worker-threads", wrong], &[]);
        assert!(refused.contains("--worker-threads"), "{refused}");
    }
}

#[tokio::test]
async fn flags_beat_the_environment_which_beats_dotenv() {
    let pki = TestPki::new();
    let root = seed_layout(&pki, "MTLS_ENABLED=true\nCLIENT_AUTH=required\n");

    // The environment's CLIENT_AUTH wins over the file's.
    let mut command = mtls_command(root.path());
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("CLIENT_AUTH", "optional");
    let mut server = ServeProcess::start(command);
    server.wait_for("mTLS is optional");
    drop(server);

    // A flag wins over both.
    let mut command = mtls_command(root.path());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--client-auth", "off"])
        .env("CLIENT_AUTH", "optional");
    let mut server = ServeProcess::start(command);
    server.wait_for("client auth is disabled");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let pki = TestPki::new();
    let root = seed_layout(&pki, "");
    let mut command = mtls_command(root.path());
    command.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"]);
    let mut server = ServeProcess::start(command);
    let _ = common::get(server.addr, &ClientOptions::new(&pki), "/nope")
        .await
        .unwrap();
    let access = server.wait_for("\"target\":\"mtls::access\"");
    let line: serde_json::Value = serde_json::from_str(&access).expect(&access);
    assert_eq!(line["fields"]["status"], 404);
    assert_eq!(line["fields"]["path"], "\"/nope\"");
    assert_eq!(line["fields"]["client_cn"], "\"-\"");
    let startup = server.wait_for("client auth is disabled");
    serde_json::from_str::<serde_json::Value>(&startup).expect(&startup);
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_promptly() {
    let pki = TestPki::new();
    let root = seed_layout(&pki, "");
    let mut command = mtls_command(root.path());
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    let server = ServeProcess::start(command);

    // An idle HTTP/1.1 keep-alive connection must not hold shutdown for 30 s.
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(mtls::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAnyServer))
            .with_no_client_auth(),
    ));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let started = std::time::Instant::now();
    let (status, _) = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The server closed the idle connection.
    let n = tls.read(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0);
}

/// Only for the shutdown test, which is about connections, not trust.
#[derive(Debug)]
struct AcceptAnyServer;

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        mtls::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[test]
fn pki_init_writes_private_keys_0600_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let init = |extra: &[&str]| {
        mtls_command(dir.path())
            .args(["pki", "init", "--client", "client", "--client", "alice"])
            .args(extra)
            .output()
            .unwrap()
    };
    let first = init(&[]);
    assert!(first.status.success(), "{}", stderr(&first));
    for name in ["ca", "server", "client", "alice"] {
        let key = dir.path().join("pki").join(format!("{name}.key"));
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
        assert!(dir.path().join("pki").join(format!("{name}.crt")).is_file());
    }
    // The directory it created is the owner's alone, so are the bundles.
    let mode_of =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode_of(&dir.path().join("pki")), 0o700);
    assert_eq!(mode_of(&dir.path().join("pki/client.p12")), 0o600);
    let before = std::fs::read(dir.path().join("pki/ca.crt")).unwrap();

    let again = init(&[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("refusing to overwrite existing files"),
        "{}",
        stderr(&again)
    );
    assert!(stderr(&again).contains("--force"));
    assert_eq!(
        std::fs::read(dir.path().join("pki/ca.crt")).unwrap(),
        before
    );

    // --force replaces, and a key made world-readable meanwhile is 0600 again.
    let key = dir.path().join("pki/ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let bundle = dir.path().join("pki/alice.p12");
    std::fs::set_permissions(&bundle, std::fs::Permissions::from_mode(0o644)).unwrap();
    let forced = init(&["--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_ne!(
        std::fs::read(dir.path().join("pki/ca.crt")).unwrap(),
        before
    );
    assert_eq!(mode_of(&key), 0o600);
    assert_eq!(mode_of(&bundle), 0o600);

    // `pki client` adds a key and a bundle, private as well.
    let added = mtls_command(dir.path())
        .args(["pki", "client", "bob"])
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", stderr(&added));
    assert_eq!(mode_of(&dir.path().join("pki/bob.key")), 0o600);
    assert_eq!(mode_of(&dir.path().join("pki/bob.p12")), 0o600);
}

#[test]
fn pki_init_certificates_have_the_promised_extensions() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let pki = TestPki::new();
    let text = |name: &str| {
        let out = std::process::Command::new(&openssl)
            .args(["x509", "-noout", "-text", "-in"])
            .arg(pki.path(name))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let ca = text("ca.crt");
    assert!(ca.contains("CA:TRUE"), "{ca}");
    assert!(ca.contains("Certificate Sign, CRL Sign"), "{ca}");
    assert!(ca.contains("ASN1 OID: prime256v1"), "{ca}");
    let server = text("server.crt");
    assert!(server.contains("TLS Web Server Authentication"), "{server}");
    assert!(
        server.contains("DNS:api.flaskmtlsauth.com, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1"),
        "{server}"
    );
    let client = text("client.crt");
    assert!(client.contains("Subject: CN = client"), "{client}");
    assert!(client.contains("TLS Web Client Authentication"), "{client}");

    // The chain verifies with OpenSSL for each purpose.
    for (cert, purpose) in [("server.crt", "sslserver"), ("client.crt", "sslclient")] {
        let out = std::process::Command::new(&openssl)
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(pki.path("ca.crt"))
            .arg(pki.path(cert))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cert}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn pki_init_refuses_client_names_that_would_clobber_files() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["server", "ca", "../evil", ".hidden"] {
        let out = mtls_command(dir.path())
            .args(["pki", "init", "--client", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&out).contains("is not a usable client name"),
            "{bad}: {}",
            stderr(&out)
        );
    }
    assert!(!dir.path().join("pki").exists());
}

#[test]
fn health_probes_the_admin_endpoint_even_when_mtls_is_required() {
    let pki = TestPki::new();
    let root = seed_layout(&pki, "MTLS_ENABLED=true\n");
    let mut command = mtls_command(root.path());
    command.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let mut server = ServeProcess::start(command);
    server.wait_for("mTLS is enabled");
    let admin = server.admin_addr().to_string();

    let probe = |addr: &str| {
        mtls_command(root.path())
            .args(["health", "--admin-listen", addr])
            .output()
            .unwrap()
    };
    let healthy = probe(&admin);
    assert_eq!(healthy.status.code(), Some(0), "{}", stderr(&healthy));
    assert_eq!(
        String::from_utf8_lossy(&healthy.stdout),
        "healthy: {\"status\":\"ok\"}\n"
    );

    let (status, _) = server.terminate();
    assert_eq!(status.code(), Some(0));
    let unhealthy = probe(&admin);
    assert_eq!(unhealthy.status.code(), Some(1));
    let text = String::from_utf8_lossy(&unhealthy.stdout);
    assert!(
        text.starts_with(&format!(
            "unhealthy: cannot connect to the admin endpoint {admin}"
        )),
        "{text}"
    );
}

#[test]
fn health_refuses_an_admin_endpoint_that_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let out = mtls_command(dir.path()).args(["health"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the admin endpoint is off"),
        "{}",
        stderr(&out)
    );
}

/// Access-log lines are batched when standard error is not a terminal, but
/// none is lost or reordered: each appears within the flush interval, the
/// shutdown lines come after them, and lines still pending at exit are
/// written out.
#[tokio::test]
async fn batched_access_lines_arrive_in_order_and_at_exit() {
    let pki = TestPki::new();
    let root = seed_layout(&pki, "");
    let mut command = mtls_command(root.path());
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    let mut server = ServeProcess::start(command);
    server.wait_for("listening on");
    let options = ClientOptions::new(&pki);

    let started = std::time::Instant::now();
    let answer = common::get(server.addr, &options, "/healthz")
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    server.wait_for("path=\"/healthz\"");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "the access line took {:?}",
        started.elapsed()
    );

    // Requests right before SIGTERM: their lines are still pending when the
    // server starts shutting down.
    for path in ["/", "/headers", "/nowhere"] {
        common::get(server.addr, &options, path).await.unwrap();
    }
    let (status, log) = server.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{}", log.join("\n"));
    let position = |needle: &str| {
        log.iter()
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{}", log.join("\n")))
    };
    let shutdown = position("received SIGTERM");
    let lines = ["path=\"/\"", "path=\"/headers\"", "path=\"/nowhere\""].map(position);
    assert!(
        lines[0] < lines[1] && lines[1] < lines[2] && lines[2] < shutdown,
        "{lines:?}, shutdown at {shutdown}:\n{}",
        log.join("\n")
    );
}

/// `mtls serve` on the seed layout with `RUST_LOG` set, listening; the
/// layout's directory lives as long as the returned guard.
fn serve_with_rust_log(pki: &TestPki, rust_log: &str) -> (ServeProcess, tempfile::TempDir) {
    let root = seed_layout(pki, "");
    let mut command = mtls_command(root.path());
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", rust_log);
    let mut server = ServeProcess::start(command);
    server.wait_for("listening on");
    (server, root)
}

#[tokio::test]
async fn rust_log_turns_the_access_log_off_and_keeps_the_rest() {
    let pki = TestPki::new();
    let (server, _root) = serve_with_rust_log(&pki, "info,mtls::access=off");
    let options = ClientOptions::new(&pki);
    for path in ["/", "/nowhere"] {
        common::get(server.addr, &options, path).await.unwrap();
    }
    let (status, log) = server.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{}", log.join("\n"));
    assert!(
        log.iter().any(|line| line.contains("received SIGTERM")),
        "other lines are still logged:\n{}",
        log.join("\n")
    );
    assert!(
        !log.iter().any(|line| line.contains("mtls::access")),
        "an access line despite mtls::access=off:\n{}",
        log.join("\n")
    );
}

/// The plain-text access line is written without a tracing event, so
/// `RUST_LOG` must decide as it would for the event: a directive on a field
/// the access line lacks does not apply to it.
#[tokio::test]
async fn rust_log_field_directives_apply_to_the_access_line_as_to_its_event() {
    let pki = TestPki::new();
    let (mut server, _root) = serve_with_rust_log(&pki, "info,mtls[{error}]=warn");
    common::get(server.addr, &ClientOptions::new(&pki), "/")
        .await
        .unwrap();
    server.wait_for("path=\"/\"");
}
