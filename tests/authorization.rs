//! Optional mode that explains refusals, required mode that refuses the
//! same certificates in the handshake, allowlists, per-path rules and
//! revocation, over real TLS.

mod common;

use std::process::Command;

use common::{
    ClientOptions, ServeProcess, TestPki, TestServer, authority_from, get, mtls_command,
    received_alert,
};
use hyper::StatusCode;
use mtls::cert::CertDetails;
use mtls::config::{ClientAuthMode, ServeConfig};
use mtls::pki::{self, Issued, LeafSpec, Validity};
use mtls::policy::Policy;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType,
};
use rustls::AlertDescription;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Every kind of certificate a server must refuse, plus good ones.
struct Certs {
    pki: TestPki,
    not_yet_valid: Issued,
    revoked: Issued,
    spiffe: Issued,
    v1: Option<Issued>,
}

impl Certs {
    fn new() -> Self {
        let pki = TestPki::new();
        let ca = authority_from(pki.dir.path());
        let future = LeafSpec {
            validity: Validity {
                not_before: time::OffsetDateTime::now_utc() + time::Duration::days(10),
                not_after: time::OffsetDateTime::now_utc() + time::Duration::days(20),
            },
            ..LeafSpec::client("future")
        };

        pki::add_client(pki.dir.path(), "mallory", false).unwrap();
        pki::revoke(pki.dir.path(), "mallory").unwrap();
        let revoked = Issued {
            cert_pem: std::fs::read_to_string(pki.path("mallory.crt")).unwrap(),
            key_pem: std::fs::read_to_string(pki.path("mallory.key")).unwrap(),
        };

        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "web");
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(
            "spiffe://example.org/ns/prod/sa/web".try_into().unwrap(),
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let spiffe = Issued {
            cert_pem: params.signed_by(&key, ca.issuer()).unwrap().pem(),
            key_pem: key.serialize_pem(),
        };

        Certs {
            not_yet_valid: ca.issue(&future).unwrap(),
            revoked,
            spiffe,
            v1: version_1_certificate(&pki),
            pki,
        }
    }

    fn config(&self, mode: ClientAuthMode) -> ServeConfig {
        let mut config = self.pki.config(mode);
        config.crls = vec![self.pki.path("crl.pem")];
        config
    }
}

