//! `/cert`, `/headers` and the HTML pages, including a client whose subject
//! is crafted to break out of every sink.

mod common;

use base64::Engine;
use common::{ClientOptions, ServeProcess, TestPki, TestServer, authority_from, get, mtls_command};
use hyper::StatusCode;
use mtls::config::ClientAuthMode;
use mtls::pki::LeafSpec;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

const EVIL_CN: &str = "evil\"<script>alert(1)</script>\r\nX-Injected: yes Zürich 東京";

fn evil_client(pki: &TestPki) -> mtls::pki::Issued {
    authority_from(pki.dir.path())
        .issue(&LeafSpec::client(EVIL_CN))
        .unwrap()
}

/// A GET with a browser's Accept header.
async fn browser_get(server: &TestServer, options: &ClientOptions, path: &str) -> common::Answer {
    common::request_with_headers(
        server.addr,
        options,
        "GET",
        path,
        &[(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn cert_json_has_the_full_details() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let options = ClientOptions::new(&pki).identity(pki.client());

    let json = get(server.addr, &options, "/cert").await.unwrap().json();
    let cert = &json["client_certificate"];
    assert_eq!(cert["version"], 3);
    assert_eq!(cert["subject"]["attributes"][0]["type"], "CN");
    assert_eq!(cert["subject"]["attributes"][0]["value"], "client");
    assert_eq!(cert["public_key"]["algorithm"], "EC");
    assert_eq!(cert["public_key"]["curve"], "P-256");
    assert_eq!(cert["signature_algorithm"], "ecdsa-with-SHA256");
    assert_eq!(
        cert["extended_key_usage"],
        serde_json::json!(["clientAuth"])
    );
    assert_eq!(cert["key_usage"], serde_json::json!(["digitalSignature"]));
    assert_eq!(cert["basic_constraints"]["ca"], false);
    assert_eq!(cert["valid_now"], true);
    assert!(cert["expires_in_days"].as_i64().unwrap() >= 364);
    assert_eq!(cert["self_signed"], false);
    assert_eq!(cert["fingerprints"]["sha1"].as_str().unwrap().len(), 40);
    let serial = cert["serial"].as_str().unwrap();
    assert_eq!(
        serial.replace(':', ""),
        cert["serial_hex"].as_str().unwrap()
    );
}

#[tokio::test]
async fn headers_dump_the_request_and_the_certificate_as_azure_sends_it() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let options = ClientOptions::new(&pki).identity(pki.client());

    let answer = common::request_with_headers(
        server.addr,
        &options,
        "GET",
        "/headers?x=1",
        &[("x-custom", "one"), ("x-custom", "two")],
    )
    .await
    .unwrap();
    let json = answer.json();
    assert_eq!(json["method"], "GET");
    assert_eq!(json["path"], "/headers");
    assert_eq!(json["query"], "x=1");
    assert_eq!(json["http_version"], "HTTP/1.1");
    assert_eq!(json["headers"]["x-custom"], "one, two");
    assert_eq!(json["tls"]["alpn"], "http/1.1");

    let client = &json["client_certificate"];
    let pem = std::fs::read_to_string(pki.path("client.crt")).unwrap();
    assert_eq!(client["pem"].as_str().unwrap().trim(), pem.trim());
    let der = base64::engine::general_purpose::STANDARD
        .decode(client["der_base64"].as_str().unwrap())
        .unwrap();
    let expected = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(der, expected.as_ref());
    assert_eq!(client["details"]["subject"]["rfc4514"], "CN=client");
}

#[tokio::test]
async fn browsers_get_html_pages_and_api_clients_json() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Optional)).await;
    let options = ClientOptions::new(&pki).identity(pki.client());

    for path in ["/", "/cert", "/headers"] {
        let page = browser_get(&server, &options, path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
        assert_eq!(page.headers["vary"], "accept");
        assert!(page.body.starts_with("<!DOCTYPE html>"), "{path}");
        assert!(page.body.contains("CN=client"), "{path}: {}", page.body);
        assert!(
            !page.body.contains("http://") && !page.body.contains("https://"),
            "no external assets"
        );
        let json = get(server.addr, &options, path).await.unwrap();
        assert_eq!(json.headers["content-type"], "application/json", "{path}");
    }

    // Optional mode: a browser without a certificate is told why and what to do.
    let anonymous = browser_get(&server, &ClientOptions::new(&pki), "/cert").await;
    assert_eq!(anonymous.status, StatusCode::FORBIDDEN);
    assert_eq!(
        anonymous.headers["content-type"],
        "text/html; charset=utf-8"
    );
    assert!(
        anonymous
            .body
            .contains("no client certificate was presented"),
        "{}",
        anonymous.body
    );
    assert!(
        anonymous.body.contains("import the .p12 bundle"),
        "{}",
        anonymous.body
    );
}

#[tokio::test]
async fn a_crafted_subject_never_breaks_out_of_html_or_json() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let options = ClientOptions::new(&pki).identity(evil_client(&pki));

    for path in ["/", "/cert", "/headers"] {
        let page = browser_get(&server, &options, path).await;
        assert!(!page.body.contains("<script>"), "{path}: {}", page.body);
        assert!(!page.body.contains('\r'), "{path}");
        assert!(page.body.contains("&lt;script"), "{path}: {}", page.body);
        assert!(page.body.contains("Zürich 東京"), "{path}");
    }

    let json = get(server.addr, &options, "/cert").await.unwrap().json();
    let subject = &json["client_certificate"]["subject"];
    // The attribute value is the exact text; JSON escaping makes it safe.
    assert_eq!(subject["attributes"][0]["value"], EVIL_CN);
    // The RFC 4514 form has no control characters left, so it is safe in
    // headers and logs too.
    let rfc4514 = subject["rfc4514"].as_str().unwrap();
    assert!(!rfc4514.chars().any(char::is_control), "{rfc4514}");
    assert!(rfc4514.contains("\\0D\\0A"), "{rfc4514}");
}

#[tokio::test]
async fn a_crafted_subject_stays_on_one_log_line() {
    let pki = TestPki::new();
    let (cert, key) = pki.write("evil", &evil_client(&pki));
    let mut command = mtls_command(pki.dir.path());
    command.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--client-auth",
        "required",
    ]);
    command
        .env("SERVER_CERT", "server.crt")
        .env("SERVER_KEY", "server.key")
        .env("CLIENT_CA", "ca.crt");
    let mut server = ServeProcess::start(command);

    let identity = mtls::pki::Issued {
        cert_pem: std::fs::read_to_string(cert).unwrap(),
        key_pem: std::fs::read_to_string(key).unwrap(),
    };
    let options = ClientOptions::new(&pki).identity(identity);
    let answer = get(server.addr, &options, "/").await.unwrap();
    assert_eq!(answer.status, 200);

    let line = server.wait_for("mtls::access");
    assert!(line.contains("\\\\0D\\\\0AX-Injected: yes"), "{line}");
    let (_, log) = server.terminate();
    assert!(
        !log.iter().any(|l| l.starts_with("X-Injected")),
        "the CRLF in the subject split a log line: {log:#?}"
    );
}
