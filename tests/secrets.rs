//! Secrets of `mtls serve`: secret files that every user can read are
//! refused (at start-up and on reload), `--keylog` writes TLS secrets only
//! when asked and says so loudly, and no key, password or certificate
//! reaches the log, even at trace level.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use base64::Engine;
use common::{
    ClientOptions, ServeProcess, TestPki, TestServer, get, mtls_command, request_with_headers,
};
use hyper::StatusCode;
use mtls::config::ClientAuthMode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A secret file created 0600, as an operator should.
fn write_secret(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).unwrap();
    chmod(path, 0o600);
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `mtls serve` on 127.0.0.1:0 with the test PKI (absolute paths).
fn serve(pki: &TestPki) -> Command {
    let mut command = mtls_command(pki.dir.path());
    command.env_remove("SSLKEYLOGFILE");
    command.env_remove("ALLOW_INSECURE_KEY_PERMISSIONS");
    command.args(["serve", "--listen", "127.0.0.1:0", "--watch", "false"]);
    command.arg("--cert").arg(pki.path("server.crt"));
    command.arg("--key").arg(pki.path("server.key"));
    command.arg("--client-ca").arg(pki.path("ca.crt"));
    command
}

/// Asserts a start-up refusal: exit 2, one line naming the file, its flag
/// and `chmod 600 FILE`.
fn assert_refused(out: &Output, file: &Path, flag: &str) {
    let text = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
    let file = file.display();
    assert!(text.contains(&format!("`{file}` ({flag})")), "{text}");
    assert!(text.contains("by every user of this machine"), "{text}");
    assert!(text.contains(&format!("run `chmod 600 {file}`")), "{text}");
    assert!(text.contains("--allow-insecure-key-permissions"), "{text}");
}

#[test]
fn a_world_readable_server_key_stops_start_up_unless_allowed() {
    let pki = TestPki::new();
    let key = pki.path("server.key");
    chmod(&key, 0o644);
    let out = serve(&pki).output().unwrap();
    assert_refused(&out, &key, "--key / SERVER_KEY");
    assert!(stderr(&out).contains("mode 0644"), "{}", stderr(&out));

    // The override (flag or variable) starts it, with a warning.
    let mut by_flag = serve(&pki);
    by_flag.arg("--allow-insecure-key-permissions");
    let mut by_variable = serve(&pki);
    by_variable.env("ALLOW_INSECURE_KEY_PERMISSIONS", "true");
    for command in [by_flag, by_variable] {
        let mut server = ServeProcess::start(command);
        let warning = server.wait_for("by every user of this machine");
        assert!(warning.contains("WARN"), "{warning}");
        assert!(warning.contains("accepted: --allow-insecure-key-permissions"));
    }

    // Group access is the container/Kubernetes way of sharing a secret: fine.
    chmod(&key, 0o640);
    let server = ServeProcess::start(serve(&pki));
    let (_, log) = server.terminate();
    assert!(!log.iter().any(|l| l.contains("by every user")), "{log:?}");
}

#[test]
fn every_other_secret_file_is_checked_too() {
    let pki = TestPki::new();
    let ticket = pki.path("tickets.key");
    write_secret(&ticket, &[42u8; 32]);
    chmod(&ticket, 0o604);
    let out = serve(&pki)
        .arg("--session-ticket-key-file")
        .arg(&ticket)
        .output()
        .unwrap();
    assert_refused(
        &out,
        &ticket,
        "--session-ticket-key-file / SESSION_TICKET_KEY_FILE",
    );
    assert!(stderr(&out).contains("is readable by every user"));

    let signing = pki.path("identity.key");
    write_secret(&signing, &[7u8; 32]);
    chmod(&signing, 0o666);
    let out = serve(&pki)
        .args([
            "--upstream",
            "http://127.0.0.1:1",
            "--forward-client-cert",
            "signed",
        ])
        .arg("--identity-signing-key-file")
        .arg(&signing)
        .output()
        .unwrap();
    assert_refused(
        &out,
        &signing,
        "--identity-signing-key-file / IDENTITY_SIGNING_KEY_FILE",
    );
    assert!(stderr(&out).contains("is readable and writable by every user"));

    let upstream_key = pki.path("client.key");
    chmod(&upstream_key, 0o644);
    let out = serve(&pki)
        .args(["--upstream", "https://127.0.0.1:1"])
        .arg("--upstream-cert")
        .arg(pki.path("client.crt"))
        .arg("--upstream-key")
        .arg(&upstream_key)
        .output()
        .unwrap();
    assert_refused(&out, &upstream_key, "--upstream-key / UPSTREAM_KEY");

    let bundle = pki.path("upstream.p12");
    std::fs::write(&bundle, b"not checked before the permissions").unwrap();
    chmod(&bundle, 0o606);
    let out = serve(&pki)
        .args(["--upstream", "https://127.0.0.1:1"])
        .arg("--upstream-p12")
        .arg(&bundle)
        .args(["--upstream-p12-password-env", "MTLS_TEST_UPSTREAM_PW"])
        .env("MTLS_TEST_UPSTREAM_PW", "pw")
        .output()
        .unwrap();
    assert_refused(&out, &bundle, "--upstream-p12 / UPSTREAM_P12");
}

