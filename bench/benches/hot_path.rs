//! The hot in-process pieces of `mtls serve`, without sockets:
//!
//! - `handshake/*`: a full mTLS handshake (TLS 1.3, X25519, ECDSA P-256),
//!   client and server connections pumping bytes through memory, with the
//!   server configuration mtls builds (`mtls::tls::server_config`) and with a
//!   plain `WebPkiClientVerifier` configuration: the difference is what
//!   mtls's TLS set-up adds.
//! - `identity/*`: what mtls does with a finished handshake: the
//!   connection's identity (`ConnectionInfo::from_handshake`), the chain
//!   verified again (as for a resumed session), the leaf decoded.
//! - `headers/*`: the identity headers of each format for the upstream.
//! - `request/welcome`: admission and routing of `GET /`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::ThreadCpuTime;
use hyper::Request;
use hyper::header::HeaderValue;
use mtls::cert::CertDetails;
use mtls::config::{ClientAuthMode, ServeConfig};
use mtls::http::Routes;
use mtls::identity::ConnectionInfo;
use mtls::metrics::Metrics;
use mtls::policy::Policy;
use mtls::proxy::identity_headers::{
    ApacheOptions, ClientCertificate, HeaderFormat, VerifyState, identity_headers,
};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use tempfile::TempDir;

const DOMAIN: &str = "api.flaskmtlsauth.com";

/// The development PKI of `mtls pki init`, in a temporary directory.
fn pki() -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    mtls::pki::init(&mtls::pki::InitOptions {
        dir: dir.path().to_owned(),
        domain: DOMAIN.to_owned(),
        clients: Vec::new(),
        force: false,
        p12: None,
    })
    .expect("pki init");
    dir
}

fn cert(dir: &TempDir, name: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(dir.path().join(name)).expect("certificate")
}

fn key(dir: &TempDir, name: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(dir.path().join(name)).expect("key")
}

fn client_config(dir: &TempDir) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert(dir, "ca.crt")).expect("CA");
    let mut config = ClientConfig::builder_with_provider(mtls::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert(dir, "client.crt")], key(dir, "client.key"))
        .expect("client identity");
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A server configuration with nothing but rustls' client verifier.
fn plain_server_config(dir: &TempDir) -> Arc<ServerConfig> {
    let provider = mtls::tls::provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert(dir, "ca.crt")).expect("CA");
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("verifier");
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert(dir, "server.crt")], key(dir, "server.key"))
        .expect("server identity");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Moves every pending TLS byte from `from` to `to`; false when there were none.
fn client_to_server(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
    buf: &mut Vec<u8>,
) -> bool {
    buf.clear();
    while client.wants_write() {
        client.write_tls(buf).expect("client writes");
    }
    let mut rest = &buf[..];
    while !rest.is_empty() {
        server.read_tls(&mut rest).expect("server reads");
        server.process_new_packets().expect("server accepts");
    }
    !buf.is_empty()
}

fn server_to_client(
    server: &mut ServerConnection,
    client: &mut ClientConnection,
    buf: &mut Vec<u8>,
) -> bool {
    buf.clear();
    while server.wants_write() {
        server.write_tls(buf).expect("server writes");
    }
    let mut rest = &buf[..];
    while !rest.is_empty() {
        client.read_tls(&mut rest).expect("client reads");
        client.process_new_packets().expect("client accepts");
    }
    !buf.is_empty()
}

/// A complete handshake between fresh connections of the two configurations.
fn handshake(
    client_config: &Arc<ClientConfig>,
    server_config: &Arc<ServerConfig>,
) -> (ClientConnection, ServerConnection) {
    let name = ServerName::try_from(DOMAIN).expect("name");
    let mut client = ClientConnection::new(client_config.clone(), name).expect("client");
    let mut server = ServerConnection::new(server_config.clone()).expect("server");
    let mut buf = Vec::with_capacity(8192);
    while client_to_server(&mut client, &mut server, &mut buf)
        | server_to_client(&mut server, &mut client, &mut buf)
    {}
    assert!(!client.is_handshaking() && !server.is_handshaking());
    (client, server)
}

fn benches(c: &mut Criterion<ThreadCpuTime>) {
    let dir = pki();
    let client = client_config(&dir);
    let plain = plain_server_config(&dir);
    let setup = mtls::tls::server_config(&ServeConfig::with_pki_dir(
        dir.path(),
        ClientAuthMode::Required,
    ))
    .expect("mtls server config");
    let trust = setup.client_trust.clone().expect("client trust");

    let mut group = c.benchmark_group("handshake");
    group.bench_function("full/plain_webpki", |b| {
        b.iter(|| handshake(&client, &plain))
    });
    group.bench_function("full/mtls_server_config", |b| {
        b.iter(|| handshake(&client, &setup.config))
    });
    group.finish();

    let (_client, server) = handshake(&client, &setup.config);
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let chain: Vec<CertificateDer<'static>> = server
        .peer_certificates()
        .expect("client chain")
        .iter()
        .map(|c| c.clone().into_owned())
        .collect();
    let mut group = c.benchmark_group("identity");
    group.bench_function("from_handshake", |b| {
        b.iter(|| ConnectionInfo::from_handshake(peer, black_box(&server), Some(&trust), false))
    });
    group.bench_function("reverify_chain", |b| {
        b.iter(|| trust.verify(black_box(&chain)).expect("valid chain"))
    });
    group.bench_function("decode_leaf", |b| {
        b.iter(|| CertDetails::from_der(black_box(&chain[0])).expect("decodes"))
    });
    group.finish();

    let details = CertDetails::from_der(&chain[0]).expect("decodes");
    let state = VerifyState::Success(ClientCertificate {
        chain: &chain,
        details: &details,
    });
    let apache = ApacheOptions::default();
    let mut group = c.benchmark_group("headers");
    for format in HeaderFormat::ALL {
        group.bench_function(format.name(), |b| {
            b.iter(|| identity_headers(&[format], &apache, black_box(&state), None))
        });
    }
    group.bench_function("all", |b| {
        b.iter(|| identity_headers(&HeaderFormat::ALL, &apache, black_box(&state), None))
    });
    group.finish();

    let conn = ConnectionInfo::from_handshake(peer, &server, Some(&trust), false);
    let routes = Routes::new(
        "Welcome to the mTLS Flask App!",
        ClientAuthMode::Required,
        Policy::default(),
        Arc::new(Metrics::default()),
        Some(&HeaderValue::from_static(mtls::hsts::DEFAULT_HSTS)),
    );
    let request = Request::get("/")
        .header("host", DOMAIN)
        .header("accept", "*/*")
        .body(())
        .unwrap();
    c.bench_function("request/welcome", |b| {
        b.iter(|| routes.handle(black_box(&request), &conn))
    });
}

criterion_group! {
    name = hot_path;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = benches
}
criterion_main!(hot_path);