/// What the seed's cert-generate.sh makes: `openssl x509 -req` without
/// extensions gives an X.509 version 1 certificate.
fn version_1_certificate(pki: &TestPki) -> Option<Issued> {
    let openssl = common::system_openssl()?;
    let dir = pki.dir.path();
    let run = |args: &[&str]| {
        let out = Command::new(&openssl)
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "v1.key",
    ]);
    run(&[
        "req",
        "-new",
        "-key",
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
    Some(Issued {
        cert_pem: std::fs::read_to_string(dir.join("v1.crt")).unwrap(),
        key_pem: std::fs::read_to_string(dir.join("v1.key")).unwrap(),
    })
}

fn details(issued: &Issued) -> CertDetails {
    let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
    CertDetails::from_der(&der).unwrap()
}

#[tokio::test]
async fn optional_mode_explains_every_refusal() {
    let certs = Certs::new();
    let pki = &certs.pki;
    let server = TestServer::start(certs.config(ClientAuthMode::Optional)).await;

    let cases = vec![
        ("none", None, "no_certificate", "no client certificate was presented".to_owned()),
        (
            "another CA",
            Some(pki.other_ca_client.clone()),
            "unknown_issuer",
            "certificate CN=stranger was issued by CN=some other CA, which is not a trusted CA (trusted: CN=mtls development CA)".to_owned(),
        ),
        (
            "expired",
            Some(pki.expired_client.clone()),
            "expired",
            format!("certificate CN=expired expired at {}", details(&pki.expired_client).not_after),
        ),
        (
            "not yet valid",
            Some(certs.not_yet_valid.clone()),
            "not_yet_valid",
            format!("certificate CN=future is not valid before {}", details(&certs.not_yet_valid).not_before),
        ),
        (
            "revoked",
            Some(certs.revoked.clone()),
            "revoked",
            format!(
                "certificate CN=mallory (serial {}) is revoked by a CRL of CN=mtls development CA",
                details(&certs.revoked).serial
            ),
        ),
        (
            "serverAuth only",
            Some(pki.server_auth_only_client.clone()),
            "bad_key_usage",
            "certificate CN=server-auth-only lacks the clientAuth extended key usage (it has: serverAuth)".to_owned(),
        ),
    ];
    for (what, identity, reason, detail) in cases {
        let mut options = ClientOptions::new(pki);
        if let Some(identity) = identity {
            options = options.identity(identity);
        }
        // Every protected route, and unknown paths, refuse with the reason.
        for path in ["/", "/cert", "/headers", "/whoami", "/hello", "/nope"] {
            let answer = get(server.addr, &options, path).await.unwrap();
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{what} {path}");
            let json = answer.json();
            assert_eq!(json["error"], "client certificate required", "{what}");
            assert_eq!(json["reason"], reason, "{what}: {json}");
            assert_eq!(json["detail"], detail.as_str(), "{what}");
            assert!(!json["hint"].as_str().unwrap().is_empty(), "{what}");
        }
        // Public paths stay open to everyone.
        let health = get(server.addr, &options, "/healthz").await.unwrap();
        assert_eq!(health.status, StatusCode::OK, "{what}");
    }
    let good = ClientOptions::new(pki).identity(pki.client());
    let whoami = get(server.addr, &good, "/whoami").await.unwrap();
    assert_eq!(whoami.status, StatusCode::OK);
    assert_eq!(whoami.json()["identity"]["common_name"], "client");
    assert_eq!(whoami.json()["allowed_by"], "any verified certificate");
    let hello = get(server.addr, &good, "/hello").await.unwrap();
    assert_eq!(hello.body, "Hello client!\n");
    assert_eq!(hello.headers["content-type"], "text/plain; charset=utf-8");
}

#[tokio::test]
async fn required_mode_refuses_the_same_certificates_in_the_handshake() {
    let certs = Certs::new();
    let pki = &certs.pki;
    let server = TestServer::start(certs.config(ClientAuthMode::Required)).await;

    let cases = vec![
        (
            "another CA",
            pki.other_ca_client.clone(),
            AlertDescription::UnknownCA,
        ),
        (
            "expired",
            pki.expired_client.clone(),
            AlertDescription::CertificateExpired,
        ),
        (
            "not yet valid",
            certs.not_yet_valid.clone(),
            AlertDescription::CertificateExpired,
        ),
        (
            "revoked",
            certs.revoked.clone(),
            AlertDescription::CertificateRevoked,
        ),
        (
            "serverAuth only",
            pki.server_auth_only_client.clone(),
            AlertDescription::UnsupportedCertificate,
        ),
    ];
    for (what, identity, alert) in cases {
        let options = ClientOptions::new(pki).identity(identity);
        let result = get(server.addr, &options, "/").await;
        assert_eq!(received_alert(&result), Some(alert), "{what}: {result:?}");
    }
    let good = ClientOptions::new(pki).identity(pki.client());
    assert_eq!(get(server.addr, &good, "/").await.unwrap().status, 200);
}

/// rustls will not even load a version 1 certificate as a client identity,
/// so the system curl (OpenSSL) presents it, as a user of the seed would.
#[tokio::test]
async fn an_x509_v1_certificate_is_explained_and_points_to_mtls_pki() {
    let certs = Certs::new();
    let (Some(_), Some(_)) = (&certs.v1, common::system_curl()) else {
        return;
    };
    let pki = &certs.pki;
    let curl = |server: &TestServer| {
        let mut command = Command::new("curl");
        command
            .current_dir(pki.dir.path())
            .args([
                "-sS",
                "--max-time",
                "10",
                "--cacert",
                "ca.crt",
                "--cert",
                "v1.crt",
                "--key",
                "v1.key",
            ])
            .arg("--resolve")
            .arg(format!(
                "{}:{}:127.0.0.1",
                common::DOMAIN,
                server.addr.port()
            ))
            .arg(format!(
                "https://{}:{}/",
                common::DOMAIN,
                server.addr.port()
            ));
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };

    let server = TestServer::start(certs.config(ClientAuthMode::Optional)).await;
    let out = curl(&server).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["reason"], "unsupported_version", "{json}");
    assert_eq!(
        json["detail"],
        "certificate CN=legacy is X.509 version 1; TLS client certificates must be version 3 (with extensions)"
    );
    assert!(
        json["hint"].as_str().unwrap().contains("mtls pki client"),
        "{json}"
    );

    let server = TestServer::start(certs.config(ClientAuthMode::Required)).await;
    let out = curl(&server).await.unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("alert certificate unknown"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn required_mode_logs_the_reason_of_each_failed_handshake() {
    let certs = Certs::new();
    let pki = &certs.pki;
    let mut command = mtls_command(pki.dir.path());
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--client-auth",
            "required",
            "--crl",
            "crl.pem",
        ])
        .env("SERVER_CERT", "server.crt")
        .env("SERVER_KEY", "server.key")
        .env("CLIENT_CA", "ca.crt");
    let mut server = ServeProcess::start(command);
    for (identity, reason) in [
        (Some(pki.expired_client.clone()), "reason=expired"),
        (Some(certs.revoked.clone()), "reason=revoked"),
        (Some(pki.other_ca_client.clone()), "reason=unknown_issuer"),
        (None, "reason=no_certificate"),
    ] {
        let mut options = ClientOptions::new(pki);
        if let Some(identity) = identity {
            options = options.identity(identity);
        }
        let _ = get(server.addr, &options, "/").await;
        let line = server.wait_for(reason);
        assert!(
            line.contains("TLS handshake failed: client certificate refused"),
            "{line}"
        );
    }
}