#[tokio::test]
async fn a_reload_refuses_a_key_that_became_world_readable() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Off)).await;
    let client = ClientOptions::new(&pki);
    assert_eq!(
        get(server.addr, &client, "/").await.unwrap().status,
        StatusCode::OK
    );

    let key = pki.path("server.key");
    chmod(&key, 0o644);
    let err = server.reloader.reload("test").unwrap_err().to_string();
    assert!(
        err.contains(&format!("chmod 600 {}", key.display())),
        "{err}"
    );
    // The running material stays.
    assert_eq!(
        get(server.addr, &client, "/").await.unwrap().status,
        StatusCode::OK
    );

    chmod(&key, 0o600);
    server.reloader.reload("test").unwrap();
}

fn client_random_lines(text: &str, label: &str) -> usize {
    text.lines()
        .filter(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            parts.len() == 3
                && parts[0] == label
                && parts[1].len() == 64
                && parts[1..]
                    .iter()
                    .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .count()
}

#[tokio::test]
async fn keylog_writes_nss_lines_to_a_private_file_and_warns() {
    let pki = TestPki::new();
    let keylog = pki.path("keys.log");
    let mut server = ServeProcess::start({
        let mut command = serve(&pki);
        command.arg("--keylog").arg(&keylog);
        command
    });
    let warning = server.wait_for("TLS secrets are being written to");
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains(&format!(
            "TLS secrets are being written to {}; anyone with it can decrypt traffic; never in production",
            keylog.display()
        )),
        "{warning}"
    );
    let client = ClientOptions::new(&pki);
    assert_eq!(
        get(server.addr, &client, "/").await.unwrap().status,
        StatusCode::OK
    );
    let tls12 = ClientOptions::new(&pki).tls12_only();
    assert_eq!(
        get(server.addr, &tls12, "/").await.unwrap().status,
        StatusCode::OK
    );

    let text = std::fs::read_to_string(&keylog).unwrap();
    assert_eq!(
        client_random_lines(&text, "CLIENT_HANDSHAKE_TRAFFIC_SECRET"),
        1,
        "{text}"
    );
    assert_eq!(
        client_random_lines(&text, "SERVER_TRAFFIC_SECRET_0"),
        1,
        "{text}"
    );
    assert_eq!(
        client_random_lines(&text, "CLIENT_RANDOM"),
        1,
        "TLS 1.2: {text}"
    );
    assert_eq!(mode_of(&keylog), 0o600);
    let (_, log) = server.terminate();
    let warnings = log
        .iter()
        .filter(|l| l.contains("TLS secrets are being written to"))
        .count();
    assert_eq!(warnings, 2, "first and last start-up line: {log:?}");
}

#[tokio::test]
async fn sslkeylogfile_alone_does_nothing_and_bare_keylog_uses_it() {
    let pki = TestPki::new();
    let keylog = pki.path("sslkeylogfile.log");
    let server = ServeProcess::start({
        let mut command = serve(&pki);
        command.env("SSLKEYLOGFILE", &keylog);
        command
    });
    let client = ClientOptions::new(&pki);
    assert_eq!(
        get(server.addr, &client, "/").await.unwrap().status,
        StatusCode::OK
    );
    let (_, log) = server.terminate();
    assert!(
        !keylog.exists(),
        "SSLKEYLOGFILE without --keylog wrote secrets"
    );
    assert!(!log.iter().any(|l| l.contains("TLS secrets")), "{log:?}");

    let server = ServeProcess::start({
        let mut command = serve(&pki);
        command.arg("--keylog").env("SSLKEYLOGFILE", &keylog);
        command
    });
    assert_eq!(
        get(server.addr, &client, "/").await.unwrap().status,
        StatusCode::OK
    );
    drop(server);
    let text = std::fs::read_to_string(&keylog).unwrap();
    assert_eq!(
        client_random_lines(&text, "CLIENT_TRAFFIC_SECRET_0"),
        1,
        "{text}"
    );

    let out = serve(&pki).arg("--keylog").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("SSLKEYLOGFILE, which is not set"),
        "{}",
        stderr(&out)
    );
}

