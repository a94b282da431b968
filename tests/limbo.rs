//! The x509-limbo corpus (`../shared/x509-limbo/limbo.json`, read in place)
//! run through `mtls::verify::Verification`, the code behind `mtls verify`.
//!
//! Default mode is rustls-webpki's verdict. Every case must either agree
//! with its `expected_result` or be listed in `KNOWN_DIVERGENCES` with the
//! reason; a listed case that agrees again fails the test, so the table stays
//! true. Strict mode (`--strict`, `mtls::strict`) must reject every FAILURE
//! case and accept every SUCCESS case that default mode accepts, except the
//! cases in `STRICT_EXCEPTIONS`, kept true the same way. Cases that ask for
//! something the verifier cannot be told (a chain-depth limit, a key-usage
//! requirement, ...) are skipped, counted and printed with the reason.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use mtls::verify::{Purpose, Verification, VerifyError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use serde_json::Value;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Cases where rustls-webpki's verdict differs from `expected_result`.
const KNOWN_DIVERGENCES: &[(&str, &str)] = &[
    // rustls-webpki rejects chains RFC 5280 accepts.
    (
        "pathlen::validation-ignores-pathlen-in-leaf",
        "the peer is a CA certificate (cA=TRUE, pathlen:0); rustls-webpki rejects any CA in end-entity position (CaUsedAsEndEntity), RFC 5280 4.2.1.9 allows it",
    ),
    (
        "pathlen::self-issued-certs-pathlen",
        "rustls-webpki counts the self-issued ICA' toward the pathLenConstraint 1 of the ICA' above it, which RFC 5280 4.2.1.9 exempts; `bad signature` comes from the other ICA' it tried as issuer",
    ),
    (
        "rfc5280::nc::permitted-dn-match",
        "the root permits directoryName CN=foo; rustls-webpki does not implement directoryName constraints and matches no name against a permitted one",
    ),
    (
        "rfc5280::nc::permitted-self-issued",
        "rustls-webpki applies the root's permitted dNSName example.com to the self-issued intermediate's SAN not-example.com, which RFC 5280 4.2.1.10 exempts (without that constraint the path validates)",
    ),
    (
        "rfc5280::nc::nc-permits-email-exact",
        "the ICA permits rfc822Name foo@example.com and the leaf's SAN is foo@example.com; rustls-webpki does not implement rfc822Name constraints and rejects any email under one",
    ),
    (
        "rfc5280::nc::nc-permits-email-domain",
        "the ICA permits rfc822Name example.com and the leaf's SAN is foo@example.com; rustls-webpki does not implement rfc822Name constraints and rejects any email under one",
    ),
    (
        "rfc5280::nc::nc-permits-email-literal-asterisk-exact-match",
        "the ICA permits rfc822Name *@example.com and the leaf's SAN is *@example.com; rustls-webpki does not implement rfc822Name constraints and rejects any email under one",
    ),
    (
        "rfc5280::nc::nc-permits-email-literal-double-asterisk",
        "the ICA permits rfc822Name **@example.com and the leaf's SAN is **@example.com; rustls-webpki does not implement rfc822Name constraints and rejects any email under one",
    ),
    (
        "rfc5280::nc::nc-permits-email-literal-mid-asterisk",
        "the ICA permits rfc822Name user*@example.com and the leaf's SAN is user*@example.com; rustls-webpki does not implement rfc822Name constraints and rejects any email under one",
    ),
    (
        "rfc5280::ca-as-leaf",
        "the peer is the ICA itself (cA=TRUE); rustls-webpki rejects a CA in end-entity position (CaUsedAsEndEntity), as webpki::ca-as-leaf expects and RFC 5280 does not",
    ),
    // rustls-webpki accepts CRLs RFC 5280 does not.
    (
        "crl::crlnumber-missing",
        "the CRL has no cRLNumber extension, which RFC 5280 5.2.3 requires; rustls-webpki does not require it",
    ),
    (
        "crl::crlnumber-critical",
        "the CRL's cRLNumber extension is critical, which RFC 5280 5.2.3 forbids; rustls-webpki accepts it",
    ),
    (
        "crl::issuer-missing-crlsign",
        "the root's keyUsage is keyCertSign only, yet it signed the CRL; rustls-webpki keeps no keyUsage for a trust anchor, so its cRLSign check passes",
    ),
    // rustls-webpki does not look at the trust anchor's certificate beyond its subject, key and name constraints.
    (
        "rfc5280::aki::critical-aki",
        "the root's authorityKeyIdentifier is critical (RFC 5280 4.2.1.1); rustls-webpki ignores the trust anchor's extensions",
    ),
    (
        "rfc5280::aki::cross-signed-root-missing-aki",
        "the trust anchor is issued by CN=x509-limbo-root, not self-signed, and has no authorityKeyIdentifier (RFC 5280 4.2.1.1); rustls-webpki ignores the trust anchor's extensions",
    ),
    (
        "rfc5280::nc::permitted-dns-match-noncritical",
        "the root's nameConstraints is not critical (RFC 5280 4.2.1.10); rustls-webpki accepts non-critical name constraints, as CABF allows",
    ),
    (
        "rfc5280::ski::critical-ski",
        "the root's subjectKeyIdentifier is critical (RFC 5280 4.2.1.2); rustls-webpki ignores the trust anchor's extensions",
    ),
    (
        "rfc5280::ski::root-missing-ski",
        "the root has no subjectKeyIdentifier (RFC 5280 4.2.1.2); rustls-webpki ignores the trust anchor's extensions",
    ),
    (
        "rfc5280::validity::expired-root",
        "only the root is expired (valid 2016-01-01 to 2020-01-01, checked at 2022-01-01); rustls-webpki does not check a trust anchor's validity",
    ),
    (
        "rfc5280::ca-empty-subject",
        "the root (a CA) has an empty subject and the leaf an empty issuer (RFC 5280 4.1.2.4, 4.1.2.6); rustls-webpki matches the two empty names",
    ),
    (
        "rfc5280::unknown-critical-extension-root",
        "the root has the critical unknown extension 1.3.6.1.4.1.55738.666.1; rustls-webpki ignores the trust anchor's extensions",
    ),
    (
        "rfc5280::root-missing-basic-constraints",
        "the root has no basicConstraints (RFC 5280 4.2.1.9); rustls-webpki ignores the trust anchor's extensions",
    ),
    (
        "rfc5280::root-non-critical-basic-constraints",
        "the root's basicConstraints (cA=TRUE) is not critical (RFC 5280 4.2.1.9); rustls-webpki ignores the trust anchor's extensions",
    ),
    (
        "rfc5280::root-inconsistent-ca-extensions",
        "the root has cA=TRUE and a keyUsage with no bit set, so no keyCertSign; rustls-webpki ignores the trust anchor's extensions",
    ),
    (
        "webpki::aki::root-with-aki-missing-keyidentifier",
        "the root's authorityKeyIdentifier has no keyIdentifier (RFC 5280 4.2.1.1, CABF 7.1.2.1.3); rustls-webpki ignores the trust anchor's extensions",
    ),
    (
        "webpki::aki::root-with-aki-authoritycertissuer",
        "the root's authorityKeyIdentifier has authorityCertIssuer (CABF 7.1.2.1.3); rustls-webpki ignores the trust anchor's extensions",
    ),
    (
        "webpki::aki::root-with-aki-authoritycertserialnumber",
        "the root's authorityKeyIdentifier has authorityCertSerialNumber (CABF 7.1.2.1.3); rustls-webpki ignores the trust anchor's extensions",
    ),
    (
        "webpki::aki::root-with-aki-all-fields",
        "the root's authorityKeyIdentifier has authorityCertIssuer and authorityCertSerialNumber (CABF 7.1.2.1.3); rustls-webpki ignores the trust anchor's extensions",
    ),
    (
        "webpki::aki::root-with-aki-ski-mismatch",
        "the self-signed root's authorityKeyIdentifier differs from its subjectKeyIdentifier (RFC 5280 4.2.1.2, CABF 7.1.2.1.3); rustls-webpki ignores the trust anchor's extensions",
    ),
    (
        "webpki::eku::root-has-eku",
        "the root has an extKeyUsage (CABF 7.1.2.1.2); rustls-webpki ignores the trust anchor's extensions",
    ),
    (
        "webpki::forbidden-rsa-not-divisible-by-8-in-root",
        "the root's RSA key is 2052 bits, not a multiple of 8 (CABF 6.1.5); ring verifies signatures with it",
    ),
    // rustls-webpki does not check key identifiers, policies or the encoding rules RFC 5280 sets for issuers.
    (
        "rfc5280::aki::leaf-missing-aki",
        "the leaf has no authorityKeyIdentifier (RFC 5280 4.2.1.1); rustls-webpki does not use key identifiers",
    ),
    (
        "rfc5280::aki::intermediate-missing-aki",
        "the intermediate has no authorityKeyIdentifier (RFC 5280 4.2.1.1); rustls-webpki does not use key identifiers",
    ),
    (
        "rfc5280::ski::intermediate-missing-ski",
        "the intermediate CA has no subjectKeyIdentifier (RFC 5280 4.2.1.2); rustls-webpki does not use key identifiers",
    ),
    (
        "rfc5280::pc::ica-noncritical-pc",
        "the intermediate's policyConstraints (requireExplicitPolicy 3) is not critical (RFC 5280 4.2.1.11); rustls-webpki does not process policies",
    ),
    (
        "rfc5280::nc::invalid-dnsname-leading-period",
        "the root permits dNSName `.example.com`, a leading period RFC 5280 4.2.1.10 allows only in URI constraints; rustls-webpki accepts it and matches foo.example.com",
    ),
    (
        "webpki::nc::intermediate-permitted-excluded-subtrees-both-null",
        "the intermediate's nameConstraints is an empty SEQUENCE, with neither subtree (RFC 5280 4.2.1.10, CABF 7.1.2.5.2); rustls-webpki treats it as no constraint",
    ),
    (
        "webpki::nc::intermediate-permitted-excluded-subtrees-both-empty-sequences",
        "the intermediate's nameConstraints has empty permitted and excluded subtrees (RFC 5280 4.2.1.10 SIZE (1..MAX), CABF 7.1.2.5.2); rustls-webpki treats them as no constraint",
    ),
    (
        "rfc5280::serial::too-long",
        "the leaf's serial number is 22 octets, more than the 20 RFC 5280 4.1.2.2 allows; rustls-webpki accepts it",
    ),
    (
        "rfc5280::serial::zero",
        "the leaf's serial number is 0, not positive as RFC 5280 4.1.2.2 requires; rustls-webpki accepts it",
    ),
    // rustls-webpki does not check an end entity's encoding rules.
    (
        "rfc5280::nc::not-allowed-in-ee-noncritical",
        "the leaf, not a CA, carries a non-critical nameConstraints extension (RFC 5280 4.2.1.10); rustls-webpki only applies constraints from issuers",
    ),
    (
        "rfc5280::nc::not-allowed-in-ee-critical",
        "the leaf, not a CA, carries a critical nameConstraints extension (RFC 5280 4.2.1.10); rustls-webpki only applies constraints from issuers",
    ),
    (
        "rfc5280::san::noncritical-with-empty-subject",
        "the leaf has an empty subject and a non-critical subjectAltName (RFC 5280 4.2.1.6); rustls-webpki does not check SAN criticality",
    ),
    (
        "rfc5280::san::underscore-dns",
        "the leaf's SAN dNSName foo_bar.example.com is not in preferred name syntax (RFC 5280 4.2.1.6); rustls-webpki accepts and matches underscores",
    ),
    (
        "rfc5280::leaf-ku-keycertsign",
        "the leaf asserts keyCertSign with cA=FALSE (RFC 5280 4.2.1.9); rustls-webpki does not read an end entity's keyUsage",
    ),
    (
        "webpki::malformed-aia",
        "the leaf's authorityInfoAccess value is the bytes `malformed`, not DER; rustls-webpki skips non-critical extensions it does not process",
    ),
    // CA/Browser Forum rules for TLS server certificates, which rustls-webpki does not enforce.
    (
        "webpki::cn::ipv4-hex-mismatch",
        "the leaf's CN 0xC0A80101 is not the RFC 3986 form of its SAN 192.168.1.1 (CABF 7.1.4.3); rustls-webpki ignores the commonName",
    ),
    (
        "webpki::cn::ipv4-leading-zeros-mismatch",
        "the leaf's CN 192.168.001.001 is not the RFC 3986 form of its SAN 192.168.1.1 (CABF 7.1.4.3); rustls-webpki ignores the commonName",
    ),
    (
        "webpki::cn::ipv6-uppercase-mismatch",
        "the leaf's CN 2001:DB8::8A2E:370:7334 is not the RFC 5952 form of its SAN (CABF 7.1.4.3); rustls-webpki ignores the commonName",
    ),
    (
        "webpki::cn::ipv6-uncompressed-mismatch",
        "the leaf's CN 2001:0db8:0000:0000:0000:0000:0000:0001 is not the RFC 5952 form of its SAN 2001:db8::1 (CABF 7.1.4.3); rustls-webpki ignores the commonName",
    ),
    (
        "webpki::cn::ipv6-non-rfc5952-mismatch",
        "the leaf's CN 2001:db8:0:0:1:0:0:1 is not the RFC 5952 form 2001:db8::1:0:0:1 of its SAN (CABF 7.1.4.3); rustls-webpki ignores the commonName",
    ),
    (
        "webpki::cn::punycode-not-in-san",
        "the leaf's CN xn--nxasmq6b.com is not its SAN xn--n3h.com (CABF 7.1.4.3); rustls-webpki ignores the commonName",
    ),
    (
        "webpki::cn::utf8-vs-punycode-mismatch",
        "the leaf's CN is the U-label test-測試.com, its SAN the A-label xn--test--wg5h0h.com (CABF 7.1.4.3); rustls-webpki ignores the commonName",
    ),
    (
        "webpki::cn::not-in-san",
        "the leaf's CN notinsan.example.com is in no SAN entry (CABF 7.1.4.3); rustls-webpki ignores the commonName",
    ),
    (
        "webpki::cn::case-mismatch",
        "the leaf's CN Example.COM is not a byte copy of its SAN example.com (CABF 7.1.4.3); rustls-webpki ignores the commonName",
    ),
    (
        "webpki::eku::ee-anyeku",
        "the leaf's extKeyUsage is serverAuth plus anyExtendedKeyUsage (CABF 7.1.2.7.10); rustls-webpki only looks for serverAuth",
    ),
    (
        "webpki::eku::ee-critical-eku",
        "the leaf's extKeyUsage (serverAuth) is critical (CABF 7.1.2.7.6); rustls-webpki accepts a critical EKU",
    ),
    (
        "webpki::eku::ee-without-eku",
        "the leaf has no extKeyUsage, which CABF 7.1.2.7.6 requires; rustls-webpki, like RFC 5280, lets a missing EKU mean any purpose",
    ),
    (
        "webpki::san::public-suffix-multi-label-wildcard-san",
        "the leaf's SAN *.co.uk is a wildcard over a public suffix; rustls-webpki has no Public Suffix List",
    ),
    (
        "webpki::san::public-suffix-private-namespace-wildcard-san",
        "the leaf's SAN *.s3.amazonaws.com is a wildcard over a (private) public suffix; rustls-webpki has no Public Suffix List",
    ),
    (
        "webpki::san::san-critical-with-nonempty-subject",
        "the leaf's subjectAltName is critical although its subject (CN=something-else) is not empty (CABF 7.1.2.7.12); rustls-webpki accepts it",
    ),
    (
        "webpki::forbidden-p192-leaf",
        "the leaf's key is on P-192 (CABF 6.1.5); rustls-webpki never uses the leaf's own key while validating",
    ),
    (
        "webpki::forbidden-dsa-leaf",
        "the leaf's key is DSA (CABF 6.1.5); rustls-webpki never uses the leaf's own key while validating",
    ),
    (
        "webpki::forbidden-weak-rsa-in-leaf",
        "the leaf's key is RSA-1024 (CABF 6.1.5); rustls-webpki never uses the leaf's own key while validating",
    ),
    (
        "webpki::forbidden-rsa-key-not-divisible-by-8-in-leaf",
        "the leaf's key is RSA-2052, not a multiple of 8 bits (CABF 6.1.5); rustls-webpki never uses the leaf's own key while validating",
    ),
];