#[tokio::test]
async fn a_refused_certificate_never_becomes_the_identity_in_logs() {
    let certs = Certs::new();
    let pki = &certs.pki;
    let mut command = mtls_command(pki.dir.path());
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--client-auth",
            "optional",
            "--crl",
            "crl.pem",
        ])
        .env("SERVER_CERT", "server.crt")
        .env("SERVER_KEY", "server.key")
        .env("CLIENT_CA", "ca.crt");
    let mut server = ServeProcess::start(command);
    for (identity, state) in [
        (pki.expired_client.clone(), "client_cert=rejected:expired"),
        (certs.revoked.clone(), "client_cert=rejected:revoked"),
        (
            pki.other_ca_client.clone(),
            "client_cert=rejected:unknown_issuer",
        ),
    ] {
        let options = ClientOptions::new(pki).identity(identity);
        let answer = get(server.addr, &options, "/").await.unwrap();
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        let line = server.wait_for(state);
        assert!(line.contains("client_cn=\"-\""), "{line}");
        assert!(line.contains("status=403"), "{line}");
    }
    let (_, log) = server.terminate();
    for name in [
        "CN=expired",
        "CN=mallory",
        "CN=stranger",
        "\"expired\"",
        "\"mallory\"",
        "\"stranger\"",
    ] {
        assert!(
            !log.iter()
                .any(|l| l.contains("mtls::access") && l.contains(name)),
            "{name} appears as an identity: {log:#?}"
        );
    }
}

async fn status_of(
    server: &TestServer,
    pki: &TestPki,
    identity: &Issued,
    path: &str,
) -> (StatusCode, serde_json::Value) {
    let options = ClientOptions::new(pki).identity(identity.clone());
    let answer = get(server.addr, &options, path).await.unwrap();
    let json = serde_json::from_str(&answer.body).unwrap_or(serde_json::Value::Null);
    (answer.status, json)
}

#[tokio::test]
async fn azure_allowlists_by_common_name_and_thumbprint() {
    let certs = Certs::new();
    let pki = &certs.pki;
    let alice = authority_from(pki.dir.path())
        .issue(&LeafSpec::client("alice"))
        .unwrap();
    let thumbprint = details(&alice).fingerprints.sha1;

    let mut config = certs.config(ClientAuthMode::Required);
    config
        .policy
        .add_env_allowlists(Some("client, bob"), None)
        .unwrap();
    let server = TestServer::start(config).await;
    assert_eq!(
        status_of(&server, pki, &pki.client(), "/").await.0,
        StatusCode::OK
    );
    let (status, json) = status_of(&server, pki, &alice, "/").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(json["error"], "client certificate not allowed");
    assert_eq!(json["reason"], "not_allowed");
    assert_eq!(
        json["detail"],
        "certificate CN=alice is not allowed on / by the allowlist (ALLOWED_CLIENT_CERT_COMMON_NAMES)"
    );

    // Thumbprints in the spellings people paste: lower case, colons, spaces.
    let pairs: Vec<&str> = (0..20).map(|i| &thumbprint[i * 2..i * 2 + 2]).collect();
    for spelling in [
        thumbprint.to_lowercase(),
        pairs.join(":"),
        pairs.join(" ").to_lowercase(),
    ] {
        let mut config = certs.config(ClientAuthMode::Optional);
        config
            .policy
            .add_env_allowlists(
                None,
                Some(&format!(
                    "0000000000000000000000000000000000000000,{spelling}"
                )),
            )
            .unwrap();
        let server = TestServer::start(config).await;
        assert_eq!(
            status_of(&server, pki, &alice, "/").await.0,
            StatusCode::OK,
            "{spelling}"
        );
        assert_eq!(
            status_of(&server, pki, &pki.client(), "/").await.0,
            StatusCode::FORBIDDEN,
            "{spelling}"
        );
        let (_, whoami) = status_of(&server, pki, &alice, "/whoami").await;
        assert_eq!(
            whoami["allowed_by"],
            "rule `ALLOWED_CLIENT_CERT_THUMBPRINTS`"
        );
    }
}