/// Runs everything that touches a secret at `RUST_LOG=trace`: a handshake
/// with a client certificate, a request proxied to an mTLS upstream with a
/// PKCS#12 identity and a signed identity header, session tickets, a reload;
/// then looks for any of those secrets in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_password_or_certificate_reaches_the_log_at_trace_level() {
    const PASSWORD_VAR: &str = "MTLS_TEST_UPSTREAM_P12_PASSWORD";
    const PASSWORD: &str = "p12-password-never-logged";
    let pki = TestPki::new();
    let made = mtls_command(pki.dir.path())
        .args(["pki", "client", "proxy", "--dir", "."])
        .args(["--p12-password-env", PASSWORD_VAR])
        .env(PASSWORD_VAR, PASSWORD)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let signing_key = b"signing-key-never-logged-0123456789abcdef";
    write_secret(&pki.path("identity.key"), signing_key);
    let ticket_key = [0x5au8; 32];
    write_secret(&pki.path("tickets.key"), &ticket_key);

    let backend = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let mut server = ServeProcess::start({
        let mut command = serve(&pki);
        command
            .env("RUST_LOG", "trace,rustls=trace")
            .env(PASSWORD_VAR, PASSWORD)
            .args(["--client-auth", "optional"])
            .arg("--upstream")
            .arg(format!("https://127.0.0.1:{}", backend.addr.port()))
            .arg("--upstream-ca")
            .arg(pki.path("ca.crt"))
            .arg("--upstream-p12")
            .arg(pki.path("proxy.p12"))
            .args(["--upstream-p12-password-env", PASSWORD_VAR])
            .args(["--forward-client-cert", "apache,azure,xfcc,nginx,signed"])
            .arg("--identity-signing-key-file")
            .arg(pki.path("identity.key"))
            .arg("--session-ticket-key-file")
            .arg(pki.path("tickets.key"));
        command
    });
    let client = ClientOptions::new(&pki).identity(pki.client());
    let answer = get(server.addr, &client, "/whoami").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // The backend saw the proxy's identity from the .p12.
    assert_eq!(answer.json()["identity"]["common_name"], "proxy");

    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    server.wait_for("reloaded certificates");
    // HTTP/2 after the reload, carrying a (stripped) copy of the
    // certificate as a spoofed header; TLS 1.2, whose handshake carries the
    // client certificate in a message rustls can trace.
    let client_b64 = base64::engine::general_purpose::STANDARD.encode(client_der(&pki));
    let h2 = ClientOptions::new(&pki).identity(pki.client()).alpn_h2();
    let again = request_with_headers(
        server.addr,
        &h2,
        "GET",
        "/whoami",
        &[("X-ARR-ClientCert", client_b64.as_str())],
    )
    .await
    .unwrap();
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    let tls12 = ClientOptions::new(&pki).identity(pki.client()).tls12_only();
    let old = get(server.addr, &tls12, "/whoami").await.unwrap();
    assert_eq!(old.status, StatusCode::OK, "{}", old.body);
    let (_, log) = server.terminate();
    let log = log.join("\n");
    assert!(log.contains("TRACE"), "trace logging was on");
    assert!(log.contains("reloaded certificates"), "the reload ran");

    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let server_cert = CertificateDer::from_pem_file(pki.path("server.crt")).unwrap();
    let mut forbidden: Vec<(String, String)> = vec![
        ("a PEM private key".into(), "PRIVATE KEY".into()),
        ("a PEM certificate".into(), "BEGIN CERTIFICATE".into()),
        ("the p12 password".into(), PASSWORD.into()),
        (
            "the signing key".into(),
            String::from_utf8_lossy(signing_key).into_owned(),
        ),
        ("the ticket key (hex)".into(), hex::encode(ticket_key)),
    ];
    // Any 48-byte window of the DER is enough to recognise it, in base64
    // (headers, PEM) or hex/decimal byte dumps (Debug output).
    for (what, der) in [
        ("client certificate", client_der(&pki)),
        ("server certificate", server_cert.as_ref().to_vec()),
        ("server key", key_der(&pki.path("server.key"))),
        ("client key", key_der(&pki.path("client.key"))),
    ] {
        let middle = &der[der.len() / 2..der.len() / 2 + 48];
        forbidden.push((
            format!("the {what} DER in base64"),
            b64(&der)[64..128].to_owned(),
        ));
        forbidden.push((format!("the {what} DER in hex"), hex::encode(middle)));
        forbidden.push((
            format!("the {what} DER as a byte list"),
            format!("{:?}", &middle[..16])
                .trim_matches(['[', ']'])
                .to_owned(),
        ));
    }
    for (what, needle) in forbidden {
        if let Some(line) = log.lines().find(|l| l.contains(&needle)) {
            panic!("{what} is in the log: {line}");
        }
    }
}

fn client_der(pki: &TestPki) -> Vec<u8> {
    CertificateDer::from_pem_slice(pki.client().cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn key_der(path: &Path) -> Vec<u8> {
    PrivateKeyDer::from_pem_file(path)
        .unwrap()
        .secret_der()
        .to_vec()
}
