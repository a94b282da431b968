//! `mtls inspect` and `mtls verify` checked against OpenSSL's own reading of
//! the same certificates, for every key type and some unusual subjects.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::mtls_command;
use mtls::pki::{Authority, LeafSpec, Validity};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType,
};
use serde_json::Value;
use tempfile::TempDir;

/// A two-level PKI (root -> intermediate -> leaves) with one leaf per key
/// type and unusual subjects, written to a temporary directory.
struct Corpus {
    dir: TempDir,
    leaves: Vec<&'static str>,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn openssl_key(openssl: &Path, dir: &Path, name: &str, args: &[&str]) -> KeyPair {
    let path = dir.join(name);
    let out = Command::new(openssl)
        .arg("genpkey")
        .args(args)
        .arg("-out")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    KeyPair::from_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

impl Corpus {
    fn new(openssl: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let root = Authority::generate("Test Root CA").unwrap();
        let intermediate = root.issue_intermediate("Test Intermediate CA").unwrap();
        write(d, "root.crt", root.cert_pem());
        write(d, "intermediate.crt", intermediate.cert_pem());

        let spec = |name: &str| LeafSpec {
            subject_alt_names: vec![format!("{name}.example"), "10.0.0.1".to_owned()],
            ..LeafSpec::client(name)
        };
        let ec256 = intermediate.issue(&spec("ec-p256")).unwrap();
        write(d, "ec-p256.crt", &ec256.cert_pem);
        write(d, "ec-p256.key", &ec256.key_pem);
        for (name, key) in [
            (
                "ec-p384",
                KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
            ),
            (
                "ed25519",
                KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
            ),
            (
                "rsa-2048",
                openssl_key(
                    openssl,
                    d,
                    "rsa.key",
                    &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                ),
            ),
        ] {
            let pem = intermediate.issue_for_key(&spec(name), &key).unwrap();
            write(d, &format!("{name}.crt"), &pem);
        }

        // Multi-attribute subject with characters that need escaping and UTF-8.
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "DE");
        dn.push(DnType::OrganizationName, "Müller & Söhne, GmbH");
        dn.push(DnType::OrganizationalUnitName, "R+D; \"Labs\"");
        dn.push(DnType::CommonName, "José <admin>");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, intermediate.issuer()).unwrap();
        write(d, "unusual.crt", &cert.pem());

        // No subject at all: the identity lives in the SANs only.
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![
            SanType::DnsName("only-san.example".try_into().unwrap()),
            SanType::Rfc822Name("someone@example.org".try_into().unwrap()),
            SanType::URI("spiffe://example.org/ns/default/sa/web".try_into().unwrap()),
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, intermediate.issuer()).unwrap();
        write(d, "san-only.crt", &cert.pem());

        // Rejected for one reason each.
        let expired = LeafSpec {
            validity: Validity {
                not_before: time::OffsetDateTime::now_utc() - time::Duration::days(10),
                not_after: time::OffsetDateTime::now_utc() - time::Duration::days(1),
            },
            ..LeafSpec::client("expired")
        };
        write(
            d,
            "expired.crt",
            &intermediate.issue(&expired).unwrap().cert_pem,
        );
        let server_only = LeafSpec::server("server-only.example");
        write(
            d,
            "server-only.crt",
            &intermediate.issue(&server_only).unwrap().cert_pem,
        );
        let stranger = Authority::generate("Stranger CA").unwrap();
        write(
            d,
            "stranger.crt",
            &stranger.issue(&LeafSpec::client("x")).unwrap().cert_pem,
        );