#[tokio::test]
async fn policy_file_rules_by_fingerprint_and_spiffe_id_with_per_path_rules() {
    let certs = Certs::new();
    let pki = &certs.pki;
    let client_sha256 = details(&pki.client()).fingerprints.sha256;
    let policy = format!(
        r#"
public = ["/healthz", "/status"]

[[rule]]
name = "the client"
sha256 = "{client_sha256}"

[[rule]]
name = "prod workloads"
spiffe_trust_domain = "example.org"

[[rule]]
name = "web exactly"
spiffe_id = "spiffe://example.org/ns/prod/sa/web"
cn = "web"

[[path]]
prefix = "/admin"
rules = ["the client"]

[[path]]
prefix = "/hello"
rules = ["web exactly"]
"#
    );
    let policy_path = pki.path("policy.toml");
    std::fs::write(&policy_path, policy).unwrap();
    let mut config = certs.config(ClientAuthMode::Optional);
    config.policy = Policy::from_file(&policy_path).unwrap();
    let server = TestServer::start(config).await;

    // Global rules: both are allowed on ordinary paths.
    let (status, whoami) = status_of(&server, pki, &pki.client(), "/whoami").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(whoami["allowed_by"], "rule `the client`");
    let (status, whoami) = status_of(&server, pki, &certs.spiffe, "/whoami").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(whoami["allowed_by"], "rule `prod workloads`");
    assert_eq!(
        whoami["identity"]["spiffe_id"],
        "spiffe://example.org/ns/prod/sa/web"
    );

    // Per-path rules: only "the client" under /admin (a 404 behind the
    // policy: the path is allowed but does not exist).
    assert_eq!(
        status_of(&server, pki, &pki.client(), "/admin/x").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, json) = status_of(&server, pki, &certs.spiffe, "/admin/x").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        json["detail"],
        "certificate CN=web is not allowed on /admin/x by the rules for /admin (the client)"
    );
    let (status, hello) = (
        status_of(&server, pki, &certs.spiffe, "/hello").await.0,
        get(
            server.addr,
            &ClientOptions::new(pki).identity(certs.spiffe.clone()),
            "/hello",
        )
        .await
        .unwrap()
        .body,
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hello, "Hello web!\n");
    assert_eq!(
        status_of(&server, pki, &pki.client(), "/hello").await.0,
        StatusCode::FORBIDDEN
    );

    // Public paths need no certificate; anything else without one is refused.
    let anonymous = ClientOptions::new(pki);
    assert_eq!(
        get(server.addr, &anonymous, "/status")
            .await
            .unwrap()
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(server.addr, &anonymous, "/healthz")
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get(server.addr, &anonymous, "/statusx")
            .await
            .unwrap()
            .status,
        StatusCode::FORBIDDEN
    );
}

#[test]
fn an_invalid_policy_file_stops_start_up_naming_the_line() {
    let pki = TestPki::new();
    std::fs::write(
        pki.path("policy.toml"),
        "[[rule]]\nname = \"x\"\ncn = \"a\"\nsha1 = \"nothex\"\n",
    )
    .unwrap();
    let out = mtls_command(pki.dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--client-auth",
            "optional",
            "--policy",
            "policy.toml",
        ])
        .env("SERVER_CERT", "server.crt")
        .env("SERVER_KEY", "server.key")
        .env("CLIENT_CA", "ca.crt")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policy file `policy.toml` (--policy / POLICY): line 2: rule `x`: sha1 `nothex` is not 40 hex digits"),
        "{err}"
    );

    // An allowlist with client auth off could never admit anyone.
    let out = mtls_command(pki.dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SERVER_CERT", "server.crt")
        .env("SERVER_KEY", "server.key")
        .env("ALLOWED_CLIENT_CERT_COMMON_NAMES", "client")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("client auth is off"));
}

