//! Distinguished names and identity headers for certificates whose
//! subject, issuer, serial, validity and SANs are chosen by the fuzzer.
//!
//! Input: a DER certificate (the seeds are real ones, and libFuzzer's
//! mutations of their string bytes keep them parseable), or, when the bytes
//! are not a certificate, a description read with `arbitrary` from which a
//! certificate is assembled: names of any shape (multi-valued RDNs, every
//! string type and then some, unknown attribute types, bytes that are not
//! valid in their type) and SANs of any content. Signatures are not
//! checked by the formatters, so the certificate carries a dummy one.
//!
//! Asserts, beyond "never panics":
//! - `CertDetails` decodes whatever x509-parser parses, except a
//!   certificate with a name x509-parser read only part of;
//! - RFC 4514 (`cert::dn`): the string has no control character and parses
//!   back, with RFC 4514's escapes, into exactly the attributes listed in
//!   `Name::attributes`, in order; `dn_der_to_rfc4514` and `common_name`
//!   agree with it;
//! - identity headers, every format (apache with and without underscores
//!   and the legacy DN, azure, xfcc, nginx, traefik): every value is a
//!   valid header value without any control byte (ASCII only outside
//!   apache); no header the format always sends is missing (a formatter
//!   output with a control byte would be dropped silently);
//! - the RFC 2253 subject and issuer of apache and nginx split on their
//!   unescaped `,` and `+` into exactly the certificate's RDNs;
//! - XFCC is one element whose keys come in Envoy's order with one `URI`
//!   and `DNS` per SAN, values unquote to the SANs, and Subject is nginx's
//!   subject; Traefik's info holds one entry per chain certificate with
//!   only its known quoted fields;
//! - the certificates round-trip: `X-ARR-ClientCert`, XFCC's `Chain`,
//!   nginx's and apache's PEM and Traefik's PEM list decode (through
//!   `ForwardedTrust::take` where the server reads that format) to exactly
//!   the leaf or chain that was sent.
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::HeaderMap;
use hyper::header::HeaderValue;
use libfuzzer_sys::fuzz_target;
use mtls::cert::{self, CertDetails, dn};
use mtls::proxy::forwarded_cert::{Forwarded, ForwardedFormat, ForwardedTrust, parse_proxy};
use mtls::proxy::identity_headers::{
    ApacheOptions, ClientCertificate, HeaderFormat, VerifyState, identity_headers,
};
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

const CA: &[u8] = include_bytes!("../fixtures/ca.der");
const SERVER_URI: &str = "spiffe://example.org/ns/edge/sa/mtls";

fuzz_target!(|data: &[u8]| {
    let leaf = if X509Certificate::from_der(data).is_ok() {
        data.to_vec()
    } else {
        match Spec::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(spec) => spec.der(),
            Err(_) => return,
        }
    };
    // DN_FORMATTING_DUMP=file: keep the certificate, to turn a finding
    // into a regression test (see docs/fuzzing.md).
    if let Some(path) = dump_path() {
        std::fs::write(path, &leaf).unwrap();
    }
    check(&leaf);
});

fn dump_path() -> Option<&'static std::path::Path> {
    static PATH: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    PATH.get_or_init(|| std::env::var_os("DN_FORMATTING_DUMP").map(Into::into))
        .as_deref()
}

fn check(leaf: &[u8]) {
    let Ok((_, cert)) = X509Certificate::from_der(leaf) else {
        return;
    };
    let Ok(details) = CertDetails::from_der(leaf) else {
        // The one refusal of a certificate x509-parser reads: a name it
        // read only part of.
        assert!(!dn::is_complete(cert.subject()) || !dn::is_complete(cert.issuer()));
        if !dn::is_complete(cert.subject()) {
            assert_eq!(cert::common_name(leaf), None);
        }
        return;
    };
    check_rfc4514(cert.subject(), &details.subject);
    check_rfc4514(cert.issuer(), &details.issuer);
    assert_eq!(
        cert::dn_der_to_rfc4514(cert.subject().as_raw()),
        details.subject.rfc4514
    );
    if let Some(cn) = cert::common_name(leaf) {
        assert!(!cn.chars().any(char::is_control), "{cn:?}");
        assert!(details.subject.first("CN").is_some());
    }

    let chain = [
        CertificateDer::from(leaf.to_vec()),
        CertificateDer::from(CA.to_vec()),
    ];
    let state = VerifyState::Success(ClientCertificate {
        chain: &chain,
        details: &details,
    });
    let plain = ApacheOptions::default();
    let legacy = ApacheOptions {
        underscore_names: true,
        legacy_dn: true,
    };
    // Every format once; then those that the options change, again.
    let again = [
        HeaderFormat::Apache,
        HeaderFormat::Nginx,
        HeaderFormat::Xfcc,
    ];
    for (formats, apache, server_uri) in [
        (&HeaderFormat::ALL[..], plain, None),
        (&again[..], legacy, Some(SERVER_URI)),
    ] {
        let headers = identity_headers(formats, &apache, &state, server_uri);
        let sent = Sent {
            formats,
            apache,
            server_uri,
            headers,
        };
        check_headers(&cert, &details, &chain, &sent);
    }
}