        Corpus {
            dir,
            leaves: vec![
                "ec-p256", "ec-p384", "ed25519", "rsa-2048", "unusual", "san-only",
            ],
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn run_mtls(dir: &Path, args: &[&str]) -> Output {
    mtls_command(dir).args(args).output().unwrap()
}

fn inspect_json(corpus: &Corpus, file: &str) -> Value {
    let out = run_mtls(corpus.dir.path(), &["inspect", "--json", file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list[0].clone()
}

/// `openssl x509` fields by name.
fn openssl_fields(openssl: &Path, file: &Path) -> Vec<(String, String)> {
    let out = Command::new(openssl)
        .args([
            "x509", "-noout", "-serial", "-subject", "-issuer", "-dates", "-dateopt", "iso_8601",
        ])
        .args([
            "-fingerprint",
            "-sha256",
            "-ext",
            "subjectAltName",
            "-nameopt",
            "RFC2253,-esc_msb",
        ])
        .arg("-in")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut fields = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("X509v3 Subject Alternative Name") {
            let value = lines.next().unwrap_or("").trim().to_owned();
            fields.push(("san".to_owned(), value));
        } else if let Some((key, value)) = line.split_once('=') {
            fields.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    fields
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// `2026-11-22 12:28:50Z` (OpenSSL's ISO 8601) as RFC 3339.
fn iso_to_rfc3339(text: &str) -> String {
    text.replacen(' ', "T", 1)
}

#[test]
fn inspect_agrees_with_openssl_field_by_field() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let corpus = Corpus::new(&openssl);
    for name in corpus
        .leaves
        .iter()
        .copied()
        .chain(["intermediate", "root"])
    {
        let file = format!("{name}.crt");
        let ours = inspect_json(&corpus, &file);
        let theirs = openssl_fields(&openssl, &corpus.path(&file));

        assert_eq!(
            ours["serial_hex"],
            field(&theirs, "serial"),
            "{name} serial"
        );
        assert_eq!(
            ours["subject"]["rfc4514"],
            field(&theirs, "subject"),
            "{name} subject"
        );
        assert_eq!(
            ours["issuer"]["rfc4514"],
            field(&theirs, "issuer"),
            "{name} issuer"
        );
        assert_eq!(
            ours["not_before"],
            iso_to_rfc3339(field(&theirs, "notBefore")),
            "{name}"
        );
        assert_eq!(
            ours["not_after"],
            iso_to_rfc3339(field(&theirs, "notAfter")),
            "{name}"
        );
        assert_eq!(
            ours["fingerprints"]["sha256"],
            field(&theirs, "sha256 Fingerprint").replace(':', ""),
            "{name} fingerprint"
        );

        let mut expected = BTreeSet::new();
        for entry in field(&theirs, "san").split(", ").filter(|e| !e.is_empty()) {
            let (kind, value) = entry.split_once(':').unwrap();
            let kind = match kind {
                "DNS" => "dns",
                "IP Address" => "ip",
                "email" => "email",
                "URI" => "uri",
                other => panic!("unexpected SAN kind {other}"),
            };
            expected.insert(format!("{kind}:{value}"));
        }
        let mut actual = BTreeSet::new();
        for kind in ["dns", "ip", "email", "uri"] {
            for value in ours["subject_alt_names"][kind].as_array().unwrap() {
                actual.insert(format!("{kind}:{}", value.as_str().unwrap()));
            }
        }
        assert_eq!(actual, expected, "{name} SANs");
    }
}

#[test]
fn inspect_names_key_types_and_unusual_subjects() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let corpus = Corpus::new(&openssl);
    let key = |name: &str| inspect_json(&corpus, &format!("{name}.crt"))["public_key"].clone();
    assert_eq!(
        key("ec-p256"),
        serde_json::json!({"algorithm": "EC", "bits": 256, "curve": "P-256"})
    );
    assert_eq!(
        key("ec-p384"),
        serde_json::json!({"algorithm": "EC", "bits": 384, "curve": "P-384"})
    );
    assert_eq!(
        key("ed25519"),
        serde_json::json!({"algorithm": "Ed25519", "bits": 256, "curve": null})
    );
    assert_eq!(
        key("rsa-2048"),
        serde_json::json!({"algorithm": "RSA", "bits": 2048, "curve": null})
    );

    let unusual = inspect_json(&corpus, "unusual.crt");
    let attributes: Vec<(String, String)> = unusual["subject"]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["type"].as_str().unwrap().to_owned(),
                a["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        attributes,
        [
            ("C", "DE"),
            ("O", "Müller & Söhne, GmbH"),
            ("OU", "R+D; \"Labs\""),
            ("CN", "José <admin>"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );

    let san_only = inspect_json(&corpus, "san-only.crt");
    assert_eq!(san_only["subject"]["rfc4514"], "");
    assert_eq!(
        san_only["spiffe_id"],
        "spiffe://example.org/ns/default/sa/web"
    );

    let root = inspect_json(&corpus, "root.crt");
    assert_eq!(root["self_signed"], true);
    assert_eq!(root["basic_constraints"]["ca"], true);
    assert_eq!(
        root["key_usage"],
        serde_json::json!(["digitalSignature", "keyCertSign", "cRLSign"])
    );

    // A PEM bundle prints every certificate, in order.
    let bundle = format!(
        "{}{}",
        std::fs::read_to_string(corpus.path("intermediate.crt")).unwrap(),
        std::fs::read_to_string(corpus.path("root.crt")).unwrap()
    );
    write(corpus.dir.path(), "bundle.pem", &bundle);
    let out = run_mtls(corpus.dir.path(), &["inspect", "bundle.pem"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("bundle.pem: certificate 1 of 2"), "{text}");
    assert!(text.contains("bundle.pem: certificate 2 of 2"), "{text}");
    assert!(
        text.contains("  Subject              CN=Test Intermediate CA"),
        "{text}"
    );
}

#[test]
fn inspect_reads_der_and_pkcs12() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let corpus = Corpus::new(&openssl);
    let d = corpus.dir.path();
    let ok = |args: &[&str]| {
        let out = Command::new(&openssl)
            .current_dir(d)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(&[
        "x509",
        "-in",
        "ec-p256.crt",
        "-outform",
        "DER",
        "-out",
        "ec-p256.der",
    ]);
    ok(&[
        "pkcs12",
        "-export",
        "-in",
        "ec-p256.crt",
        "-inkey",
        "ec-p256.key",
        "-certfile",
        "intermediate.crt",
        "-passout",
        "pass:s3cret",
        "-out",
        "modern.p12",
    ]);
    ok(&[
        "pkcs12",
        "-export",
        "-legacy",
        "-in",
        "ec-p256.crt",
        "-inkey",
        "ec-p256.key",
        "-passout",
        "pass:s3cret",
        "-out",
        "legacy.p12",
    ]);
    let pem = inspect_json(&corpus, "ec-p256.crt");
    assert_eq!(inspect_json(&corpus, "ec-p256.der"), pem);

    for p12 in ["modern.p12", "legacy.p12"] {
        let out = mtls_command(d)
            .args(["inspect", "--json", "--password-env", "P12_PASSWORD", p12])
            .env("P12_PASSWORD", "s3cret")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{p12}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        let subjects: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["subject"]["rfc4514"].as_str().unwrap())
            .collect();
        assert!(subjects.contains(&"CN=ec-p256"), "{p12}: {subjects:?}");
    }
    let all = mtls_command(d)
        .args([
            "inspect",
            "--json",
            "--password-env",
            "P12_PASSWORD",
            "modern.p12",
        ])
        .env("P12_PASSWORD", "s3cret")
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "leaf and intermediate");

    let wrong = mtls_command(d)
        .args(["inspect", "--password-env", "P12_PASSWORD", "modern.p12"])
        .env("P12_PASSWORD", "nope")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong PKCS#12 password"));
}

#[test]
fn bad_input_is_a_clear_error_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = Authority::generate("Root").unwrap();
    let pem = root.cert_pem().to_owned();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap();
    std::fs::write(d.join("truncated.der"), &der[..der.len() / 2]).unwrap();
    std::fs::write(d.join("empty.pem"), "").unwrap();
    std::fs::write(
        d.join("bad64.pem"),
        "-----BEGIN CERTIFICATE-----\n!!notbase64!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(d.join("key.pem"), root.key_pem()).unwrap();
    std::fs::write(
        d.join("p12-no-password.p12"),
        [0x30, 0x03, 0x02, 0x01, 0x03],
    )
    .unwrap();

    for (file, message) in [
        (
            "truncated.der",
            "is neither PEM, a DER certificate nor PKCS#12",
        ),
        ("empty.pem", "is empty"),
        ("bad64.pem", "is not valid PEM"),
        (
            "key.pem",
            "holds no `BEGIN CERTIFICATE` block (it has: PrivateKey)",
        ),
        ("missing.pem", "cannot read `missing.pem`"),
        ("p12-no-password.p12", "needs a password"),
    ] {
        let out = mtls_command(d)
            .args(["inspect", file])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {err}");
        assert!(err.contains(message), "{file}: {err}");
        assert!(!err.contains("panicked"), "{file}: {err}");
    }
}

/// OpenSSL's verdict for the same question.
fn openssl_verify(openssl: &Path, dir: &Path, args: &[&str]) -> bool {
    let out = Command::new(openssl)
        .current_dir(dir)
        .arg("verify")
        .args(args)
        .output()
        .unwrap();
    out.status.success()
}

#[test]
fn verify_agrees_with_openssl_verify() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let corpus = Corpus::new(&openssl);
    let d = corpus.dir.path();
    let in_a_year = (time::OffsetDateTime::now_utc() + time::Duration::days(400)).unix_timestamp();
    let in_a_year_rfc3339 = (time::OffsetDateTime::now_utc() + time::Duration::days(400))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();

    struct Case<'a> {
        what: &'a str,
        leaf: &'a str,
        intermediate: bool,
        at_future: bool,
        valid: bool,
        reason: &'a str,
    }
    let cases = [
        Case {
            what: "valid",
            leaf: "ec-p256.crt",
            intermediate: true,
            at_future: false,
            valid: true,
            reason: "",
        },
        Case {
            what: "valid RSA",
            leaf: "rsa-2048.crt",
            intermediate: true,
            at_future: false,
            valid: true,
            reason: "",
        },
        Case {
            what: "expired",
            leaf: "expired.crt",
            intermediate: true,
            at_future: false,
            valid: false,
            reason: "FAILED: expired at ",
        },
        Case {
            what: "expired later",
            leaf: "ec-p256.crt",
            intermediate: true,
            at_future: true,
            valid: false,
            reason: "FAILED: expired at ",
        },
        Case {
            what: "wrong CA",
            leaf: "stranger.crt",
            intermediate: true,
            at_future: false,
            valid: false,
            reason: "FAILED: unknown issuer",
        },
        Case {
            what: "wrong EKU",
            leaf: "server-only.crt",
            intermediate: true,
            at_future: false,
            valid: false,
            reason: "FAILED: extended key usage clientAuth missing (the certificate has: serverAuth)",
        },
        Case {
            what: "missing intermediate",
            leaf: "ec-p256.crt",
            intermediate: false,
            at_future: false,
            valid: false,
            reason: "FAILED: unknown issuer",
        },
    ];
    for case in cases {
        let mut ours = vec!["verify", "--ca", "root.crt"];
        let mut theirs = vec!["-purpose", "sslclient", "-CAfile", "root.crt"];
        if case.intermediate {
            ours.extend(["--untrusted", "intermediate.crt"]);
            theirs.extend(["-untrusted", "intermediate.crt"]);
        }
        let attime = in_a_year.to_string();
        if case.at_future {
            ours.extend(["--at", &in_a_year_rfc3339]);
            theirs.extend(["-attime", &attime]);
        }
        ours.push(case.leaf);
        theirs.push(case.leaf);

        let out = run_mtls(d, &ours);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let openssl_says = openssl_verify(&openssl, d, &theirs);
        assert_eq!(
            openssl_says, case.valid,
            "{}: openssl disagrees with the case",
            case.what
        );
        if case.valid {
            assert_eq!(out.status.code(), Some(0), "{}: {stdout}", case.what);
            assert!(stdout.starts_with("OK\n"), "{}: {stdout}", case.what);
            assert!(
                stdout.contains("2: CN=Test Root CA  (trust anchor)"),
                "{stdout}"
            );
        } else {
            assert_eq!(out.status.code(), Some(1), "{}: {stdout}", case.what);
            assert!(stdout.starts_with(case.reason), "{}: {stdout}", case.what);
        }
    }
}

#[test]
fn verify_checks_server_names_for_the_server_purpose() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let corpus = Corpus::new(&openssl);
    let d = corpus.dir.path();
    let base = [
        "verify",
        "--ca",
        "root.crt",
        "--untrusted",
        "intermediate.crt",
        "--purpose",
        "server",
    ];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(extra);
        run_mtls(d, &args)
    };
    assert_eq!(
        with(&["--dns-name", "server-only.example", "server-only.crt"])
            .status
            .code(),
        Some(0)
    );
    let wrong = with(&["--dns-name", "other.example", "server-only.crt"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&wrong.stdout).trim(),
        "FAILED: name mismatch: expected `other.example`, the certificate is valid for: server-only.example, localhost, 127.0.0.1, ::1"
    );
    let usage = with(&["--at", "yesterday", "server-only.crt"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&usage.stderr).contains("--at `yesterday` is not an RFC 3339 time")
    );
}

#[tokio::test]
async fn inspect_connect_prints_the_chain_a_server_presents() {
    let pki = common::TestPki::new();
    let server =
        common::TestServer::start(pki.config(mtls::config::ClientAuthMode::Required)).await;
    let target = server.addr.to_string();
    let dir = pki.dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        mtls_command(&dir)
            .args([
                "inspect",
                "--json",
                "--connect",
                &target,
                "--servername",
                common::DOMAIN,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chain: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(chain[0]["subject"]["rfc4514"], "CN=api.flaskmtlsauth.com");
    assert_eq!(chain[0]["issuer"]["rfc4514"], "CN=mtls development CA");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    let dir = pki.dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        mtls_command(&dir)
            .args(["inspect", "--connect", &dead])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to"));
}
