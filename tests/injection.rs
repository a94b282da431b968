//! Property tests through the real server: client certificates generated
//! with subjects and SANs full of CR, LF, NUL, quotes, `;`, `,`, `=`,
//! `<script>`, bidi controls and non-UTF-8 bytes never break out of a JSON
//! string, an HTML page, a plain-text answer, an identity header sent to the
//! upstream app, or a log line.
//!
//! Two `mtls serve` processes run for the whole test (their logs are the
//! log sinks): one serving the built-in pages with text logs, an admin
//! endpoint and a policy that refuses everyone on `/admin`; one forwarding
//! to an echo upstream with every identity-header format and JSON logs.
//! Each generated certificate is signed by the test CA, so both accept it.
//! src/proxy/identity_headers.rs has the unit-level property tests of the
//! header formats; tests/insight.rs has a few hand-picked subjects.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::upstream::{EchoUpstream, received};
use common::{Answer, ClientOptions, ServeProcess, TestPki, authority_from, mtls_command};
use hyper::StatusCode;
use mtls::cert::CertDetails;
use mtls::pki::{Authority, Issued};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType, SigningKey,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Each case costs a certificate and a dozen TLS connections.
const CASES: u32 = 128;

// ---------------------------------------------------------------------------
// Generated certificates
// ---------------------------------------------------------------------------

/// The common name as it goes into the certificate.
#[derive(Debug, Clone)]
enum CommonName {
    /// A UTF8String (any Unicode, control characters included).
    Text(String),
    /// A UTF8String whose bytes are not UTF-8.
    BrokenUtf8(Vec<u8>),
    /// A T61String with bytes above 0x7F (read as Latin-1).
    T61(Vec<u8>),
}

impl CommonName {
    /// What the server shows as the attribute's value: invalid UTF-8 is
    /// decoded lossily, T61 as Latin-1 (src/cert/dn.rs).
    fn shown(&self) -> String {
        match self {
            CommonName::Text(text) => text.clone(),
            CommonName::BrokenUtf8(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            CommonName::T61(bytes) => bytes.iter().map(|&b| b as char).collect(),
        }
    }

    fn is_text(&self) -> bool {
        matches!(self, CommonName::Text(_))
    }
}

#[derive(Debug, Clone)]
struct Subject {
    cn: CommonName,
    org: String,
    dns: Vec<String>,
    uris: Vec<String>,
    emails: Vec<String>,
    /// A DNS SAN with bytes above 0x7F, which IA5String cannot hold.
    broken_dns: Option<Vec<u8>>,
}

/// Strings made of the pieces that break sinks, and random characters.
fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        2 => any::<char>().prop_map(String::from),
        4 => proptest::sample::select(vec![
            "\r", "\n", "\r\n", "\0", "\"", "'", ";", ",", "=", "+", "\\", "&", "#", " ",
            "<script>alert(1)</script>", "</pre>", "</td>", "<!--", "\u{2028}", "\u{2029}",
            "\u{202e}", "\u{200f}", "\u{85}", "\u{7f}", "\t", "é", "東京", "😀",
            "\r\nX-Injected: 1", "\"; DNS=evil", "%0D%0A", "\",\"x\":\"", "${jndi:x}",
        ])
        .prop_map(str::to_owned),
        2 => "[a-zA-Z0-9 .-]{1,6}",
    ];
    proptest::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

/// ASCII strings (what IA5String SANs can hold), control characters included.
fn hostile_ascii() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            1 => 0u8..0x80,
            1 => proptest::sample::select(b",;=\"\\\r\n\0 <>&'".to_vec()),
            1 => proptest::sample::select(vec![b'a', b'.', b'-', b'z']),
        ],
        1..20,
    )
    .prop_map(|bytes| String::from_utf8(bytes).unwrap())
}

/// Bytes that are not UTF-8 (0xFF never is), with dangerous ASCII mixed in.
fn non_utf8() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            2 => 0x80u8..=0xff,
            1 => proptest::sample::select(b"\r\n\0\"<>;,=\\ a".to_vec()),
        ],
        7..20,
    )
    .prop_map(|bytes| [vec![0xff], bytes].concat())
}

fn common_name() -> impl Strategy<Value = CommonName> {
    prop_oneof![
        4 => hostile_text().prop_map(CommonName::Text),
        1 => non_utf8().prop_map(CommonName::BrokenUtf8),
        1 => non_utf8().prop_map(CommonName::T61),
    ]
}