// ---------------------------------------------------------------------------
// RFC 4514
// ---------------------------------------------------------------------------

fn check_rfc4514(name: &X509Name<'_>, decoded: &cert::details::Name) {
    let text = &decoded.rfc4514;
    assert!(!text.chars().any(char::is_control), "{text:?}");
    let rdns = split_dn(text.as_bytes()).unwrap_or_else(|err| panic!("{err} in {text:?}"));
    // The string lists the RDNs last to first.
    let parsed: Vec<(String, String)> = rdns
        .into_iter()
        .rev()
        .flatten()
        .map(|(kind, value)| {
            let value = String::from_utf8(value).expect("escapes decode to UTF-8");
            (String::from_utf8(kind).unwrap(), value)
        })
        .collect();
    let listed: Vec<(String, String)> = decoded
        .attributes
        .iter()
        .map(|a| (a.kind.clone(), a.value.clone()))
        .collect();
    assert_eq!(parsed, listed, "{text:?} does not parse back");
    assert_eq!(parsed.len(), name.iter_attributes().count());
}

type Rdn = Vec<(Vec<u8>, Vec<u8>)>;

/// Splits an RFC 4514 / RFC 2253 string on its unescaped `,` (RDNs) and `+`
/// (attributes of one RDN), undoing `\X` and `\XX` escapes; refuses the
/// characters that must be escaped when they are not.
fn split_dn(text: &[u8]) -> Result<Vec<Rdn>, String> {
    let mut rdns = Vec::new();
    if text.is_empty() {
        return Ok(rdns);
    }
    let mut rdn = Vec::new();
    let mut i = 0;
    loop {
        let start = i;
        while i < text.len() && text[i] != b'=' {
            if matches!(text[i], b',' | b'+' | b'\\') {
                return Err(format!("an attribute without `=` at byte {start}"));
            }
            i += 1;
        }
        if i == text.len() || i == start {
            return Err(format!(
                "an attribute without a type or `=` at byte {start}"
            ));
        }
        let kind = text[start..i].to_vec();
        i += 1;
        let mut value = Vec::new();
        while i < text.len() && !matches!(text[i], b',' | b'+') {
            match text[i] {
                b'\\' => {
                    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
                    match (text.get(i + 1), hex(text.get(i + 1)), hex(text.get(i + 2))) {
                        (_, Some(high), Some(low)) => {
                            value.push((high * 16 + low) as u8);
                            i += 3;
                        }
                        (Some(&c), _, _)
                            if matches!(
                                c,
                                b',' | b'+'
                                    | b'"'
                                    | b'\\'
                                    | b'<'
                                    | b'>'
                                    | b';'
                                    | b'#'
                                    | b' '
                                    | b'='
                            ) =>
                        {
                            value.push(c);
                            i += 2;
                        }
                        _ => return Err(format!("a bad escape at byte {i}")),
                    }
                }
                b'"' | b';' | b'<' | b'>' => {
                    return Err(format!("an unescaped `{}` at byte {i}", text[i] as char));
                }
                byte => {
                    value.push(byte);
                    i += 1;
                }
            }
        }
        rdn.push((kind, value));
        if i == text.len() {
            rdns.push(rdn);
            return Ok(rdns);
        }
        if text[i] == b',' {
            rdns.push(std::mem::take(&mut rdn));
        }
        i += 1;
    }
}

// ---------------------------------------------------------------------------
// Identity headers
// ---------------------------------------------------------------------------