#[tokio::test]
async fn revoking_a_client_with_the_cli_locks_it_out() {
    let pki = TestPki::new();
    let dir = pki.dir.path();
    let added = mtls_command(dir)
        .args(["pki", "client", "carol", "--dir", "."])
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let carol = Issued {
        cert_pem: std::fs::read_to_string(pki.path("carol.crt")).unwrap(),
        key_pem: std::fs::read_to_string(pki.path("carol.key")).unwrap(),
    };
    // A CRL that revokes nobody yet.
    let fresh = mtls_command(dir)
        .args(["pki", "crl", "--dir", "."])
        .output()
        .unwrap();
    assert!(
        fresh.status.success(),
        "{}",
        String::from_utf8_lossy(&fresh.stderr)
    );
    let mut config = pki.config(ClientAuthMode::Required);
    config.crls = vec![pki.path("crl.pem")];
    let server = TestServer::start(config.clone()).await;
    assert_eq!(
        status_of(&server, &pki, &carol, "/").await.0,
        StatusCode::OK
    );
    server.stop().await;

    let revoked = mtls_command(dir)
        .args(["pki", "revoke", "carol", "--dir", "."])
        .output()
        .unwrap();
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert!(String::from_utf8_lossy(&revoked.stdout).contains("1 revoked"));
    let server = TestServer::start(config).await;
    let result = get(server.addr, &ClientOptions::new(&pki).identity(carol), "/").await;
    assert_eq!(
        received_alert(&result),
        Some(AlertDescription::CertificateRevoked)
    );
    assert_eq!(
        get(
            server.addr,
            &ClientOptions::new(&pki).identity(pki.client()),
            "/"
        )
        .await
        .unwrap()
        .status,
        200
    );
}

