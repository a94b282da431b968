//! Hot reload: certificates rotated under load lose no request; a broken
//! file keeps the old configuration; file changes and SIGHUP are noticed.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{ClientOptions, ServeProcess, TestPki, TestServer, authority_from, get, mtls_command};
use hyper::StatusCode;
use mtls::cert::CertDetails;
use mtls::config::ClientAuthMode;
use mtls::pki::LeafSpec;

/// Writes a file the way deployment tools do: a temporary file renamed in
/// place, so a reader never sees half of it; 0600, since keys are among
/// the files replaced.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    common::write_secret(&tmp, contents.as_bytes());
    std::fs::rename(&tmp, path).unwrap();
}

/// A new server certificate from the same CA; returns its serial.
fn rotate(pki: &TestPki) -> String {
    let issued = authority_from(pki.dir.path())
        .issue(&LeafSpec::server(common::DOMAIN))
        .unwrap();
    replace(&pki.path("server.key"), &issued.key_pem);
    replace(&pki.path("server.crt"), &issued.cert_pem);
    serial_of(&issued.cert_pem)
}

fn serial_of(pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    CertDetails::from_der(&der).unwrap().serial_hex
}

async fn served_serial(server: &TestServer) -> String {
    let chain = mtls::inspect::fetch_chain(
        &server.addr.to_string(),
        Some(common::DOMAIN),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    CertDetails::from_der(&chain[0]).unwrap().serial_hex
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_rotations_under_load_lose_no_request() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let addr = server.addr;
    let options = Arc::new(ClientOptions::new(&pki).identity(pki.client()));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, ok, failed, options) =
            (stop.clone(), ok.clone(), failed.clone(), options.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match get(addr, &options, "/").await {
                    Ok(answer) if answer.status == StatusCode::OK => {
                        ok.fetch_add(1, Ordering::Relaxed)
                    }
                    other => {
                        eprintln!("request failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })
    };
    let mut last = String::new();
    for _ in 0..20 {
        last = rotate(&pki);
        let reloader = server.reloader.clone();
        tokio::task::spawn_blocking(move || reloader.reload("test"))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests lost during rotation"
    );
    assert!(
        ok.load(Ordering::Relaxed) >= 20,
        "{} requests",
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(served_serial(&server).await, last);
}

#[tokio::test]
async fn a_broken_file_keeps_the_old_configuration_until_a_good_one_comes() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Off)).await;
    let before = served_serial(&server).await;

    replace(
        &pki.path("server.crt"),
        "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    );
    let err = server.reloader.reload("test").unwrap_err();
    assert!(err.to_string().contains("server certificate"), "{err}");
    assert_eq!(
        served_serial(&server).await,
        before,
        "the old certificate stays"
    );
    let answer = get(server.addr, &ClientOptions::new(&pki), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);

    let after = rotate(&pki);
    server.reloader.reload("test").unwrap();
    assert_eq!(served_serial(&server).await, after);
}

#[tokio::test]
async fn changed_files_are_picked_up_by_polling() {
    let pki = TestPki::new();
    let mut config = pki.config(ClientAuthMode::Off);
    config.watch = Some(Duration::from_millis(100));
    let server = TestServer::start(config).await;
    let new_serial = rotate(&pki);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while served_serial(&server).await != new_serial {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_policy_file_is_reloaded_too() {
    let pki = TestPki::new();
    let policy = pki.path("policy.toml");
    std::fs::write(&policy, "[[rule]]\nname = \"only alice\"\ncn = \"alice\"\n").unwrap();
    let mut config = pki.config(ClientAuthMode::Required);
    config.policy_source.file = Some(policy.clone());
    config.policy = mtls::policy::Policy::from_file(&policy).unwrap();
    let server = TestServer::start(config).await;
    let options = ClientOptions::new(&pki).identity(pki.client());
    assert_eq!(
        get(server.addr, &options, "/").await.unwrap().status,
        StatusCode::FORBIDDEN
    );

    replace(
        &policy,
        "[[rule]]\nname = \"the client\"\ncn = \"client\"\n",
    );
    server.reloader.reload("test").unwrap();
    assert_eq!(
        get(server.addr, &options, "/").await.unwrap().status,
        StatusCode::OK
    );

    replace(&policy, "[[rule]]\nname = \"broken\"\n");
    let err = server.reloader.reload("test").unwrap_err();
    assert!(err.to_string().contains("matches nothing"), "{err}");
    assert_eq!(
        get(server.addr, &options, "/").await.unwrap().status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn sighup_reloads_and_logs_it() {
    let pki = TestPki::new();
    let mut command = mtls_command(pki.dir.path());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--watch", "false"])
        .env("SERVER_CERT", "server.crt")
        .env("SERVER_KEY", "server.key");
    let mut server = ServeProcess::start(command);
    rotate(&pki);
    let pid = server.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    server.wait_for("reloaded certificates, CAs, CRLs and policy (SIGHUP)");

    replace(&pki.path("server.key"), "not a key");
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    let line = server.wait_for("reload failed (SIGHUP)");
    assert!(
        line.contains("the previous configuration stays in use"),
        "{line}"
    );
    let answer = get(server.addr, &ClientOptions::new(&pki), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
}