/// What a run of `identity_headers` was asked for and gave.
struct Sent<'a> {
    formats: &'a [HeaderFormat],
    apache: ApacheOptions,
    server_uri: Option<&'a str>,
    headers: Vec<(hyper::header::HeaderName, HeaderValue)>,
}

impl Sent<'_> {
    fn has(&self, format: HeaderFormat) -> bool {
        self.formats.contains(&format)
    }

    /// The one value of header `name`, if sent.
    fn get(&self, name: &str) -> Option<&[u8]> {
        let found: Vec<&HeaderValue> = self
            .headers
            .iter()
            .filter(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v)
            .collect();
        assert!(found.len() <= 1, "{name} sent {} times", found.len());
        found.first().map(|v| v.as_bytes())
    }

    fn apache_name(&self, suffix: &str) -> String {
        let name = format!("ssl-client-{suffix}");
        if self.apache.underscore_names {
            name.replace('-', "_")
        } else {
            name
        }
    }
}

fn check_headers(
    cert: &X509Certificate<'_>,
    details: &CertDetails,
    chain: &[CertificateDer<'static>],
    sent: &Sent<'_>,
) {
    for (name, value) in &sent.headers {
        let bytes = value.as_bytes();
        assert!(
            !bytes.iter().any(|&b| b < 0x20 || b == 0x7f),
            "{name}: {value:?}"
        );
        assert!(HeaderValue::from_bytes(bytes).is_ok());
        if !name.as_str().starts_with("ssl") {
            assert!(
                value.to_str().is_ok(),
                "{name} is not visible ASCII: {value:?}"
            );
        }
    }

    // What every format always sends for a verified certificate, and the
    // RFC 2253 names split into the certificate's RDNs (apache's legacy
    // one-line form does not escape `/`, so it cannot be checked so).
    let (subject_rdns, issuer_rdns) = (rdn_sizes(cert.subject()), rdn_sizes(cert.issuer()));
    let mut always: Vec<String> = Vec::new();
    let mut names: Vec<(String, &Vec<usize>)> = Vec::new();
    if sent.has(HeaderFormat::Apache) {
        for suffix in ["verify", "m-serial", "v-start", "v-end", "cert"] {
            always.push(sent.apache_name(suffix));
        }
        if !sent.apache.legacy_dn {
            names.push((sent.apache_name("s-dn"), &subject_rdns));
            names.push((sent.apache_name("i-dn"), &issuer_rdns));
        }
    }
    if sent.has(HeaderFormat::Nginx) {
        for name in [
            "x-ssl-client-verify",
            "x-ssl-client-serial",
            "x-ssl-client-fingerprint",
            "x-ssl-client-cert",
        ] {
            always.push(name.to_owned());
        }
        names.push(("x-ssl-client-s-dn".to_owned(), &subject_rdns));
        names.push(("x-ssl-client-i-dn".to_owned(), &issuer_rdns));
    }
    for (format, header_names) in [
        (HeaderFormat::Azure, &["x-arr-clientcert"][..]),
        (HeaderFormat::Xfcc, &["x-forwarded-client-cert"]),
        (
            HeaderFormat::Traefik,
            &[
                "x-forwarded-tls-client-cert",
                "x-forwarded-tls-client-cert-info",
            ],
        ),
    ] {
        if sent.has(format) {
            always.extend(header_names.iter().map(|n| n.to_string()));
        }
    }
    for name in &always {
        assert!(sent.get(name).is_some(), "{name} is missing");
    }
    for (name, rdns) in names {
        let Some(text) = sent.get(&name) else {
            // Left out only when empty, as nginx leaves out an empty value.
            assert!(rdns.is_empty(), "{name} is missing");
            continue;
        };
        let split = split_dn(text).unwrap_or_else(|err| panic!("{err} in {text:?}"));
        let sizes: Vec<usize> = split.iter().rev().map(Vec::len).collect();
        assert_eq!(&sizes, rdns, "{name}: {:?}", String::from_utf8_lossy(text));
    }

    if sent.has(HeaderFormat::Xfcc) {
        check_xfcc(details, sent);
    }
    if sent.has(HeaderFormat::Traefik) {
        check_traefik(chain, sent);
    }
    check_round_trips(chain, sent);
}

/// XFCC: one element, Envoy's keys, SANs and subject as sent.
fn check_xfcc(details: &CertDetails, sent: &Sent<'_>) {
    let xfcc = std::str::from_utf8(sent.get("x-forwarded-client-cert").unwrap()).unwrap();
    let elements = split_quoted(xfcc, ',').unwrap_or_else(|err| panic!("{err} in {xfcc:?}"));
    assert_eq!(elements.len(), 1, "{xfcc:?}");
    let pairs: Vec<(&str, &str)> = split_quoted(elements[0], ';')
        .unwrap()
        .into_iter()
        .map(|pair| pair.split_once('=').expect("key=value"))
        .collect();
    let sans = &details.subject_alt_names;
    let mut keys = Vec::new();
    if sent.server_uri.is_some() {
        keys.push("By");
    }
    keys.extend(["Hash", "Cert", "Chain", "Subject"]);
    keys.extend(std::iter::repeat_n("URI", sans.uri.len().max(1)));
    keys.extend(std::iter::repeat_n("DNS", sans.dns.len()));
    let got: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
    assert_eq!(got, keys, "{xfcc:?}");
    let values = |key: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| unquote(v))
            .collect()
    };
    if let Some(uri) = sent.server_uri {
        assert_eq!(values("By"), [uri]);
    }
    assert_eq!(
        values("Hash"),
        [details.fingerprints.sha256.to_ascii_lowercase()]
    );
    if sent.has(HeaderFormat::Nginx) {
        // Envoy puts the RFC 2253 subject inside the quotes as it is.
        let subject = pairs.iter().find(|(k, _)| *k == "Subject").unwrap().1;
        let nginx = sent.get("x-ssl-client-s-dn").unwrap_or_default();
        assert_eq!(
            subject.as_bytes(),
            [b"\"", nginx, b"\""].concat().as_slice()
        );
    }
    if sans.uri.is_empty() {
        assert_eq!(values("URI"), [""]);
    } else {
        let expected: Vec<String> = sans.uri.iter().map(|s| visible(s)).collect();
        assert_eq!(values("URI"), expected);
    }
    let expected: Vec<String> = sans.dns.iter().map(|s| visible(s)).collect();
    assert_eq!(values("DNS"), expected);
}