fn subject() -> impl Strategy<Value = Subject> {
    let list = || proptest::collection::vec(hostile_ascii(), 0..3);
    (
        common_name(),
        hostile_text(),
        list(),
        list(),
        list(),
        proptest::option::weighted(0.2, non_utf8()),
    )
        .prop_map(|(cn, org, dns, uris, emails, broken_dns)| Subject {
            cn,
            org,
            dns,
            uris,
            emails,
            broken_dns,
        })
}

/// Filler of `len` copies of `mark`, replaced by the real bytes after rcgen
/// has encoded the certificate (rcgen only writes valid strings).
fn placeholder(mark: char, len: usize) -> String {
    std::iter::repeat_n(mark, len).collect()
}

/// A client certificate for `subject`, signed by `ca`.
fn issue(ca: &Authority, subject: &Subject) -> Issued {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, subject.org.as_str());
    let cn_text = match &subject.cn {
        CommonName::Text(text) => text.clone(),
        CommonName::BrokenUtf8(bytes) | CommonName::T61(bytes) => placeholder('Q', bytes.len()),
    };
    name.push(DnType::CommonName, cn_text);
    let ia5 = |text: &str| text.to_owned().try_into().unwrap();
    let mut sans: Vec<SanType> = subject
        .dns
        .iter()
        .map(|d| SanType::DnsName(ia5(d)))
        .collect();
    sans.extend(subject.uris.iter().map(|u| SanType::URI(ia5(u))));
    sans.extend(subject.emails.iter().map(|e| SanType::Rfc822Name(ia5(e))));
    if let Some(bytes) = &subject.broken_dns {
        sans.push(SanType::DnsName(ia5(&placeholder('Z', bytes.len()))));
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = name;
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let der = params.signed_by(&key, ca.issuer()).unwrap().der().to_vec();

    let mut patches = Vec::new();
    match &subject.cn {
        CommonName::Text(_) => {}
        CommonName::BrokenUtf8(bytes) => patches.push(('Q', bytes, None)),
        CommonName::T61(bytes) => patches.push(('Q', bytes, Some(TAG_T61_STRING))),
    }
    if let Some(bytes) = &subject.broken_dns {
        patches.push(('Z', bytes, None));
    }
    let der = if patches.is_empty() {
        der
    } else {
        patch_and_resign(&der, &patches, ca.issuer().key())
    };
    Issued {
        cert_pem: pem(&der),
        key_pem: key.serialize_pem(),
    }
}

const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_T61_STRING: u8 = 0x14;

/// Replaces each placeholder in the to-be-signed part with its bytes (and
/// string tag), then signs it again with the CA key.
fn patch_and_resign(
    der: &[u8],
    patches: &[(char, &Vec<u8>, Option<u8>)],
    ca_key: &KeyPair,
) -> Vec<u8> {
    let (body, _) = tlv(der, 0);
    let (_, tbs_end) = tlv(der, body);
    let (_, alg_end) = tlv(der, tbs_end);
    let mut tbs = der[body..tbs_end].to_vec();
    for (mark, bytes, tag) in patches {
        let needle = placeholder(*mark, bytes.len()).into_bytes();
        let found: Vec<usize> = (0..=tbs.len() - needle.len())
            .filter(|&i| tbs[i..].starts_with(&needle))
            .collect();
        assert_eq!(found.len(), 1, "placeholder {mark} not unique");
        let at = found[0];
        assert_eq!(tbs[at - 1] as usize, bytes.len(), "short-form length");
        tbs[at..at + bytes.len()].copy_from_slice(bytes);
        if let Some(tag) = tag {
            assert_eq!(tbs[at - 2], TAG_UTF8_STRING);
            tbs[at - 2] = *tag;
        }
    }
    let signature = ca_key.sign(&tbs).unwrap();
    let mut content = tbs;
    content.extend_from_slice(&der[tbs_end..alg_end]);
    content.extend(encode_tlv(0x03, &[&[0u8][..], &signature].concat()));
    encode_tlv(0x30, &content)
}