/// Cases where strict mode's verdict differs from `expected_result`: the
/// corpus asks for opposite verdicts on the same defect in two cases.
const STRICT_EXCEPTIONS: &[(&str, &str)] = &[
    (
        "webpki::eku::ee-without-eku",
        "a leaf without extKeyUsage: CABF 7.1.2.7.6 forbids it, RFC 5280 4.2.1.12 allows it and the declared conflicting case rfc5280::eku::ee-without-eku expects SUCCESS; strict mode follows RFC 5280",
    ),
    (
        "webpki::nc::permitted-dns-match-noncritical",
        "a non-critical nameConstraints: CABF allows it, RFC 5280 4.2.1.10 forbids it and the declared conflicting case rfc5280::nc::permitted-dns-match-noncritical expects FAILURE; strict mode follows RFC 5280",
    ),
    (
        "cve::cve-2024-0567",
        "the trusted Root A is issued by CN=x509-limbo-root, so not self-signed as the description has it, and has no authorityKeyIdentifier: the defect rfc5280::aki::cross-signed-root-missing-aki expects rejected (RFC 5280 4.2.1.1)",
    ),
    (
        "rfc5280::nc::permitted-dns-match-more",
        "the leaf's CN example.com is in no SAN entry (SAN: foo.bar.example.com), which CABF 7.1.4.3 forbids and webpki::cn::not-in-san expects rejected",
    ),
    (
        "rfc5280::nc::permitted-ipv4-match",
        "the leaf's CN example.com is in no SAN entry (SAN: IP 192.0.2.1), which CABF 7.1.4.3 forbids and webpki::cn::not-in-san expects rejected",
    ),
    (
        "rfc5280::nc::permitted-ipv6-match",
        "the leaf's CN example.com is in no SAN entry (SAN: IP ::1), which CABF 7.1.4.3 forbids and webpki::cn::not-in-san expects rejected",
    ),
    (
        "webpki::nc::nc-permits-dns-san-pattern",
        "the leaf's CN example.com is in no SAN entry (SAN: *.example.com), which CABF 7.1.4.3 forbids and webpki::cn::not-in-san expects rejected",
    ),
    (
        "webpki::san::exact-localhost-ip-san",
        "the leaf's CN example.com is in no SAN entry (SAN: IP 127.0.0.1), which CABF 7.1.4.3 forbids and webpki::cn::not-in-san expects rejected",
    ),
    (
        "webpki::san::leftmost-wildcard-san",
        "the leaf's CN example.com is in no SAN entry (SAN: *.example.com), which CABF 7.1.4.3 forbids and webpki::cn::not-in-san expects rejected",
    ),
];