/// Traefik's info: one entry per certificate, only its quoted fields.
fn check_traefik(chain: &[CertificateDer<'static>], sent: &Sent<'_>) {
    let info = query_unescape(sent.get("x-forwarded-tls-client-cert-info").unwrap());
    let info = String::from_utf8_lossy(&info);
    let entries = split_quoted(&info, ',').unwrap_or_else(|err| panic!("{err} in {info:?}"));
    assert_eq!(entries.len(), chain.len(), "{info:?}");
    for entry in entries {
        let order = ["Subject", "Issuer", "NB", "NA", "SANs"];
        let mut last = 0;
        for field in split_quoted(entry, ';').unwrap() {
            let (key, value) = field.split_once('=').expect("key=value");
            let at = order.iter().position(|k| *k == key).expect("a known field");
            assert!(at >= last, "{info:?}");
            last = at + 1;
            assert!(value.len() >= 2 && value.starts_with('"') && value.ends_with('"'));
        }
    }
    let pems = sent.get("x-forwarded-tls-client-cert").unwrap();
    let decoded: Vec<Vec<u8>> = pems
        .split(|&b| b == b',')
        .map(|one| STANDARD.decode(query_unescape(one)).unwrap())
        .collect();
    assert_eq!(
        decoded,
        chain.iter().map(|c| c.to_vec()).collect::<Vec<_>>()
    );
}

/// The certificates come back out of every format that carries them, read
/// the way the server reads a trusted proxy's header where it can.
fn check_round_trips(chain: &[CertificateDer<'static>], sent: &Sent<'_>) {
    if sent.has(HeaderFormat::Apache) {
        let pem = std::str::from_utf8(sent.get(&sent.apache_name("cert")).unwrap()).unwrap();
        let body = pem
            .strip_prefix("-----BEGIN CERTIFICATE----- ")
            .and_then(|rest| rest.strip_suffix(" -----END CERTIFICATE-----"))
            .expect("one PEM certificate on one line");
        assert_eq!(
            STANDARD.decode(body.replace(' ', "")).unwrap(),
            chain[0].as_ref()
        );
    }
    for (header_format, format, expected) in [
        (HeaderFormat::Azure, ForwardedFormat::Azure, &chain[..1]),
        (HeaderFormat::Nginx, ForwardedFormat::Nginx, &chain[..1]),
        (HeaderFormat::Xfcc, ForwardedFormat::Xfcc, chain),
    ] {
        if sent.has(header_format) {
            let value = sent.get(format.header().as_str()).unwrap();
            assert_eq!(forwarded(format, value), expected, "{format:?}");
        }
    }
}

fn rdn_sizes(name: &X509Name<'_>) -> Vec<usize> {
    name.iter_rdn().map(|rdn| rdn.iter().count()).collect()
}

/// The chain the server reads back from a trusted proxy's header.
fn forwarded(format: ForwardedFormat, value: &[u8]) -> Vec<CertificateDer<'static>> {
    let trust = ForwardedTrust {
        format,
        proxies: vec![parse_proxy("10.0.0.0/8").unwrap()],
    };
    let mut headers = HeaderMap::new();
    headers.insert(format.header(), HeaderValue::from_bytes(value).unwrap());
    let proxy: IpAddr = "10.0.0.1".parse().unwrap();
    match trust.take(&mut headers, proxy) {
        Ok(Forwarded::Chain(chain)) => chain,
        other => panic!("{format:?} header not read back: {other:?}"),
    }
}

/// Splits on `separator` outside double quotes (`\` escapes inside them).
fn split_quoted(text: &str, separator: char) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    if quoted || escaped {
        return Err("an unclosed quote".to_owned());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        assert!(
            !value.contains(['"', ',', ';', '=']),
            "{value:?} needed quotes"
        );
        return value.to_owned();
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().unwrap() } else { c });
    }
    out
}