/// `(start of content, end)` of the DER element at `at`.
fn tlv(der: &[u8], at: usize) -> (usize, usize) {
    let first = der[at + 1] as usize;
    if first < 0x80 {
        return (at + 2, at + 2 + first);
    }
    let octets = first & 0x7f;
    let len = der[at + 2..at + 2 + octets]
        .iter()
        .fold(0usize, |acc, &b| acc << 8 | b as usize);
    (at + 2 + octets, at + 2 + octets + len)
}

fn encode_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn pem(der: &[u8]) -> String {
    let base64 = BASE64.encode(der);
    let mut out = "-----BEGIN CERTIFICATE-----\n".to_owned();
    for line in base64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn leaf_der(issued: &Issued) -> Vec<u8> {
    CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

// ---------------------------------------------------------------------------
// Sink checks
// ---------------------------------------------------------------------------

/// The markup of an HTML page: each `<...>` tag, in order.
fn tags(html: &str) -> Vec<&str> {
    html.match_indices('<')
        .map(|(at, _)| {
            let end = html[at..].find('>').map_or(html.len(), |e| at + e + 1);
            &html[at..end]
        })
        .collect()
}

/// Only the page's own markup: every tag is one the server writes for a
/// harmless certificate.
fn assert_only_own_markup(html: &str, own: &BTreeSet<String>, what: &str) {
    for tag in tags(html) {
        assert!(
            own.contains(tag),
            "{what}: foreign markup {tag:?} in\n{html}"
        );
    }
    assert!(
        !html.contains(['\0', '\r']),
        "{what}: raw control character in\n{html}"
    );
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// A log line as the text formatter writes it: it starts with a timestamp
/// (a line split by the certificate would not) and has no raw CR or NUL.
fn assert_text_log_line(line: &str) {
    let b = line.as_bytes();
    assert!(
        b.len() > 20 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T',
        "not a whole log line: {line:?}"
    );
    assert!(!line.contains(['\r', '\0']), "{line:?}");
}

fn assert_json_log_line(line: &str) {
    let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
    assert!(parsed.is_ok(), "not one JSON document: {line:?}");
    assert!(!line.contains(['\r', '\0']), "{line:?}");
}

/// Splits at `separator` outside double quotes (where `\` escapes).
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c == separator {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    assert!(!quoted && !escaped, "unbalanced quotes in {text:?}");
    parts.push(&text[start..]);
    parts
}

/// `"..."` with `\x` escapes back to its value; an unquoted value as is.
fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_owned();
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().unwrap() } else { c });
    }
    out
}