/// Cases also run through the `mtls verify` binary: (id, with --strict,
/// the exit code both the binary and the library verdict must give).
const CLI_CASES: &[(&str, bool, i32)] = &[
    ("webpki::san::exact-dns-san", false, 0),
    ("webpki::san::mismatch-domain-san", false, 1),
    ("webpki::san::exact-localhost-ip-san", false, 0),
    ("rfc5280::validity::notafter-exact", false, 0),
    ("rfc5280::validity::expired-leaf", false, 1),
    ("crl::certificate-not-on-crl", false, 0),
    ("crl::revoked-certificate-with-crl", false, 1),
    (
        "rfc5280::nc::nc-permits-email-literal-asterisk-rejects-user",
        false,
        1,
    ),
    // Strict mode changes the verdict: default accepts, strict rejects.
    ("rfc5280::aki::leaf-missing-aki", false, 0),
    ("rfc5280::aki::leaf-missing-aki", true, 1),
    ("crl::crlnumber-missing", false, 0),
    ("crl::crlnumber-missing", true, 1),
    ("rfc5280::validity::expired-root", true, 1),
    ("online::google.com", true, 0),
];

fn corpus() -> Option<Value> {
    let path = corpus_path();
    if !path.is_file() {
        println!("SKIPPED: x509-limbo corpus not found at {}", path.display());
        return None;
    }
    let text = std::fs::read_to_string(&path).expect("read limbo.json");
    Some(serde_json::from_str(&text).expect("limbo.json is JSON"))
}