/// A SAN as XFCC carries it: control and non-ASCII bytes as `%XX`.
fn visible(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Go's `url.QueryUnescape`.
fn query_unescape(text: &[u8]) -> Vec<u8> {
    let plus = text
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect::<Vec<u8>>();
    percent_encoding::percent_decode(&plus).collect()
}

// ---------------------------------------------------------------------------
// Certificates assembled from fuzz input
// ---------------------------------------------------------------------------

#[derive(Arbitrary, Debug)]
struct Spec {
    serial: Vec<u8>,
    issuer: Vec<Vec<Attribute>>,
    not_before: Time,
    not_after: Time,
    subject: Vec<Vec<Attribute>>,
    sans: Vec<San>,
}

#[derive(Arbitrary, Debug)]
struct Attribute {
    kind: Kind,
    tag: StringTag,
    value: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Kind {
    Known(u8),
    /// The contents of an OBJECT IDENTIFIER, valid or not.
    Raw(Vec<u8>),
}

/// Attribute types: the common ones, some OpenSSL knows and this
/// project does not, and one nobody knows.
const KNOWN: [&[u8]; 18] = [
    &[0x55, 0x04, 0x03],                                           // CN
    &[0x55, 0x04, 0x06],                                           // C
    &[0x55, 0x04, 0x07],                                           // L
    &[0x55, 0x04, 0x08],                                           // ST
    &[0x55, 0x04, 0x09],                                           // street
    &[0x55, 0x04, 0x0A],                                           // O
    &[0x55, 0x04, 0x0B],                                           // OU
    &[0x55, 0x04, 0x05],                                           // serialNumber
    &[0x55, 0x04, 0x04],                                           // SN
    &[0x55, 0x04, 0x2A],                                           // GN
    &[0x55, 0x04, 0x0C],                                           // title
    &[0x55, 0x04, 0x61],                                           // organizationIdentifier
    &[0x55, 0x04, 0x0F],                                           // businessCategory
    &[0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x19], // DC
    &[0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x01], // UID
    &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x01],       // emailAddress
    &[
        0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x3C, 0x02, 0x01, 0x03,
    ], // jurisdictionC
    &[0x2B, 0x06, 0x01, 0x04, 0x01, 0x86, 0x8D, 0x1F, 0x01],       // 1.3.6.1.4.1.99999.1
];

#[derive(Arbitrary, Debug)]
enum StringTag {
    Utf8,
    Printable,
    Ia5,
    T61,
    Bmp,
    Universal,
    Visible,
    Numeric,
    /// Any tag byte at all (OCTET STRING, INTEGER, context-specific, ...).
    Other(u8),
}

impl StringTag {
    fn byte(&self) -> u8 {
        match self {
            StringTag::Utf8 => 0x0C,
            StringTag::Printable => 0x13,
            StringTag::Ia5 => 0x16,
            StringTag::T61 => 0x14,
            StringTag::Bmp => 0x1E,
            StringTag::Universal => 0x1C,
            StringTag::Visible => 0x1A,
            StringTag::Numeric => 0x12,
            StringTag::Other(tag) => *tag,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum San {
    Email(Vec<u8>),
    Dns(Vec<u8>),
    Uri(Vec<u8>),
    Ip(Vec<u8>),
    Directory(Vec<Vec<Attribute>>),
    Other(u8, Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Time {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl Time {
    /// UTCTime for 1950-2049, as RFC 5280 asks, GeneralizedTime otherwise.
    fn der(&self) -> Vec<u8> {
        let year = self.year % 10000;
        let rest = format!(
            "{:02}{:02}{:02}{:02}{:02}Z",
            1 + self.month % 12,
            1 + self.day % 28,
            self.hour % 24,
            self.minute % 60,
            self.second % 60
        );
        if (1950..2050).contains(&year) {
            tlv(0x17, format!("{:02}{rest}", year % 100).as_bytes())
        } else {
            tlv(0x18, format!("{year:04}{rest}").as_bytes())
        }
    }
}

impl Spec {
    fn der(&self) -> Vec<u8> {
        // ecdsa-with-SHA256
        let algorithm = tlv(
            0x30,
            &tlv(0x06, &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02]),
        );
        let serial = if self.serial.is_empty() {
            vec![1]
        } else {
            self.serial.clone()
        };
        let mut tbs = vec![
            tlv(0xA0, &tlv(0x02, &[2])),
            tlv(0x02, &serial),
            algorithm.clone(),
            name(&self.issuer),
            tlv(
                0x30,
                &[self.not_before.der(), self.not_after.der()].concat(),
            ),
            name(&self.subject),
            ca_public_key().to_vec(),
        ];
        if !self.sans.is_empty() {
            let names: Vec<u8> = self.sans.iter().flat_map(San::der).collect();
            let extension = tlv(
                0x30,
                &[
                    tlv(0x06, &[0x55, 0x1D, 0x11]),
                    tlv(0x04, &tlv(0x30, &names)),
                ]
                .concat(),
            );
            tbs.push(tlv(0xA3, &tlv(0x30, &extension)));
        }
        let signature = tlv(0x03, &[0, 0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]);
        tlv(
            0x30,
            &[tlv(0x30, &tbs.concat()), algorithm, signature].concat(),
        )
    }
}

impl San {
    fn der(&self) -> Vec<u8> {
        match self {
            San::Email(v) => tlv(0x81, v),
            San::Dns(v) => tlv(0x82, v),
            San::Uri(v) => tlv(0x86, v),
            San::Ip(v) => tlv(0x87, v),
            San::Directory(rdns) => tlv(0xA4, &name(rdns)),
            San::Other(tag, v) => tlv(*tag, v),
        }
    }
}

fn name(rdns: &[Vec<Attribute>]) -> Vec<u8> {
    let rdns: Vec<u8> = rdns
        .iter()
        .flat_map(|rdn| {
            let attributes: Vec<u8> = rdn
                .iter()
                .flat_map(|attribute| {
                    let oid = match &attribute.kind {
                        Kind::Known(i) => KNOWN[usize::from(*i) % KNOWN.len()].to_vec(),
                        Kind::Raw(raw) => raw.clone(),
                    };
                    tlv(
                        0x30,
                        &[tlv(0x06, &oid), tlv(attribute.tag.byte(), &attribute.value)].concat(),
                    )
                })
                .collect();
            tlv(0x31, &attributes)
        })
        .collect();
    tlv(0x30, &rdns)
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = content.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes = length.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A real SubjectPublicKeyInfo (the fixture CA's P-256 key).
fn ca_public_key() -> &'static [u8] {
    static SPKI: OnceLock<Vec<u8>> = OnceLock::new();
    SPKI.get_or_init(|| {
        let (_, ca) = X509Certificate::from_der(CA).unwrap();
        ca.tbs_certificate.subject_pki.raw.to_vec()
    })
}