/// `%XX` (and, for query escaping, `+`) back to bytes.
fn percent_decode(text: &str, plus_is_space: bool) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// mod_ssl's escaping of a single value (`\\` and `\XX`) undone.
fn unescape_modssl(value: &str) -> Vec<u8> {
    let b = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if b[i] == b'\\' {
            out.push(u8::from_str_radix(&value[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// An RFC 4514 string back to its `(type, value)` pairs, most specific
/// first; `\c` and `\XX` escapes undone.
fn parse_rfc4514(dn: &str) -> Vec<(String, Vec<u8>)> {
    let b = dn.as_bytes();
    let hex = |i: usize| b.get(i).is_some_and(u8::is_ascii_hexdigit);
    let mut pairs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let eq = i + dn[i..]
            .find('=')
            .unwrap_or_else(|| panic!("no = in {dn:?}"));
        let kind = dn[i..eq].to_owned();
        let mut value = Vec::new();
        i = eq + 1;
        while i < b.len() && b[i] != b',' && b[i] != b'+' {
            if b[i] == b'\\' && hex(i + 1) && hex(i + 2) {
                value.push(u8::from_str_radix(&dn[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else if b[i] == b'\\' {
                let next = b
                    .get(i + 1)
                    .unwrap_or_else(|| panic!("dangling \\ in {dn:?}"));
                value.push(*next);
                i += 2;
            } else {
                value.push(b[i]);
                i += 1;
            }
        }
        pairs.push((kind, value));
        i += 1;
    }
    pairs
}

// ---------------------------------------------------------------------------
// The two servers
// ---------------------------------------------------------------------------

fn serve(pki: &TestPki, extra: &[&str], log_format: &str) -> ServeProcess {
    let mut command = mtls_command(pki.dir.path());
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--client-auth",
            "required",
            "--log-format",
            log_format,
        ])
        .args(extra)
        .env("SERVER_CERT", "server.crt")
        .env("SERVER_KEY", "server.key")
        .env("CLIENT_CA", "ca.crt")
        .env("RUST_LOG", "info,mtls=debug");
    ServeProcess::start(command)
}

struct Servers {
    pages: RefCell<ServeProcess>,
    admin: SocketAddr,
    proxy: RefCell<ServeProcess>,
    /// Log lines already checked, per server.
    checked: Cell<(usize, usize)>,
    /// The tags of the pages for a harmless certificate.
    own_markup: BTreeSet<String>,
    /// The identity headers the upstream gets for a certificate with every
    /// field set.
    all_identity_headers: BTreeSet<String>,
}

async fn get(addr: SocketAddr, options: &ClientOptions, path: &str, html: bool) -> Answer {
    let accept = if html {
        "text/html"
    } else {
        "application/json"
    };
    common::request_with_headers(addr, options, "GET", path, &[("accept", accept)])
        .await
        .unwrap_or_else(|err| panic!("GET {path}: {err}"))
}

/// Names of the identity headers in an echo of the upstream.
fn identity_header_names(echo: &serde_json::Value) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[0].as_str().unwrap().to_owned())
        .filter(|name| mtls::proxy::identity_headers::is_identity_header(name))
        .collect()
}

/// A certificate with every field the formats print, and nothing hostile.
fn harmless() -> Subject {
    Subject {
        cn: CommonName::Text("Grace Hopper".to_owned()),
        org: "Navy".to_owned(),
        dns: vec!["grace.example".to_owned()],
        uris: vec!["spiffe://example.org/grace".to_owned()],
        emails: vec!["grace@example.org".to_owned()],
        broken_dns: None,
    }
}

impl Servers {
    fn start(pki: &TestPki, upstream: &EchoUpstream, ca_subject: &str) -> Servers {
        std::fs::write(
            pki.path("policy.toml"),
            format!(
                "[[rule]]\nname = \"the test CA\"\nissuer = {ca_subject:?}\n\n\
                 [[rule]]\nname = \"nobody\"\ncn = \"nobody\"\n\n\
                 [[path]]\nprefix = \"/admin\"\nrules = [\"nobody\"]\n"
            ),
        )
        .unwrap();
        let mut pages = serve(
            pki,
            &["--policy", "policy.toml", "--admin-listen", "127.0.0.1:0"],
            "text",
        );
        let admin = pages.admin_addr();
        let proxy = serve(
            pki,
            &[
                "--upstream",
                &upstream.url(),
                "--forward-client-cert",
                "apache,azure,xfcc,nginx,traefik",
            ],
            "json",
        );
        Servers {
            pages: RefCell::new(pages),
            admin,
            proxy: RefCell::new(proxy),
            checked: Cell::new((0, 0)),
            own_markup: BTreeSet::new(),
            all_identity_headers: BTreeSet::new(),
        }
    }

    /// Learns the pages' markup and the identity headers from a harmless
    /// certificate.
    async fn learn(&mut self, pki: &TestPki, ca: &Authority) {
        let options = ClientOptions::new(pki).identity(issue(ca, &harmless()));
        let pages = self.pages.get_mut().addr;
        for path in ["/", "/cert", "/headers", "/admin"] {
            let page = get(pages, &options, path, true).await;
            self.own_markup
                .extend(tags(&page.body).into_iter().map(str::to_owned));
        }
        let proxy = self.proxy.get_mut().addr;
        let echo = get(proxy, &options, "/learn", false).await.json();
        self.all_identity_headers = identity_header_names(&echo).into_iter().collect();
        assert!(
            self.all_identity_headers.len() >= 16,
            "{:?}",
            self.all_identity_headers
        );
    }

    /// Checks the log lines written since the last call, once the line for
    /// `marker` (a request path) has arrived.
    fn check_logs(&self, marker: &str) {
        let (mut pages_done, mut proxy_done) = self.checked.get();
        let mut pages = self.pages.borrow_mut();
        pages.wait_for(marker);
        for line in &pages.log[pages_done..] {
            assert_text_log_line(line);
        }
        pages_done = pages.log.len();
        let mut proxy = self.proxy.borrow_mut();
        proxy.wait_for(marker);
        for line in &proxy.log[proxy_done..] {
            assert_json_log_line(line);
        }
        proxy_done = proxy.log.len();
        self.checked.set((pages_done, proxy_done));
    }
}

/// One generated certificate through every sink.
async fn check_case(
    pki: &TestPki,
    ca: &Authority,
    servers: &Servers,
    case: usize,
    subject: &Subject,
) {
    let issued = issue(ca, subject);
    let der = leaf_der(&issued);
    let options = ClientOptions::new(pki).identity(issued);
    let pages = servers.pages.borrow().addr;
    let proxy = servers.proxy.borrow().addr;
    let cn = subject.cn.shown();

    // JSON: one document; the attribute is the exact (or lossily decoded)
    // value; the RFC 4514 form has no control character left.
    let answer = get(pages, &options, "/cert", false).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let json = answer.json();
    let cert = &json["client_certificate"];
    let attributes = cert["subject"]["attributes"].as_array().unwrap();
    let value_of = |kind: &str| {
        attributes
            .iter()
            .find(|a| a["type"] == kind)
            .map(|a| a["value"].as_str().unwrap().to_owned())
    };
    assert_eq!(value_of("CN").as_deref(), Some(cn.as_str()));
    assert_eq!(value_of("O").as_deref(), Some(subject.org.as_str()));
    let rfc4514 = cert["subject"]["rfc4514"].as_str().unwrap().to_owned();
    assert!(!has_control(&rfc4514), "{rfc4514:?}");
    if subject.broken_dns.is_none() {
        let sans = &cert["subject_alt_names"];
        assert_eq!(sans["dns"], serde_json::json!(subject.dns));
        assert_eq!(sans["uri"], serde_json::json!(subject.uris));
        assert_eq!(sans["email"], serde_json::json!(subject.emails));
    }
    let whoami = get(pages, &options, "/whoami", false).await.json();
    assert_eq!(whoami["identity"]["common_name"], cn.as_str());
    assert_eq!(whoami["identity"]["subject"], rfc4514.as_str());

    // HTML: only the page's own markup; certificate text is escaped.
    for path in ["/", "/cert", "/headers"] {
        let page = get(pages, &options, path, true).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert_only_own_markup(&page.body, &servers.own_markup, path);
        if cn.contains("<script>") && path != "/headers" {
            assert!(page.body.contains("&lt;script"), "{path}: {}", page.body);
        }
    }

    // Plain text: one line.
    let hello = get(pages, &options, "/hello", false).await.body;
    let line = hello
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("{hello:?}"));
    assert!(!has_control(line), "{hello:?}");

    // Refusals name the subject, escaped, in JSON and HTML.
    let refused = get(pages, &options, "/admin", false).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let detail = refused.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains(&rfc4514), "{detail:?} lacks {rfc4514:?}");
    let refused = get(pages, &options, "/admin", true).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_only_own_markup(&refused.body, &servers.own_markup, "/admin");

    // The admin endpoint's lists are JSON documents.
    for list in ["/clients", "/failures"] {
        let body = common::plain_get(servers.admin, list).await;
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(&body);
        assert!(parsed.is_ok(), "{list}: {body}");
    }

    // Identity headers: single valid values, no header added, and the
    // values decode back where the format allows it.
    let marker = format!("/case/{case}");
    let answer = get(proxy, &options, &marker, false).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let echo = answer.json();
    let names = identity_header_names(&echo);
    let distinct: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        names.len(),
        "a header came twice: {names:?}"
    );
    assert!(
        distinct.is_subset(&servers.all_identity_headers),
        "unexpected headers: {:?}",
        distinct.difference(&servers.all_identity_headers)
    );
    for pair in echo["headers"].as_array().unwrap() {
        let value = pair[1].as_str().unwrap();
        assert!(
            !value.chars().any(|c| c < ' ' || c == '\u{7f}'),
            "{}: {value:?}",
            pair[0]
        );
    }
    assert_eq!(
        received(&echo, "x-arr-clientcert"),
        [BASE64.encode(&der).as_str()]
    );
    let nginx_dn = received(&echo, "x-ssl-client-s-dn");
    let xfcc = received(&echo, "x-forwarded-client-cert");
    assert_eq!(xfcc.len(), 1);
    let elements = split_outside_quotes(xfcc[0], ',');
    assert_eq!(elements.len(), 1, "{xfcc:?}");
    let mut dns = Vec::new();
    for pair in split_outside_quotes(elements[0], ';') {
        let (key, value) = pair.split_once('=').unwrap();
        match key {
            "Hash" | "URI" => {}
            "Cert" => {
                let pem = percent_decode(&unquote(value), false);
                assert_eq!(
                    CertificateDer::from_pem_slice(&pem).unwrap().as_ref(),
                    der.as_slice()
                );
            }
            "Chain" => assert!(value.starts_with('"')),
            // The RFC 2253 form goes inside the quotes as it is (as Envoy
            // puts it): its own escapes keep `"` and `\` paired. Unquoted,
            // in the nginx header, a final escaped space (`\ `) loses its
            // space: HTTP trims the ends of field values.
            "Subject" => {
                let inner = value.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                assert_eq!(inner.map(|v| v.trim_end_matches(' ')), Some(nginx_dn[0]));
            }
            "DNS" => dns.push(unquote(value)),
            other => panic!("XFCC key {other:?} in {xfcc:?}"),
        }
    }
    if subject.broken_dns.is_none() {
        assert_eq!(dns.len(), subject.dns.len(), "{xfcc:?}");
        for (got, sent) in dns.iter().zip(&subject.dns) {
            if !sent.chars().any(|c| c.is_control()) {
                assert_eq!(got, sent);
            }
        }
    }
    let info = received(&echo, "x-forwarded-tls-client-cert-info");
    assert_eq!(info.len(), 1);
    // Bytes of a non-UTF-8 name come through percent-encoded as they are.
    let info = String::from_utf8_lossy(&percent_decode(info[0], true)).into_owned();
    let certs = split_outside_quotes(&info, ',');
    assert_eq!(certs.len(), 1, "{info:?}");
    let traefik_subject = split_outside_quotes(certs[0], ';')
        .into_iter()
        .find_map(|field| field.strip_prefix("Subject="))
        .map(unquote);
    if subject.cn.is_text() {
        // The DNs and the CN decode back to the certificate's values.
        let expected = vec![
            ("CN".to_owned(), cn.as_bytes().to_vec()),
            ("O".to_owned(), subject.org.as_bytes().to_vec()),
        ];
        assert_eq!(parse_rfc4514(nginx_dn[0]), expected, "{nginx_dn:?}");
        let apache_dn = received(&echo, "ssl-client-s-dn");
        assert_eq!(parse_rfc4514(apache_dn[0]), expected, "{apache_dn:?}");
        let apache_cn = received(&echo, "ssl-client-s-dn-cn");
        let apache_cn: Vec<Vec<u8>> = apache_cn.iter().map(|v| unescape_modssl(v)).collect();
        if cn.is_empty() {
            assert!(apache_cn.is_empty(), "{apache_cn:?}");
        } else {
            assert_eq!(apache_cn, [cn.as_bytes()], "{cn:?}");
        }
        let mut expected = Vec::new();
        if !subject.org.is_empty() {
            expected.push(format!("O={}", subject.org));
        }
        if !cn.is_empty() {
            expected.push(format!("CN={cn}"));
        }
        assert_eq!(traefik_subject.unwrap_or_default(), expected.join(","));
    }

    // Logs: every line written so far is one whole line (the request for
    // `marker` comes last on both servers).
    let answer = get(pages, &options, &marker, false).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    servers.check_logs(&marker);
}

#[test]
fn generated_certificates_never_break_out_of_any_sink() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pki = TestPki::new();
    let ca = authority_from(pki.dir.path());
    let ca_der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
    let ca_subject = CertDetails::from_der(&ca_der).unwrap().subject.rfc4514;
    let upstream = runtime.block_on(EchoUpstream::start());
    let mut servers = Servers::start(&pki, &upstream, &ca_subject);
    runtime.block_on(servers.learn(&pki, &ca));

    let case = Cell::new(0);
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let started = std::time::Instant::now();
    let result = runner.run(&subject(), |subject| {
        case.set(case.get() + 1);
        runtime.block_on(check_case(&pki, &ca, &servers, case.get(), &subject));
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    eprintln!(
        "{} certificates checked in {:?}",
        case.get(),
        started.elapsed()
    );

    // And the whole logs, to their last line.
    let Servers { pages, proxy, .. } = servers;
    let (_, log) = pages.into_inner().terminate();
    log.iter().for_each(|line| assert_text_log_line(line));
    let (_, log) = proxy.into_inner().terminate();
    log.iter().for_each(|line| assert_json_log_line(line));
}