fn corpus_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/x509-limbo/limbo.json")
}

/// One case in the terms `Verification` takes.
struct Case {
    purpose: Purpose,
    trusted: Vec<CertificateDer<'static>>,
    intermediates: Vec<CertificateDer<'static>>,
    leaf: CertificateDer<'static>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    dns_name: Option<String>,
    /// The validation time as given (for `--at`) and as `UnixTime`.
    at: Option<(String, UnixTime)>,
    expect_success: bool,
}

impl Case {
    fn verification(&self, strict: bool) -> Verification<'_> {
        Verification {
            trusted: &self.trusted,
            intermediates: &self.intermediates,
            crls: &self.crls,
            purpose: self.purpose,
            dns_name: self.dns_name.as_deref(),
            at: self.at.as_ref().map_or_else(UnixTime::now, |(_, at)| *at),
            strict,
        }
    }

    /// `Ok(())` when accepted, else the reason.
    fn run(&self, strict: bool) -> Result<(), String> {
        match self.verification(strict).run(&self.leaf) {
            Ok(_) => Ok(()),
            Err(VerifyError::Invalid(reason)) => Err(reason),
            Err(VerifyError::Unusable(reason)) => Err(format!("unusable input: {reason}")),
        }
    }
}

fn text<'a>(case: &'a Value, field: &str) -> &'a str {
    case[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` is not a string in {case}"))
}

fn strings<'a>(case: &'a Value, field: &str) -> Vec<&'a str> {
    case[field]
        .as_array()
        .unwrap_or_else(|| panic!("`{field}` is not an array"))
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect()
}

fn certs(pems: &[&str]) -> Vec<CertificateDer<'static>> {
    pems.iter()
        .map(|pem| CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate"))
        .collect()
}

/// The case, or why the verifier cannot be asked what the case asks.
fn prepare(case: &Value) -> Result<Case, String> {
    let id = text(case, "id").to_owned();
    let purpose = match text(case, "validation_kind") {
        "SERVER" => Purpose::Server,
        "CLIENT" => Purpose::Client,
        other => return Err(format!("validation_kind {other}")),
    };
    if !case["max_chain_depth"].is_null() {
        return Err("max_chain_depth: no chain-depth limit can be set".to_owned());
    }
    if !strings(case, "key_usage").is_empty() {
        return Err("key_usage: no key-usage requirement can be set".to_owned());
    }
    if !strings(case, "signature_algorithms").is_empty() {
        return Err("signature_algorithms: the algorithm set cannot be set".to_owned());
    }
    let implied_eku = match purpose {
        Purpose::Server => "serverAuth",
        Purpose::Client => "clientAuth",
    };
    for eku in strings(case, "extended_key_usage") {
        if eku != implied_eku {
            return Err(format!(
                "extended_key_usage {eku}: only {implied_eku} is checked for this purpose"
            ));
        }
    }
    let peer = certs(&[text(case, "peer_certificate")]).remove(0);
    let mut dns_name = None;
    match (&case["expected_peer_name"], purpose) {
        (Value::Null, _) => {}
        (name, Purpose::Server) if matches!(name["kind"].as_str(), Some("DNS" | "IP")) => {
            dns_name = Some(text(name, "value").to_owned());
        }
        (name, _) => {
            return Err(format!(
                "expected_peer_name of kind {} cannot be checked for {}",
                name["kind"],
                text(case, "validation_kind")
            ));
        }
    }
    // The client verifier checks no name. A case that names the peer can
    // still be run when every name is literally in the peer's SAN: then a
    // name check could not change the verdict.
    let names = case["expected_peer_names"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !names.is_empty() {
        let sans = san_entries(&peer);
        for name in &names {
            let entry = (
                text(name, "kind").to_owned(),
                text(name, "value").to_owned(),
            );
            if !sans.contains(&entry) {
                return Err(format!(
                    "expected_peer_names {} {} is not literally in the peer's SAN, and names of that kind cannot be checked",
                    entry.0, entry.1
                ));
            }
        }
    }
    let at = match &case["validation_time"] {
        Value::Null => None,
        value => {
            let given = value
                .as_str()
                .expect("validation_time is a string")
                .to_owned();
            let time =
                time::OffsetDateTime::parse(&given, &time::format_description::well_known::Rfc3339)
                    .unwrap_or_else(|err| panic!("{id}: validation_time {given}: {err}"));
            // Whole seconds, as `mtls verify --at` reads them.
            let secs = u64::try_from(time.unix_timestamp()).expect("after 1970");
            let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
            Some((given, at))
        }
    };
    let expect_success = match text(case, "expected_result") {
        "SUCCESS" => true,
        "FAILURE" => false,
        other => panic!("{id}: expected_result {other}"),
    };
    Ok(Case {
        purpose,
        trusted: certs(&strings(case, "trusted_certs")),
        intermediates: certs(&strings(case, "untrusted_intermediates")),
        leaf: peer,
        crls: strings(case, "crls")
            .iter()
            .map(|pem| {
                CertificateRevocationListDer::from_pem_slice(pem.as_bytes()).expect("PEM CRL")
            })
            .collect(),
        dns_name,
        at,
        expect_success,
    })
}

/// The peer's SAN entries as limbo names them: (kind, value).
fn san_entries(der: &CertificateDer<'_>) -> HashSet<(String, String)> {
    let mut out = HashSet::new();
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return out;
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(v) => out.insert(("DNS".to_owned(), (*v).to_owned())),
                GeneralName::RFC822Name(v) => out.insert(("RFC822".to_owned(), (*v).to_owned())),
                _ => false,
            };
        }
    }
    out
}

fn verdict(accepted: bool) -> &'static str {
    if accepted { "SUCCESS" } else { "FAILURE" }
}

#[test]
fn limbo_corpus() {
    let Some(corpus) = corpus() else { return };
    let cases = corpus["testcases"].as_array().expect("testcases");
    let divergences: BTreeMap<&str, &str> = KNOWN_DIVERGENCES.iter().copied().collect();
    let exceptions: BTreeMap<&str, &str> = STRICT_EXCEPTIONS.iter().copied().collect();
    assert_eq!(
        divergences.len(),
        KNOWN_DIVERGENCES.len(),
        "duplicate id in KNOWN_DIVERGENCES"
    );
    assert_eq!(
        exceptions.len(),
        STRICT_EXCEPTIONS.len(),
        "duplicate id in STRICT_EXCEPTIONS"
    );

    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    let (mut agree, mut diverge) = (0, 0);
    let mut skipped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut strict_rejects_failure, mut strict_beyond_default) = (0, 0);
    let (mut strict_accepts_success, mut strict_exceptions) = (0, 0);
    let mut strict_only = Vec::new();

    for raw in cases {
        let id = text(raw, "id");
        seen.insert(id.to_owned());
        let case = match prepare(raw) {
            Ok(case) => case,
            Err(reason) => {
                skipped.entry(reason).or_default().push(id.to_owned());
                continue;
            }
        };
        let default = case.run(false);
        let expected = verdict(case.expect_success);
        let accepted = default.is_ok();
        let detail = default
            .as_ref()
            .err()
            .map(String::as_str)
            .unwrap_or("accepted");
        match (accepted == case.expect_success, divergences.contains_key(id)) {
            (true, false) => agree += 1,
            (false, true) => diverge += 1,
            (false, false) => problems.push(format!(
                "{id}: expected {expected}, default mode gives {} ({detail}); fix it or list it in KNOWN_DIVERGENCES",
                verdict(accepted)
            )),
            (true, true) => problems.push(format!(
                "{id}: listed in KNOWN_DIVERGENCES but default mode now agrees ({expected}); remove it"
            )),
        }

        let strict = case.run(true);
        let strict_accepted = strict.is_ok();
        let strict_detail = strict
            .as_ref()
            .err()
            .map(String::as_str)
            .unwrap_or("accepted");
        if strict_accepted && !accepted {
            problems.push(format!(
                "{id}: strict mode accepts what default mode rejects ({detail})"
            ));
        }
        // What strict mode must do: reject every FAILURE case, accept every
        // SUCCESS case default mode accepts.
        let required = if case.expect_success {
            accepted.then_some(true)
        } else {
            Some(false)
        };
        let Some(required) = required else { continue };
        match (strict_accepted == required, exceptions.contains_key(id)) {
            (true, false) if required => strict_accepts_success += 1,
            (true, false) => {
                strict_rejects_failure += 1;
                if accepted {
                    strict_beyond_default += 1;
                    strict_only.push(format!("  {id}: {strict_detail}"));
                }
            }
            (false, true) => strict_exceptions += 1,
            (false, false) => problems.push(format!(
                "{id}: expected {expected}, strict mode gives {} ({strict_detail})",
                verdict(strict_accepted)
            )),
            (true, true) => problems.push(format!(
                "{id}: listed in STRICT_EXCEPTIONS but strict mode now agrees ({expected}); remove it"
            )),
        }
    }

    let skipped_ids: HashSet<&str> = skipped.values().flatten().map(String::as_str).collect();
    for (table, ids) in [
        (
            "KNOWN_DIVERGENCES",
            divergences.keys().copied().collect::<Vec<_>>(),
        ),
        ("STRICT_EXCEPTIONS", exceptions.keys().copied().collect()),
    ] {
        for id in ids {
            if !seen.contains(id) {
                problems.push(format!("{table} lists {id}, which is not in the corpus"));
            } else if skipped_ids.contains(id) {
                problems.push(format!("{table} lists {id}, which is skipped"));
            }
        }
    }

    let skip_count: usize = skipped.values().map(Vec::len).sum();
    for (reason, ids) in &skipped {
        println!("skipped {} ({reason}): {}", ids.len(), ids.join(", "));
    }
    println!("FAILURE cases only strict mode rejects, and why:");
    for line in &strict_only {
        println!("{line}");
    }
    println!("limbo: {agree} agree, {diverge} known divergences, {skip_count} skipped");
    println!(
        "limbo strict: {strict_rejects_failure} FAILURE cases rejected ({strict_beyond_default} of them accepted by default mode), {strict_accepts_success} SUCCESS cases accepted, {strict_exceptions} known exceptions"
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(agree + diverge + skip_count, cases.len());
}

#[test]
fn limbo_cases_through_the_binary() {
    let Some(corpus) = corpus() else { return };
    let cases = corpus["testcases"].as_array().expect("testcases");
    for (id, strict, code) in CLI_CASES {
        let raw = cases
            .iter()
            .find(|c| c["id"] == *id)
            .unwrap_or_else(|| panic!("{id} is not in the corpus"));
        let case = prepare(raw).unwrap_or_else(|reason| panic!("{id} is skipped: {reason}"));
        let library = case.run(*strict);
        let dir = tempfile::tempdir().unwrap();
        let write_pems = |name: &str, ders: &[&[u8]], label: &str| {
            let pem: String = ders.iter().map(|der| pem_block(label, der)).collect();
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_mtls"));
        command
            .current_dir(dir.path())
            .env_remove("ENV_FILE")
            .env_remove("LOG_FORMAT")
            .arg("verify");
        let trusted: Vec<&[u8]> = case.trusted.iter().map(|c| c.as_ref()).collect();
        command
            .arg("--ca")
            .arg(write_pems("ca.pem", &trusted, "CERTIFICATE"));
        if !case.intermediates.is_empty() {
            let untrusted: Vec<&[u8]> = case.intermediates.iter().map(|c| c.as_ref()).collect();
            command
                .arg("--untrusted")
                .arg(write_pems("untrusted.pem", &untrusted, "CERTIFICATE"));
        }
        for (i, crl) in case.crls.iter().enumerate() {
            command.arg("--crl").arg(write_pems(
                &format!("crl{i}.pem"),
                &[crl.as_ref()],
                "X509 CRL",
            ));
        }
        command.arg("--purpose").arg(match case.purpose {
            Purpose::Client => "client",
            Purpose::Server => "server",
        });
        if let Some(name) = &case.dns_name {
            command.arg("--dns-name").arg(name);
        }
        if let Some((given, _)) = &case.at {
            command.arg("--at").arg(given);
        }
        if *strict {
            command.arg("--strict");
        }
        command.arg(write_pems("leaf.pem", &[case.leaf.as_ref()], "CERTIFICATE"));
        let out = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let (library_code, first) = match &library {
            Ok(()) => (0, "OK".to_owned()),
            Err(reason) => (1, format!("FAILED: {reason}")),
        };
        assert_eq!(
            library_code, *code,
            "{id} (strict: {strict}): library gives {library:?}"
        );
        assert_eq!(
            out.status.code(),
            Some(*code),
            "{id} (strict: {strict}): stdout {stdout} stderr {stderr}"
        );
        assert_eq!(
            stdout.lines().next(),
            Some(first.as_str()),
            "{id} (strict: {strict})"
        );
        println!(
            "mtls verify{} {id}: exit {code}, {first}",
            if *strict { " --strict" } else { "" }
        );
    }
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}