#[tokio::test]
async fn refusals_are_counted_by_stage_and_reason() {
    let certs = Certs::new();
    let pki = &certs.pki;
    let mut config = certs.config(ClientAuthMode::Required);
    config.admin_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let required = TestServer::start(config).await;
    let mut config = certs.config(ClientAuthMode::Optional);
    config.admin_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let optional = TestServer::start(config).await;

    for server in [&required, &optional] {
        for identity in [
            pki.expired_client.clone(),
            pki.expired_client.clone(),
            certs.revoked.clone(),
        ] {
            let _ = get(
                server.addr,
                &ClientOptions::new(pki).identity(identity),
                "/",
            )
            .await;
        }
        let _ = get(
            server.addr,
            &ClientOptions::new(pki).identity(pki.client()),
            "/",
        )
        .await;
    }
    let metrics = common::plain_get(required.admin.unwrap(), "/metrics").await;
    for line in [
        "mtls_client_refusals_total{stage=\"handshake\",reason=\"expired\"} 2",
        "mtls_client_refusals_total{stage=\"handshake\",reason=\"revoked\"} 1",
        "mtls_handshakes_total{result=\"refused\"} 3",
        "mtls_handshakes_total{result=\"ok\"} 1",
        "mtls_requests_total{status=\"2xx\",route=\"/\"} 1",
        "mtls_request_duration_seconds_count 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    // The expiry gauges hold real dates: the server certificate (1 year) and
    // the CRL (30 days) are in the future.
    let gauge = |name: &str| -> i64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing"))
            .parse()
            .unwrap()
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(gauge("mtls_server_certificate_not_after_seconds") > now + 300 * 86400);
    let crl = gauge("mtls_crl_next_update_seconds");
    assert!(crl > now + 20 * 86400 && crl < now + 40 * 86400, "{crl}");
    // "Why was this client refused?" without reading logs.
    let failures: serde_json::Value =
        serde_json::from_str(&common::plain_get(required.admin.unwrap(), "/failures").await)
            .unwrap();
    let failures = failures["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert_eq!(failures[0]["reason"], "revoked", "newest first");
    assert_eq!(failures[0]["stage"], "handshake");
    assert!(
        failures[0]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let clients: serde_json::Value =
        serde_json::from_str(&common::plain_get(required.admin.unwrap(), "/clients").await)
            .unwrap();
    let clients = clients["clients"].as_array().unwrap();
    assert_eq!(
        clients.len(),
        1,
        "refused certificates are not clients: {clients:?}"
    );
    assert_eq!(clients[0]["subject"], "CN=client");
    assert_eq!(clients[0]["connections"], 1);
    let metrics = common::plain_get(optional.admin.unwrap(), "/metrics").await;
    for line in [
        "mtls_client_refusals_total{stage=\"request\",reason=\"expired\"} 2",
        "mtls_client_refusals_total{stage=\"request\",reason=\"revoked\"} 1",
        "mtls_requests_total{status=\"4xx\",route=\"/\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    let failures: serde_json::Value =
        serde_json::from_str(&common::plain_get(optional.admin.unwrap(), "/failures").await)
            .unwrap();
    let failures = failures["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 3);
    assert_eq!(failures[0]["stage"], "request");
    assert!(
        failures[0]["detail"]
            .as_str()
            .unwrap()
            .contains("CN=mallory"),
        "{failures:?}"
    );
}

/// A CRL past its nextUpdate cannot vouch for anyone: certificates it should
/// cover are refused with `revocation_unknown` until it is refreshed.
#[tokio::test]
async fn an_expired_crl_refuses_with_revocation_unknown() {
    let pki = TestPki::new();
    let ca = authority_from(pki.dir.path());
    let now = time::OffsetDateTime::now_utc();
    let params = rcgen::CertificateRevocationListParams {
        this_update: now - time::Duration::days(10),
        next_update: now - time::Duration::days(1),
        crl_number: rcgen::SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(ca.issuer()).unwrap();
    std::fs::write(pki.path("old-crl.pem"), crl.pem().unwrap()).unwrap();
    let mut config = pki.config(ClientAuthMode::Optional);
    config.crls = vec![pki.path("old-crl.pem")];
    let server = TestServer::start(config).await;

    let (status, json) = status_of(&server, &pki, &pki.client(), "/").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(json["reason"], "revocation_unknown");
    assert!(
        json["detail"]
            .as_str()
            .unwrap()
            .contains("the CRL expired at"),
        "{json}"
    );
    assert!(
        json["hint"].as_str().unwrap().contains("current CRL"),
        "{json}"
    );
}

/// rustls-webpki accepts a leaf without an authority key identifier; RFC
/// 5280 requires one, and `--strict-x509` enforces it in both modes.
#[tokio::test]
async fn strict_x509_refuses_what_rfc_5280_forbids() {
    let pki = TestPki::new();
    let ca = authority_from(pki.dir.path());
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "no-aki");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = false;
    let key = KeyPair::generate().unwrap();
    let no_aki = Issued {
        cert_pem: params.signed_by(&key, ca.issuer()).unwrap().pem(),
        key_pem: key.serialize_pem(),
    };

    let lenient = TestServer::start(pki.config(ClientAuthMode::Optional)).await;
    assert_eq!(
        status_of(&lenient, &pki, &no_aki, "/").await.0,
        StatusCode::OK
    );

    let mut config = pki.config(ClientAuthMode::Optional);
    config.strict_x509 = true;
    let strict = TestServer::start(config).await;
    let (status, json) = status_of(&strict, &pki, &no_aki, "/").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(json["reason"], "not_conformant");
    assert!(
        json["detail"]
            .as_str()
            .unwrap()
            .contains("certificate CN=no-aki is refused by strict RFC 5280 checks"),
        "{json}"
    );
    assert!(
        json["detail"].as_str().unwrap().contains("authority"),
        "{json}"
    );
    // Our own dev PKI is conformant.
    assert_eq!(
        status_of(&strict, &pki, &pki.client(), "/").await.0,
        StatusCode::OK
    );

    let mut config = pki.config(ClientAuthMode::Required);
    config.strict_x509 = true;
    let strict_required = TestServer::start(config).await;
    let result = get(
        strict_required.addr,
        &ClientOptions::new(&pki).identity(no_aki),
        "/",
    )
    .await;
    assert_eq!(
        received_alert(&result),
        Some(AlertDescription::AccessDenied)
    );
    assert_eq!(
        get(
            strict_required.addr,
            &ClientOptions::new(&pki).identity(pki.client()),
            "/"
        )
        .await
        .unwrap()
        .status,
        200
    );
}
