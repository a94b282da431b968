//! The identity headers a reverse proxy sends to the application behind it,
//! each format written the way its reference system writes it, and the
//! removal of such headers when a client sends them itself.
//!
//! | format    | reference                                              | headers |
//! |-----------|--------------------------------------------------------|---------|
//! | `apache`  | Apache httpd mod_ssl variables passed on by mod_headers (`RequestHeader set SSL_CLIENT_S_DN "%{SSL_CLIENT_S_DN}s"`) | `SSL-Client-Verify`, `-S-DN`, `-I-DN`, `-S-DN-CN`, `-M-Serial`, `-V-Start`, `-V-End`, `-Cert` |
//! | `azure`   | Azure App Service client certificates                  | `X-ARR-ClientCert` |
//! | `xfcc`    | Envoy `x-forwarded-client-cert`                        | `x-forwarded-client-cert` |
//! | `nginx`   | nginx `ngx_http_ssl_module` variables (`proxy_set_header X-SSL-Client-S-DN $ssl_client_s_dn`) | `X-SSL-Client-Verify`, `-S-DN`, `-I-DN`, `-Serial`, `-Fingerprint`, `-Cert` |
//! | `traefik` | Traefik `PassTLSClientCert` middleware (`pem` and `info`) | `X-Forwarded-Tls-Client-Cert`, `X-Forwarded-Tls-Client-Cert-Info` |
//!
//! Apache, nginx and Envoy print names with OpenSSL (BoringSSL for Envoy),
//! so this module carries its own re-implementation of the OpenSSL
//! functions they call (`X509_NAME_print_ex` with `XN_FLAG_RFC2253`,
//! `X509_NAME_oneline`, `ASN1_STRING_print_ex`, `i2a_ASN1_INTEGER`,
//! `ASN1_TIME_print`), written from their documentation and observed
//! behaviour; the output was compared byte for byte with OpenSSL 3.0's own
//! calls on a few hundred certificates and hand-made names (string types,
//! escapes, multi-valued RDNs, unknown attribute types, serials, dates).
//! Traefik is written in Go, so its values follow Go's `crypto/x509` and
//! `url.QueryEscape`.
//!
//! Certificate fields are chosen by whoever made the certificate. Every value
//! produced here is a valid single-line [`HeaderValue`] without CR, LF, NUL
//! or any other control character, and no field can break the quoting of the
//! structured formats (see the notes on [`HeaderFormat::Xfcc`] and
//! [`HeaderFormat::Traefik`] for the two places where the reference would
//! not have been safe and this module escapes more). No value starts or
//! ends with a space either: HTTP strips those, so the references' `admin `
//! would reach the app as `admin`, another certificate's name; here an edge
//! space is written as the format's hex escape (see `keep_edge_spaces`).
//!
//! Header names are case-insensitive; `hyper` stores and sends them in
//! lower case (as HTTP/2 requires), so `SSL-Client-S-DN` arrives as
//! `ssl-client-s-dn`.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::net::Ipv6Addr;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::der_parser::asn1_rs::{Any, Class, Tag, ToDer};
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use crate::cert::CertDetails;
use crate::cert::dn::dotted_oid;
use crate::http::pem_certificate;
use crate::rejection::{ReasonCode, Rejection};

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// A family of identity headers, named after the system whose format it copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderFormat {
    /// Apache httpd mod_ssl's `SSL_CLIENT_*` variables, as
    /// `RequestHeader set NAME "%{NAME}s"` forwards them.
    Apache,
    /// Azure App Service's `X-ARR-ClientCert`: the leaf as base64 DER.
    Azure,
    /// Envoy's `x-forwarded-client-cert` (XFCC).
    ///
    /// Envoy documents that a value containing `,`, `;`, `=` or `"` is
    /// double-quoted with `"` written as `\"`; Envoy itself leaves `By`,
    /// `URI` and `DNS` unquoted, which a SAN such as `a;DNS=evil` would
    /// break. This module applies the documented rule to every value, also
    /// writes `\` as `\\` inside quotes (so a value ending in `\` cannot
    /// swallow the closing quote) and percent-encodes control and
    /// non-ASCII bytes of SAN values, which have no place in a header.
    Xfcc,
    /// nginx's `$ssl_client_*` variables under the conventional
    /// `X-SSL-Client-*` names.
    Nginx,
    /// Traefik's `PassTLSClientCert` middleware with `pem` and every `info`
    /// field enabled.
    ///
    /// Traefik writes the values inside `Subject="..."`, `Issuer="..."` and
    /// `SANs="..."` raw, so a `"` in a certificate's subject would end the
    /// quoted value early; this module writes `"` as `\"` and `\` as `\\`
    /// inside the quotes (XFCC's convention). For certificates without `"`
    /// or `\` in those fields the output is Traefik's.
    Traefik,
}

impl HeaderFormat {
    pub const ALL: [HeaderFormat; 5] = [
        HeaderFormat::Apache,
        HeaderFormat::Azure,
        HeaderFormat::Xfcc,
        HeaderFormat::Nginx,
        HeaderFormat::Traefik,
    ];

    /// The name used in configuration: `apache`, `azure`, `xfcc`, `nginx`, `traefik`.
    pub fn name(self) -> &'static str {
        match self {
            HeaderFormat::Apache => "apache",
            HeaderFormat::Azure => "azure",
            HeaderFormat::Xfcc => "xfcc",
            HeaderFormat::Nginx => "nginx",
            HeaderFormat::Traefik => "traefik",
        }
    }

    /// A comma-separated list such as `apache,xfcc`: names are trimmed and
    /// matched case-insensitively, empty items are skipped and a repeated
    /// format is kept once, in its first position.
    pub fn parse_list(list: &str) -> Result<Vec<HeaderFormat>, UnknownHeaderFormat> {
        let mut formats = Vec::new();
        for item in list
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let format = item.parse()?;
            if !formats.contains(&format) {
                formats.push(format);
            }
        }
        Ok(formats)
    }
}

impl fmt::Display for HeaderFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HeaderFormat {
    type Err = UnknownHeaderFormat;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        HeaderFormat::ALL
            .into_iter()
            .find(|format| format.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| UnknownHeaderFormat(text.to_owned()))
    }
}

/// A header format name that is not one of [`HeaderFormat::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown identity header format `{0}`; valid formats are apache, azure, xfcc, nginx and traefik"
)]
pub struct UnknownHeaderFormat(pub String);

/// How the `apache` format spells its headers and distinguished names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApacheOptions {
    /// Send `SSL_CLIENT_S_DN` instead of `SSL-Client-S-DN`. WSGI and CGI
    /// map both spellings to the same `HTTP_SSL_CLIENT_S_DN`, but current
    /// Werkzeug and Gunicorn drop header names containing underscores (a
    /// defence against exactly this ambiguity), so hyphens are the default.
    pub underscore_names: bool,
    /// Write `SSL_CLIENT_S_DN` and `SSL_CLIENT_I_DN` in the old OpenSSL
    /// one-line form `/C=US/ST=Virginia/CN=Grace Hopper`, as
    /// `SSLOptions +LegacyDNStringFormat` does, instead of RFC 2253.
    pub legacy_dn: bool,
}

/// A client certificate that passed verification.
#[derive(Debug, Clone, Copy)]
pub struct ClientCertificate<'a> {
    /// Leaf first, as the client sent it.
    pub chain: &'a [CertificateDer<'static>],
    /// The decoded leaf (`chain[0]`).
    pub details: &'a CertDetails,
}

/// What the handshake established about the client.
#[derive(Debug, Clone, Copy)]
pub enum VerifyState<'a> {
    Success(ClientCertificate<'a>),
    /// No certificate was presented.
    None,
    /// A certificate was presented and refused. It is never an identity:
    /// only the verify-state headers are sent.
    Failed(&'a Rejection),
}

/// The headers of every format in `formats` (in that order, each format
/// once) for the client in `state`. `server_uri_san` is this server's own
/// URI SAN, for XFCC's `By`.
///
/// Without a verified certificate only the verify-state headers are sent
/// (`SSL-Client-Verify` for `apache`, `X-SSL-Client-Verify` for `nginx`);
/// the other formats send nothing. Headers whose value would be empty are
/// left out, as nginx's `proxy_set_header` does (Apache would send the
/// text `(null)` instead, which no application wants).
///
/// The `apache` DN and CN values keep non-ASCII as raw UTF-8, as mod_ssl
/// does: read them with [`HeaderValue::as_bytes`], not `to_str`, which
/// accepts visible ASCII only. Every other value is ASCII.
pub fn identity_headers(
    formats: &[HeaderFormat],
    apache: &ApacheOptions,
    state: &VerifyState<'_>,
    server_uri_san: Option<&str>,
) -> Vec<(HeaderName, HeaderValue)> {
    let client = match state {
        // webpki accepted the leaf and `details` was decoded from it, so it
        // parses; should it not, nothing at all is sent rather than a
        // SUCCESS without the identity it vouches for.
        VerifyState::Success(client) => match Client::parse(client) {
            Some(client) => Some(client),
            None => return Vec::new(),
        },
        VerifyState::None | VerifyState::Failed(_) => None,
    };
    let verify = verify_text(state);
    let mut out = Headers::default();
    let mut done = Vec::with_capacity(formats.len());
    for &format in formats {
        if done.contains(&format) {
            continue;
        }
        done.push(format);
        match format {
            HeaderFormat::Apache => apache_headers(&mut out, apache, &verify, client.as_ref()),
            HeaderFormat::Nginx => nginx_headers(&mut out, &verify, client.as_ref()),
            HeaderFormat::Azure => {
                if let Some(client) = &client {
                    out.push(X_ARR_CLIENTCERT, BASE64.encode(client.der));
                }
            }
            HeaderFormat::Xfcc => {
                if let Some(client) = &client {
                    out.push(X_FORWARDED_CLIENT_CERT, xfcc(client, server_uri_san));
                }
            }
            HeaderFormat::Traefik => {
                if let Some(client) = &client {
                    out.push(X_FORWARDED_TLS_CLIENT_CERT, traefik_pem(client.chain));
                    out.push(X_FORWARDED_TLS_CLIENT_CERT_INFO, traefik_info(client));
                }
            }
        }
    }
    out.0
}

/// Removes every identity header a client may have sent to impersonate
/// another, whichever formats are enabled, and returns the names removed
/// (each once, lower case as received) for logging the attempt.
///
/// Names are compared case-insensitively and with `_` and `-` equal (WSGI
/// and CGI cannot tell them apart). Removed are all headers of all formats,
/// `X-Client-Identity`, and the whole families they belong to: any name
/// starting with `SSL-Client-` (mod_ssl has many more `SSL_CLIENT_*`
/// variables, such as `SSL_CLIENT_S_DN_O` or `SSL_CLIENT_CERT_CHAIN_0`),
/// `X-SSL-Client-` or `X-Forwarded-Tls-Client-Cert`.
pub fn strip_identity_headers(headers: &mut HeaderMap) -> Vec<String> {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_identity_header(name.as_str()))
        .cloned()
        .collect();
    for name in &spoofed {
        headers.remove(name);
    }
    spoofed
        .into_iter()
        .map(|name| name.as_str().to_owned())
        .collect()
}

/// Whether `name` is one of the headers [`strip_identity_headers`] removes.
pub fn is_identity_header(name: &str) -> bool {
    let normal: String = name
        .chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    STRIPPED_PREFIXES
        .iter()
        .any(|prefix| normal.starts_with(prefix))
        || STRIPPED_NAMES.contains(&normal.as_str())
}

pub const X_ARR_CLIENTCERT: HeaderName = HeaderName::from_static("x-arr-clientcert");
pub const X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
pub const X_SSL_CLIENT_VERIFY: HeaderName = HeaderName::from_static("x-ssl-client-verify");
pub const X_SSL_CLIENT_S_DN: HeaderName = HeaderName::from_static("x-ssl-client-s-dn");
pub const X_SSL_CLIENT_I_DN: HeaderName = HeaderName::from_static("x-ssl-client-i-dn");
pub const X_SSL_CLIENT_SERIAL: HeaderName = HeaderName::from_static("x-ssl-client-serial");
pub const X_SSL_CLIENT_FINGERPRINT: HeaderName =
    HeaderName::from_static("x-ssl-client-fingerprint");
pub const X_SSL_CLIENT_CERT: HeaderName = HeaderName::from_static("x-ssl-client-cert");
pub const X_FORWARDED_TLS_CLIENT_CERT: HeaderName =
    HeaderName::from_static("x-forwarded-tls-client-cert");
pub const X_FORWARDED_TLS_CLIENT_CERT_INFO: HeaderName =
    HeaderName::from_static("x-forwarded-tls-client-cert-info");
/// Reserved for the signed identity format; stripped already.
pub const X_CLIENT_IDENTITY: HeaderName = HeaderName::from_static("x-client-identity");

/// Normalised (lower case, `-`) names that are stripped exactly; the
/// prefixes below cover the `SSL_CLIENT_*`, `X-SSL-Client-*` and Traefik
/// names.
const STRIPPED_NAMES: [&str; 3] = [
    "x-arr-clientcert",
    "x-forwarded-client-cert",
    "x-client-identity",
];
const STRIPPED_PREFIXES: [&str; 3] = [
    "ssl-client-",
    "x-ssl-client-",
    "x-forwarded-tls-client-cert",
];

// ---------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Headers(Vec<(HeaderName, HeaderValue)>);

impl Headers {
    /// Adds a header unless its value is empty. A value with a control
    /// character is never produced by the formatters; should one appear, the
    /// header is dropped rather than sent.
    fn push(&mut self, name: HeaderName, value: impl AsRef<[u8]>) {
        let value = value.as_ref();
        if value.is_empty() || value.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return;
        }
        if let Ok(value) = HeaderValue::from_bytes(value) {
            self.0.push((name, value));
        }
    }
}

/// The verified leaf, parsed again for what `CertDetails` does not keep:
/// the RDN structure and raw bytes of names, the raw serial, the times.
struct Client<'c> {
    chain: &'c [CertificateDer<'static>],
    der: &'c [u8],
    cert: X509Certificate<'c>,
    details: &'c CertDetails,
}

impl<'c> Client<'c> {
    fn parse(client: &ClientCertificate<'c>) -> Option<Self> {
        let der: &'c [u8] = client.chain.first()?.as_ref();
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        Some(Client {
            chain: client.chain,
            der,
            cert,
            details: client.details,
        })
    }
}

/// `SUCCESS`, `NONE` or `FAILED:reason`, the three values documented for
/// mod_ssl's `SSL_CLIENT_VERIFY` and nginx's `$ssl_client_verify`. Both put
/// OpenSSL's verify error text after `FAILED:` (such as `certificate has
/// expired`); rustls has no such text, so this is the stable reason code of
/// the rejection (`FAILED:expired`). A rejection for a missing certificate
/// is `NONE`, which is what both report when no certificate was sent.
fn verify_text(state: &VerifyState<'_>) -> Cow<'static, str> {
    match state {
        VerifyState::Success(_) => Cow::Borrowed("SUCCESS"),
        VerifyState::None => Cow::Borrowed("NONE"),
        VerifyState::Failed(rejection) if rejection.reason == ReasonCode::NoCertificate => {
            Cow::Borrowed("NONE")
        }
        VerifyState::Failed(rejection) => Cow::Owned(format!("FAILED:{}", rejection.reason)),
    }
}

// ---------------------------------------------------------------------------
// apache: mod_ssl + mod_headers
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum ApacheVar {
    Verify,
    SubjectDn,
    IssuerDn,
    SubjectCn,
    Serial,
    Start,
    End,
    Cert,
}

impl ApacheVar {
    fn header(self, underscore: bool) -> HeaderName {
        use ApacheVar::*;
        HeaderName::from_static(match (self, underscore) {
            (Verify, false) => "ssl-client-verify",
            (Verify, true) => "ssl_client_verify",
            (SubjectDn, false) => "ssl-client-s-dn",
            (SubjectDn, true) => "ssl_client_s_dn",
            (IssuerDn, false) => "ssl-client-i-dn",
            (IssuerDn, true) => "ssl_client_i_dn",
            (SubjectCn, false) => "ssl-client-s-dn-cn",
            (SubjectCn, true) => "ssl_client_s_dn_cn",
            (Serial, false) => "ssl-client-m-serial",
            (Serial, true) => "ssl_client_m_serial",
            (Start, false) => "ssl-client-v-start",
            (Start, true) => "ssl_client_v_start",
            (End, false) => "ssl-client-v-end",
            (End, true) => "ssl_client_v_end",
            (Cert, false) => "ssl-client-cert",
            (Cert, true) => "ssl_client_cert",
        })
    }
}

/// mod_ssl's variables (`ssl_engine_vars.c`): verify state, subject and
/// issuer DN, subject CN, serial, validity, certificate.
fn apache_headers(
    out: &mut Headers,
    options: &ApacheOptions,
    verify: &str,
    client: Option<&Client<'_>>,
) {
    let name = |var: ApacheVar| var.header(options.underscore_names);
    out.push(name(ApacheVar::Verify), verify);
    let Some(client) = client else { return };
    let cert = &client.cert;
    let dn = |x509_name: &X509Name<'_>| {
        if options.legacy_dn {
            keep_edge_spaces(openssl_oneline(x509_name).into_bytes(), b"\\x20")
        } else {
            // mod_ssl: X509_NAME_print_ex(.., XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
            // its documentation: non-ASCII characters "are converted to UTF8".
            rfc2253_header(x509_name, false)
        }
    };
    out.push(name(ApacheVar::SubjectDn), dn(cert.subject()));
    out.push(name(ApacheVar::IssuerDn), dn(cert.issuer()));
    // SSL_CLIENT_S_DN_CN is the first CN in certificate order, printed with
    // ASN1_STRFLGS_ESC_CTRL | ASN1_STRFLGS_UTF8_CONVERT (not RFC 2253 escaped).
    if let Some(cn) = cert
        .subject()
        .iter_attributes()
        .find(|attr| attr.attr_type().to_id_string() == "2.5.4.3")
    {
        let mut value = Vec::new();
        print_value(&mut value, cn.attr_value(), MODSSL_ENTRY);
        out.push(name(ApacheVar::SubjectCn), keep_edge_spaces(value, b"\\20"));
    }
    out.push(name(ApacheVar::Serial), openssl_serial(cert.raw_serial()));
    let validity = cert.validity();
    out.push(
        name(ApacheVar::Start),
        asn1_time_print(validity.not_before.to_datetime()),
    );
    out.push(
        name(ApacheVar::End),
        asn1_time_print(validity.not_after.to_datetime()),
    );
    out.push(name(ApacheVar::Cert), apache_pem(client.der));
}

/// `SSL_CLIENT_CERT` as `RequestHeader set SSL_CLIENT_CERT
/// "%{SSL_CLIENT_CERT}s"` sends it: mod_headers replaces every CR and LF
/// of an SSL variable with a space (its `unwrap_header`), which turns the
/// PEM into one line. The trailing space that the PEM's final newline
/// becomes is left out: HTTP excludes trailing whitespace from a field
/// value, so the application sees the same value either way.
fn apache_pem(der: &[u8]) -> String {
    pem_certificate(der).trim_end().replace(['\r', '\n'], " ")
}

// ---------------------------------------------------------------------------
// nginx: ngx_http_ssl_module variables
// ---------------------------------------------------------------------------

fn nginx_headers(out: &mut Headers, verify: &str, client: Option<&Client<'_>>) {
    // $ssl_client_verify: SUCCESS, FAILED:reason, NONE.
    out.push(X_SSL_CLIENT_VERIFY, verify);
    let Some(client) = client else { return };
    let cert = &client.cert;
    // $ssl_client_s_dn / $ssl_client_i_dn (RFC 2253 since 1.11.6):
    // X509_NAME_print_ex(.., XN_FLAG_RFC2253), non-ASCII as \XX.
    out.push(X_SSL_CLIENT_S_DN, rfc2253_header(cert.subject(), true));
    out.push(X_SSL_CLIENT_I_DN, rfc2253_header(cert.issuer(), true));
    // $ssl_client_serial: i2a_ASN1_INTEGER.
    out.push(X_SSL_CLIENT_SERIAL, openssl_serial(cert.raw_serial()));
    // $ssl_client_fingerprint: SHA-1 of the DER, lowercase hex (ngx_hex_dump).
    out.push(
        X_SSL_CLIENT_FINGERPRINT,
        client.details.fingerprints.sha1.to_ascii_lowercase(),
    );
    // $ssl_client_escaped_cert: the PEM through ngx_escape_uri with
    // NGX_ESCAPE_URI_COMPONENT, which keeps exactly A-Z a-z 0-9 - . _ ~.
    out.push(
        X_SSL_CLIENT_CERT,
        percent_encode(pem_certificate(client.der).as_bytes(), false),
    );
}

// ---------------------------------------------------------------------------
// xfcc: Envoy x-forwarded-client-cert
// ---------------------------------------------------------------------------

/// One XFCC element, in the order Envoy writes its keys: `By`, `Hash`,
/// `Cert`, `Chain`, `Subject`, `URI`, `DNS`, joined by `;`. As in Envoy:
/// `Hash` is the lowercase hex SHA-256 of the leaf DER; `Cert` and `Chain`
/// are the URL-encoded PEM (every byte but A-Z a-z 0-9 - . _ ~ as `%XX`)
/// inside double quotes; `Subject` is the RFC 2253 subject
/// (`X509_NAME_print_ex` with `XN_FLAG_RFC2253`), always quoted and present
/// even when empty; there is one `URI=` per URI SAN and a bare `URI=` when
/// there is none; one `DNS=` per DNS SAN and none when there is none.
fn xfcc(client: &Client<'_>, server_uri_san: Option<&str>) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(uri) = server_uri_san {
        parts.push(format!("By={}", xfcc_value(uri)));
    }
    parts.push(format!(
        "Hash={}",
        client.details.fingerprints.sha256.to_ascii_lowercase()
    ));
    parts.push(format!(
        "Cert=\"{}\"",
        percent_encode(pem_certificate(client.der).as_bytes(), false)
    ));
    let chain: String = client
        .chain
        .iter()
        .map(|der| pem_certificate(der))
        .collect();
    parts.push(format!(
        "Chain=\"{}\"",
        percent_encode(chain.as_bytes(), false)
    ));
    // The RFC 2253 form escapes `"` and `\` and has no control or non-ASCII
    // byte, so it goes inside the quotes as it is, as Envoy puts it there.
    let subject =
        String::from_utf8_lossy(&rfc2253_header(client.cert.subject(), true)).into_owned();
    parts.push(format!("Subject=\"{subject}\""));
    let sans = &client.details.subject_alt_names;
    if sans.uri.is_empty() {
        parts.push("URI=".to_owned());
    }
    for uri in &sans.uri {
        parts.push(format!("URI={}", xfcc_value(uri)));
    }
    for dns in &sans.dns {
        parts.push(format!("DNS={}", xfcc_value(dns)));
    }
    parts.join(";")
}

/// A value as Envoy's documentation asks: double-quoted when it contains
/// `,` `;` `=` or `"`, with `"` written as `\"` (and `\` as `\\`, see
/// [`HeaderFormat::Xfcc`]). Control and non-ASCII bytes, which a header
/// cannot carry and no valid URI or DNS name contains, become `%XX` first.
/// A value that starts or ends with a space is quoted too: unquoted at the
/// end of the header, HTTP would strip the space.
fn xfcc_value(value: &str) -> String {
    let mut clean = String::with_capacity(value.len());
    for &byte in value.as_bytes() {
        if !(0x20..0x7f).contains(&byte) {
            let _ = write!(clean, "%{byte:02X}");
        } else {
            clean.push(byte as char);
        }
    }
    if !clean.contains([',', ';', '=', '"']) && !clean.starts_with(' ') && !clean.ends_with(' ') {
        return clean;
    }
    let mut quoted = String::with_capacity(clean.len() + 2);
    quoted.push('"');
    for c in clean.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

// ---------------------------------------------------------------------------
// Spaces at the edges of a value
// ---------------------------------------------------------------------------

/// HTTP strips spaces at both ends of a field value (RFC 9110, section 5.5),
/// so a certificate name `admin ` sent as it is would reach the application
/// as `admin`: the name of another certificate. A space at either end of
/// `value` is written as `escaped_space` instead: `\20` in mod_ssl's
/// single values and in RFC 2253 (whose readers decode `\XX`), `\x20` in
/// the legacy one-line form. Mod_ssl and nginx send the space and lose it
/// in transit; no other byte of the value changes.
fn keep_edge_spaces(mut value: Vec<u8>, escaped_space: &[u8]) -> Vec<u8> {
    if value.last() == Some(&b' ') {
        value.pop();
        value.extend_from_slice(escaped_space);
    }
    if value.first() == Some(&b' ') {
        value.splice(..1, escaped_space.iter().copied());
    }
    value
}

/// [`openssl_rfc2253`] for a header: the escaped trailing space that ends a
/// name whose last value ends in a space (`CN=x\ `) is written `\20`, so
/// that HTTP cannot strip it. (RFC 2253 escapes every such space, so a value
/// never ends in an unescaped one, and it never starts with a space.)
fn rfc2253_header(name: &X509Name<'_>, msb: bool) -> Vec<u8> {
    let mut value = openssl_rfc2253(name, msb);
    if value.ends_with(b"\\ ") {
        value.pop();
        value.extend_from_slice(b"20");
    }
    value
}

// ---------------------------------------------------------------------------
// traefik: PassTLSClientCert
// ---------------------------------------------------------------------------

/// `X-Forwarded-Tls-Client-Cert`: for each certificate the client sent,
/// leaf first, the PEM without its BEGIN/END lines and newlines (that is,
/// the base64 of the DER), escaped with Go's `url.QueryEscape`; the
/// certificates are separated by a plain `,` (Traefik escapes each
/// certificate, then joins them).
fn traefik_pem(chain: &[CertificateDer<'static>]) -> String {
    chain
        .iter()
        .map(|der| percent_encode(BASE64.encode(der.as_ref()).as_bytes(), true))
        .collect::<Vec<_>>()
        .join(",")
}

/// `X-Forwarded-Tls-Client-Cert-Info` with every documented `info` option
/// on except the certificate `serialNumber` (`notAfter`, `notBefore`,
/// `sans`, and all `subject` and `issuer` fields): for each certificate
/// `Subject="...";Issuer="...";NB="...";NA="...";SANs="..."`, certificates
/// separated by `,`, the whole escaped with Go's `url.QueryEscape`. Empty
/// fields are left out, as Traefik does.
fn traefik_info(client: &Client<'_>) -> String {
    let mut certs = Vec::with_capacity(client.chain.len());
    for (i, der) in client.chain.iter().enumerate() {
        let parsed;
        let (cert, details) = if i == 0 {
            (&client.cert, Cow::Borrowed(client.details))
        } else {
            match (
                X509Certificate::from_der(der.as_ref()),
                CertDetails::from_der(der.as_ref()),
            ) {
                (Ok((_, cert)), Ok(details)) => {
                    parsed = cert;
                    (&parsed, Cow::Owned(details))
                }
                // Go would have refused the handshake; keep the position.
                _ => {
                    certs.push(Vec::new());
                    continue;
                }
            }
        };
        certs.push(traefik_cert_info(cert, &details));
    }
    percent_encode(&certs.join(&b","[..]), true)
}

fn traefik_cert_info(cert: &X509Certificate<'_>, details: &CertDetails) -> Vec<u8> {
    let mut fields: Vec<Vec<u8>> = Vec::new();
    let mut quoted = |key: &str, value: &[u8]| {
        let mut field = format!("{key}=\"").into_bytes();
        for &byte in value {
            if byte == b'"' || byte == b'\\' {
                field.push(b'\\');
            }
            field.push(byte);
        }
        field.push(b'"');
        fields.push(field);
    };
    let subject = traefik_dn(cert.subject(), true);
    if !subject.is_empty() {
        quoted("Subject", &subject);
    }
    let issuer = traefik_dn(cert.issuer(), false);
    if !issuer.is_empty() {
        quoted("Issuer", &issuer);
    }
    // Go: uint64(cert.NotBefore.Unix()).
    let validity = cert.validity();
    quoted(
        "NB",
        (validity.not_before.timestamp() as u64)
            .to_string()
            .as_bytes(),
    );
    quoted(
        "NA",
        (validity.not_after.timestamp() as u64)
            .to_string()
            .as_bytes(),
    );
    // Go's order: DNSNames, EmailAddresses, IPAddresses, URIs.
    let sans = &details.subject_alt_names;
    let ips = sans.ip.iter().map(|ip| go_ip(ip));
    let all: Vec<Cow<'_, str>> = sans
        .dns
        .iter()
        .chain(&sans.email)
        .map(|s| Cow::Borrowed(s.as_str()))
        .chain(ips)
        .chain(sans.uri.iter().map(|s| Cow::Borrowed(s.as_str())))
        .collect();
    if !all.is_empty() {
        quoted("SANs", all.join(",").as_bytes());
    }
    fields.join(&b";"[..])
}

/// Go prints an IPv4-mapped IPv6 address as the IPv4 address.
fn go_ip(ip: &str) -> Cow<'_, str> {
    match ip
        .parse::<Ipv6Addr>()
        .ok()
        .and_then(|v6| v6.to_ipv4_mapped())
    {
        Some(v4) => Cow::Owned(v4.to_string()),
        None => Cow::Borrowed(ip),
    }
}

/// Traefik's `getDNInfo`: not a DN string but its own list, in a fixed
/// order whatever the certificate's: every `DC`, then every `C`, `ST`,
/// `L`, `O`, `OU` (subject only; Traefik's issuer options have no
/// organizational unit), then the last `serialNumber` as `SN` and the last
/// `CN` (Go's `pkix.Name` keeps one of each), each `TYPE=value` followed by
/// `,`, the last `,` trimmed. Values are written raw, with no escaping.
fn traefik_dn(name: &X509Name<'_>, with_ou: bool) -> Vec<u8> {
    let (mut dc, mut c, mut st, mut l, mut o, mut ou) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut serial, mut cn) = (None, None);
    for attr in name.iter_attributes() {
        let Some(value) = go_string(attr.attr_value()) else {
            continue;
        };
        match attr.attr_type().to_id_string().as_str() {
            "0.9.2342.19200300.100.1.25" => dc.push(value),
            "2.5.4.3" => cn = Some(value),
            "2.5.4.5" => serial = Some(value),
            "2.5.4.6" => c.push(value),
            "2.5.4.7" => l.push(value),
            "2.5.4.8" => st.push(value),
            "2.5.4.10" => o.push(value),
            "2.5.4.11" => ou.push(value),
            _ => {}
        }
    }
    let mut out = Vec::new();
    // Traefik writes every DC, even an empty one, but skips other empty values.
    for value in &dc {
        out.extend_from_slice(b"DC=");
        out.extend_from_slice(value);
        out.push(b',');
    }
    let mut part = |prefix: &str, value: &[u8]| {
        if !value.is_empty() {
            out.extend_from_slice(prefix.as_bytes());
            out.push(b'=');
            out.extend_from_slice(value);
            out.push(b',');
        }
    };
    let ou = if with_ou { ou } else { Vec::new() };
    for (prefix, values) in [("C", &c), ("ST", &st), ("L", &l), ("O", &o), ("OU", &ou)] {
        for value in values {
            part(prefix, value);
        }
    }
    if let Some(serial) = &serial {
        part("SN", serial);
    }
    if let Some(cn) = &cn {
        part("CN", cn);
    }
    if out.last() == Some(&b',') {
        out.pop();
    }
    out
}

/// An attribute value as Go's `crypto/x509` decodes it: PrintableString,
/// IA5String, NumericString, UTF8String and T61String as their bytes (Go
/// does not convert T61), BMPString from UTF-16 without a trailing NUL.
/// Go rejects certificates with other types; here they are skipped, except
/// UniversalString, which is decoded.
fn go_string(value: &Any<'_>) -> Option<Vec<u8>> {
    if value.class() != Class::Universal {
        return None;
    }
    let data = value.data;
    match value.tag() {
        Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::Utf8String
        | Tag::T61String => Some(data.to_vec()),
        Tag::BmpString => {
            let data = data.strip_suffix(&[0, 0]).unwrap_or(data);
            let units = data
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            Some(
                char::decode_utf16(units)
                    .map(|c| c.unwrap_or('\u{FFFD}'))
                    .collect::<String>()
                    .into_bytes(),
            )
        }
        Tag::UniversalString => Some(
            data.chunks_exact(4)
                .map(|quad| {
                    char::from_u32(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]]))
                        .unwrap_or('\u{FFFD}')
                })
                .collect::<String>()
                .into_bytes(),
        ),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Percent-encoding
// ---------------------------------------------------------------------------

/// Keeps the RFC 3986 unreserved characters `A-Z a-z 0-9 - . _ ~` and
/// writes every other byte as `%XX` (uppercase hex): Envoy's
/// `urlEncodeQueryParameter` and nginx's `NGX_ESCAPE_URI_COMPONENT` alike.
/// With `space_as_plus`, a space becomes `+`: Go's `url.QueryEscape`.
fn percent_encode(bytes: &[u8], space_as_plus: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3 / 2);
    for &byte in bytes {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            b' ' if space_as_plus => out.push('+'),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// OpenSSL's printing of names, serials and times
// ---------------------------------------------------------------------------

/// The escaping flags of OpenSSL's `ASN1_STRING_print_ex`; `ESC_CTRL` and
/// `UTF8_CONVERT` are always on in the uses here.
#[derive(Clone, Copy)]
struct Escape {
    /// `ASN1_STRFLGS_ESC_2253`: `\` before `,+"\<>;`, a leading `#` or
    /// space and a trailing space.
    rfc2253: bool,
    /// `ASN1_STRFLGS_ESC_MSB`: bytes above 0x7F as `\XX`.
    msb: bool,
    /// `ASN1_STRFLGS_DUMP_UNKNOWN` (with `DUMP_DER`): a value that is not a
    /// string type as `#` and the hex of its DER.
    dump_unknown: bool,
}

/// mod_ssl's `SSL_*_DN_x` values: `ASN1_STRFLGS_ESC_CTRL | ASN1_STRFLGS_UTF8_CONVERT`.
const MODSSL_ENTRY: Escape = Escape {
    rfc2253: false,
    msb: false,
    dump_unknown: false,
};

/// `X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253)`: the RDNs last to
/// first (`XN_FLAG_DN_REV` reverses the flat list of attributes, so the
/// attributes of a multi-valued RDN come out reversed too), `,` between
/// RDNs and `+` inside one, OpenSSL's short names, and an attribute whose
/// type OpenSSL does not know written as its dotted OID and `#` with the
/// hex of the value's DER. With `msb` off (mod_ssl's
/// `XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB`) non-ASCII stays raw UTF-8,
/// so the result is bytes rather than text.
fn openssl_rfc2253(name: &X509Name<'_>, msb: bool) -> Vec<u8> {
    let escape = Escape {
        rfc2253: true,
        msb,
        dump_unknown: true,
    };
    let entries: Vec<(usize, &AttributeTypeAndValue<'_>)> = name
        .iter_rdn()
        .enumerate()
        .flat_map(|(set, rdn)| rdn.iter().map(move |attr| (set, attr)))
        .collect();
    let mut out = Vec::new();
    let mut previous = None;
    for (set, attr) in entries.into_iter().rev() {
        if let Some(previous) = previous {
            out.push(if previous == set { b'+' } else { b',' });
        }
        previous = Some(set);
        match openssl_short_name(attr.attr_type()) {
            Some(short) => {
                out.extend_from_slice(short.as_bytes());
                out.push(b'=');
                print_value(&mut out, attr.attr_value(), escape);
            }
            None => {
                out.extend_from_slice(dotted_oid(attr.attr_type()).as_bytes());
                out.push(b'=');
                dump(&mut out, attr.attr_value());
            }
        }
    }
    out
}

/// OpenSSL 3's `X509_NAME_oneline`, the format of mod_ssl's
/// `+LegacyDNStringFormat`: the attributes in certificate order, each
/// introduced by `/` (or `+` inside a multi-valued RDN), the value's raw
/// bytes with `/` and `+` escaped as `\/` `\+` and every byte outside
/// space..`~` as `\xXX`. (OpenSSL 1.1 wrote `/` for `+` and escaped neither.)
fn openssl_oneline(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let mut previous = None;
    for (set, rdn) in name.iter_rdn().enumerate() {
        for attr in rdn.iter() {
            out.push(if previous == Some(set) { '+' } else { '/' });
            previous = Some(set);
            match openssl_short_name(attr.attr_type()) {
                Some(short) => out.push_str(short),
                None => out.push_str(&dotted_oid(attr.attr_type())),
            }
            out.push('=');
            let data = openssl_data(attr.attr_value());
            for &byte in data.iter() {
                match byte {
                    b'/' | b'+' => {
                        out.push('\\');
                        out.push(byte as char);
                    }
                    b' '..=b'~' => out.push(byte as char),
                    _ => {
                        let _ = write!(out, "\\x{byte:02X}");
                    }
                }
            }
        }
    }
    out
}

/// `ASN1_STRING_print_ex` with `UTF8_CONVERT`, `ESC_CTRL` and `escape`:
/// the string types are read as OpenSSL's `do_print_ex` reads them
/// (UTF8String byte by byte without conversion; the one-byte types as
/// Latin-1; BMPString as UCS-2 and UniversalString as UCS-4, code points
/// that UTF-8 cannot encode dropped, as OpenSSL 3 drops them), converted to
/// UTF-8 and escaped byte by byte.
fn print_value(out: &mut Vec<u8>, value: &Any<'_>, escape: Escape) {
    #[derive(PartialEq)]
    enum Width {
        Utf8,
        Byte,
        Ucs2,
        Ucs4,
        Unknown,
    }
    let width = if value.class() != Class::Universal {
        Width::Unknown
    } else {
        match value.tag().0 {
            12 => Width::Utf8,
            // Numeric, Printable, T61, IA5, UTCTime, GeneralizedTime, Visible.
            18 | 19 | 20 | 22 | 23 | 24 | 26 => Width::Byte,
            28 => Width::Ucs4,
            30 => Width::Ucs2,
            _ => Width::Unknown,
        }
    };
    if width == Width::Unknown && escape.dump_unknown {
        dump(out, value);
        return;
    }
    let data = openssl_data(value);
    let units: Vec<u32> = match width {
        Width::Ucs2 => data
            .chunks_exact(2)
            .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
            .collect(),
        Width::Ucs4 => data
            .chunks_exact(4)
            .map(|quad| u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]]))
            .collect(),
        _ => data.iter().map(|&b| u32::from(b)).collect(),
    };
    let last = units.len().saturating_sub(1);
    for (i, &unit) in units.iter().enumerate() {
        // OpenSSL marks the first unit, then the last; a single unit is
        // only "last", so a lone `#` is not escaped but a lone space is.
        let position = if !escape.rfc2253 {
            Position::Middle
        } else if i == last {
            Position::Last
        } else if i == 0 {
            Position::First
        } else {
            Position::Middle
        };
        if width == Width::Utf8 {
            escape_byte(out, unit as u8, escape, position);
        } else if let Some(c) = char::from_u32(unit) {
            let mut buf = [0u8; 4];
            for &byte in c.encode_utf8(&mut buf).as_bytes() {
                escape_byte(out, byte, escape, position);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Position {
    First,
    Middle,
    Last,
}

/// OpenSSL's `do_esc_char` for one byte.
fn escape_byte(out: &mut Vec<u8>, byte: u8, escape: Escape, position: Position) {
    if byte > 0x7f {
        if escape.msb {
            write_hex(out, byte);
        } else {
            out.push(byte);
        }
        return;
    }
    let backslash = escape.rfc2253
        && (matches!(byte, b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';')
            || (position == Position::First && matches!(byte, b'#' | b' '))
            || (position == Position::Last && byte == b' '));
    if backslash {
        out.push(b'\\');
        out.push(byte);
    } else if byte < 0x20 || byte == 0x7f {
        write_hex(out, byte);
    } else if byte == b'\\' {
        // Whenever any escaping is on, the escape character is escaped.
        out.extend_from_slice(b"\\\\");
    } else {
        out.push(byte);
    }
}

fn write_hex(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[
        b'\\',
        HEX[usize::from(byte >> 4)],
        HEX[usize::from(byte & 15)],
    ]);
}

/// The bytes OpenSSL keeps for a name attribute's value: the contents,
/// except the whole encoding for a SEQUENCE and the contents without the
/// unused-bits byte for a BIT STRING. (OpenSSL accepts no other non-string
/// type in a name; x509-parser and webpki do, and get the contents.)
fn openssl_data<'v>(value: &'v Any<'_>) -> Cow<'v, [u8]> {
    if value.class() == Class::Universal {
        match value.tag() {
            Tag::Sequence => return Cow::Owned(value.to_der_vec().unwrap_or_default()),
            Tag::BitString => return Cow::Borrowed(value.data.get(1..).unwrap_or_default()),
            _ => {}
        }
    }
    Cow::Borrowed(value.data)
}

/// `#` and the uppercase hex of the value's DER (`ASN1_STRFLGS_DUMP_DER`).
fn dump(out: &mut Vec<u8>, value: &Any<'_>) {
    out.push(b'#');
    let der = value.to_der_vec().unwrap_or_default();
    out.extend_from_slice(hex::encode_upper(der).as_bytes());
}

/// OpenSSL's short names (`OBJ_nid2sn`) for the attribute types it knows
/// that appear in names; `None` for the others, which OpenSSL writes as the
/// dotted OID.
fn openssl_short_name(oid: &Oid<'_>) -> Option<&'static str> {
    let id = oid.to_id_string();
    if let Some(n) = id.strip_prefix("2.5.4.") {
        const X500: [&str; 55] = [
            "",
            "",
            "",
            "CN",
            "SN",
            "serialNumber",
            "C",
            "L",
            "ST",
            "street",
            "O",
            "OU",
            "title",
            "description",
            "searchGuide",
            "businessCategory",
            "postalAddress",
            "postalCode",
            "postOfficeBox",
            "physicalDeliveryOfficeName",
            "telephoneNumber",
            "telexNumber",
            "teletexTerminalIdentifier",
            "facsimileTelephoneNumber",
            "x121Address",
            "internationaliSDNNumber",
            "registeredAddress",
            "destinationIndicator",
            "preferredDeliveryMethod",
            "presentationAddress",
            "supportedApplicationContext",
            "member",
            "owner",
            "roleOccupant",
            "seeAlso",
            "userPassword",
            "userCertificate",
            "cACertificate",
            "authorityRevocationList",
            "certificateRevocationList",
            "crossCertificatePair",
            "name",
            "GN",
            "initials",
            "generationQualifier",
            "x500UniqueIdentifier",
            "dnQualifier",
            "enhancedSearchGuide",
            "protocolInformation",
            "distinguishedName",
            "uniqueMember",
            "houseIdentifier",
            "supportedAlgorithms",
            "deltaRevocationList",
            "dmdName",
        ];
        return match n.parse::<usize>() {
            Ok(i) if i < X500.len() && !X500[i].is_empty() => Some(X500[i]),
            Ok(65) => Some("pseudonym"),
            Ok(72) => Some("role"),
            Ok(97) => Some("organizationIdentifier"),
            Ok(98) => Some("c3"),
            Ok(99) => Some("n3"),
            Ok(100) => Some("dnsName"),
            _ => None,
        };
    }
    Some(match id.as_str() {
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.3" => "mail",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "1.2.840.113549.1.9.2" => "unstructuredName",
        "1.2.840.113549.1.9.8" => "unstructuredAddress",
        "1.3.6.1.4.1.311.60.2.1.1" => "jurisdictionL",
        "1.3.6.1.4.1.311.60.2.1.2" => "jurisdictionST",
        "1.3.6.1.4.1.311.60.2.1.3" => "jurisdictionC",
        _ => return None,
    })
}

/// `i2a_ASN1_INTEGER`, as mod_ssl's `SSL_CLIENT_M_SERIAL` and nginx's
/// `$ssl_client_serial` print the serial: uppercase hex, two digits a byte,
/// no leading zero bytes, `-` before a negative one. (OpenSSL breaks lines
/// after 35 bytes with `\` and a newline; a header cannot, and RFC 5280
/// serials have at most 20 bytes.)
fn openssl_serial(raw: &[u8]) -> String {
    let negative = raw.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude = raw.to_vec();
    if negative {
        // Two's complement: invert and add one.
        for byte in &mut magnitude {
            *byte = !*byte;
        }
        for byte in magnitude.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
    }
    let skip = magnitude
        .iter()
        .take_while(|&&b| b == 0)
        .count()
        .min(magnitude.len().saturating_sub(1));
    let digits = &magnitude[skip..];
    let mut out = String::with_capacity(digits.len() * 2 + 1);
    if negative {
        out.push('-');
    }
    if digits.is_empty() {
        out.push_str("00");
    } else {
        out.push_str(&hex::encode_upper(digits));
    }
    out
}

/// `ASN1_TIME_print`, as mod_ssl's `SSL_CLIENT_V_START` and `_V_END`:
/// `%s %2d %02d:%02d:%02d %d GMT`, e.g. `Nov  2 12:28:50 2026 GMT` (the
/// day padded with a space).
fn asn1_time_print(time: OffsetDateTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let time = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{} {:>2} {:02}:{:02}:{:02} {} GMT",
        MONTHS[usize::from(u8::from(time.month())) - 1],
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.year()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    };

    /// Fixed Ed25519 keys: Ed25519 signatures are deterministic, so with a
    /// fixed serial and validity every certificate below is the same bytes
    /// on every run and the expected values can be written out in full.
    const CA_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJXZpF7jFzsjvmgEois4jRXNOsVqzD5+osZzM7XULmIc\n-----END PRIVATE KEY-----\n";
    const LEAF_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBCjFRaAcFQjOMygEIL3hXwIgBWTJQ9Ulopqitk4gP1C\n-----END PRIVATE KEY-----\n";

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    /// CN=mtls development CA, serial 01, valid 2025-11-02 12:28:50 UTC to
    /// 2035-11-02 12:28:50 UTC.
    fn fixed_ca() -> (Issuer<'static, KeyPair>, CertificateDer<'static>) {
        let key = KeyPair::from_pem(CA_KEY).unwrap();
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "mtls development CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(SerialNumber::from_slice(&[0x01]));
        params.not_before = at(1_762_086_530);
        params.not_after = at(2_077_619_330);
        let cert = params.self_signed(&key).unwrap();
        (Issuer::new(params, key), cert.der().clone())
    }

    struct Fixture {
        chain: Vec<CertificateDer<'static>>,
        details: CertDetails,
    }

    impl Fixture {
        fn state(&self) -> VerifyState<'_> {
            VerifyState::Success(ClientCertificate {
                chain: &self.chain,
                details: &self.details,
            })
        }
    }

    /// A client certificate from the fixed CA, valid 2025-11-02 12:28:50 UTC
    /// to 2026-11-22 12:28:50 UTC, chain = [leaf, CA].
    fn fixed_leaf(subject: DistinguishedName, sans: Vec<SanType>, serial: &[u8]) -> Fixture {
        let (issuer, ca) = fixed_ca();
        let key = KeyPair::from_pem(LEAF_KEY).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = subject;
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(SerialNumber::from_slice(serial));
        params.not_before = at(1_762_086_530);
        params.not_after = at(1_795_350_530);
        let leaf = params.signed_by(&key, &issuer).unwrap().der().clone();
        let details = CertDetails::from_der(&leaf).unwrap();
        Fixture {
            chain: vec![leaf, ca],
            details,
        }
    }

    /// CN=client, serial 8A3F0C1D (high bit set: DER adds a 00 byte that
    /// OpenSSL does not print), no SANs.
    fn simple() -> Fixture {
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "client");
        fixed_leaf(name, Vec::new(), &[0x8a, 0x3f, 0x0c, 0x1d])
    }

    /// A subject with commas, quotes, `+`, `;`, `<script>`, `\` and
    /// non-ASCII, and one SAN of each kind.
    fn tricky() -> Fixture {
        let mut name = DistinguishedName::new();
        name.push(DnType::CountryName, "US");
        name.push(DnType::OrganizationName, "Acme, Inc.");
        name.push(DnType::OrganizationalUnitName, "R\"D +1;x=y");
        name.push(DnType::CommonName, "Zürich <script>\\");
        let sans = vec![
            SanType::DnsName("client.example.com".try_into().unwrap()),
            SanType::URI("spiffe://example.org/ns/a;b=c".try_into().unwrap()),
            SanType::IpAddress("192.0.2.7".parse().unwrap()),
            SanType::Rfc822Name("grace@example.com".try_into().unwrap()),
        ];
        fixed_leaf(name, sans, &[0x01, 0x02])
    }

    fn all(fixture: &Fixture, options: ApacheOptions) -> Vec<(String, String)> {
        identity_headers(
            &HeaderFormat::ALL,
            &options,
            &fixture.state(),
            Some("spiffe://example.org/mtls"),
        )
        .into_iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8(value.as_bytes().to_vec()).unwrap(),
            )
        })
        .collect()
    }

    /// Every header for CN=client issued by CN=mtls development CA. The
    /// DN, serial, time and fingerprint values were checked against OpenSSL
    /// 3.0 (`X509_NAME_print_ex`, `X509_NAME_oneline`, `i2a_ASN1_INTEGER`,
    /// `ASN1_TIME_print`, `X509_digest`), the encodings against Python's
    /// `urllib.parse.quote` / `quote_plus` and `base64`.
    const SIMPLE_EXPECTED: [(&str, &str); 18] = [
        ("ssl-client-verify", r#"SUCCESS"#),
        ("ssl-client-s-dn", r#"CN=client"#),
        ("ssl-client-i-dn", r#"CN=mtls development CA"#),
        ("ssl-client-s-dn-cn", r#"client"#),
        ("ssl-client-m-serial", r#"8A3F0C1D"#),
        ("ssl-client-v-start", r#"Nov  2 12:28:50 2025 GMT"#),
        ("ssl-client-v-end", r#"Nov 22 12:28:50 2026 GMT"#),
        (
            "ssl-client-cert",
            r#"-----BEGIN CERTIFICATE----- MIIBNTCB6KADAgECAgUAij8MHTAFBgMrZXAwHjEcMBoGA1UEAwwTbXRscyBkZXZl bG9wbWVudCBDQTAeFw0yNTExMDIxMjI4NTBaFw0yNjExMjIxMjI4NTBaMBExDzAN BgNVBAMMBmNsaWVudDAqMAUGAytlcAMhAM+MXEqi207WNdBtq2U5zyXuMixmg06W vct6EcKU/Q5wo1QwUjAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUH AwIwHQYDVR0OBBYEFECO8tp/+oec8xRf2nr+cqvwp0qZMAwGA1UdEwEB/wQCMAAw BQYDK2VwA0EACuLAbwvJT9H3OgFpfl4u6eNb0M0WIh4u6hhPrrt8LDmCz1ks7eRd BB88JV3zOPBxY/HiC3DRjTik/ey6C8L2Bg== -----END CERTIFICATE-----"#,
        ),
        (
            "x-arr-clientcert",
            r#"MIIBNTCB6KADAgECAgUAij8MHTAFBgMrZXAwHjEcMBoGA1UEAwwTbXRscyBkZXZlbG9wbWVudCBDQTAeFw0yNTExMDIxMjI4NTBaFw0yNjExMjIxMjI4NTBaMBExDzANBgNVBAMMBmNsaWVudDAqMAUGAytlcAMhAM+MXEqi207WNdBtq2U5zyXuMixmg06Wvct6EcKU/Q5wo1QwUjAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwIwHQYDVR0OBBYEFECO8tp/+oec8xRf2nr+cqvwp0qZMAwGA1UdEwEB/wQCMAAwBQYDK2VwA0EACuLAbwvJT9H3OgFpfl4u6eNb0M0WIh4u6hhPrrt8LDmCz1ks7eRdBB88JV3zOPBxY/HiC3DRjTik/ey6C8L2Bg=="#,
        ),
        (
            "x-forwarded-client-cert",
            r#"By=spiffe://example.org/mtls;Hash=c949b06bab51b39808e5ce97424882ba6e055fd6d166f4fe706fbb0c7127d8e3;Cert="-----BEGIN%20CERTIFICATE-----%0AMIIBNTCB6KADAgECAgUAij8MHTAFBgMrZXAwHjEcMBoGA1UEAwwTbXRscyBkZXZl%0AbG9wbWVudCBDQTAeFw0yNTExMDIxMjI4NTBaFw0yNjExMjIxMjI4NTBaMBExDzAN%0ABgNVBAMMBmNsaWVudDAqMAUGAytlcAMhAM%2BMXEqi207WNdBtq2U5zyXuMixmg06W%0Avct6EcKU%2FQ5wo1QwUjAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUH%0AAwIwHQYDVR0OBBYEFECO8tp%2F%2Boec8xRf2nr%2Bcqvwp0qZMAwGA1UdEwEB%2FwQCMAAw%0ABQYDK2VwA0EACuLAbwvJT9H3OgFpfl4u6eNb0M0WIh4u6hhPrrt8LDmCz1ks7eRd%0ABB88JV3zOPBxY%2FHiC3DRjTik%2Fey6C8L2Bg%3D%3D%0A-----END%20CERTIFICATE-----%0A";Chain="-----BEGIN%20CERTIFICATE-----%0AMIIBNTCB6KADAgECAgUAij8MHTAFBgMrZXAwHjEcMBoGA1UEAwwTbXRscyBkZXZl%0AbG9wbWVudCBDQTAeFw0yNTExMDIxMjI4NTBaFw0yNjExMjIxMjI4NTBaMBExDzAN%0ABgNVBAMMBmNsaWVudDAqMAUGAytlcAMhAM%2BMXEqi207WNdBtq2U5zyXuMixmg06W%0Avct6EcKU%2FQ5wo1QwUjAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUH%0AAwIwHQYDVR0OBBYEFECO8tp%2F%2Boec8xRf2nr%2Bcqvwp0qZMAwGA1UdEwEB%2FwQCMAAw%0ABQYDK2VwA0EACuLAbwvJT9H3OgFpfl4u6eNb0M0WIh4u6hhPrrt8LDmCz1ks7eRd%0ABB88JV3zOPBxY%2FHiC3DRjTik%2Fey6C8L2Bg%3D%3D%0A-----END%20CERTIFICATE-----%0A-----BEGIN%20CERTIFICATE-----%0AMIIBLDCB36ADAgECAgEBMAUGAytlcDAeMRwwGgYDVQQDDBNtdGxzIGRldmVsb3Bt%0AZW50IENBMB4XDTI1MTEwMjEyMjg1MFoXDTM1MTEwMjEyMjg1MFowHjEcMBoGA1UE%0AAwwTbXRscyBkZXZlbG9wbWVudCBDQTAqMAUGAytlcAMhABzc%2FVRZGJ8%2B%2BjPK%2Frot%0AvQFR7NRtZfxt244mb6bBXMSyo0IwQDAOBgNVHQ8BAf8EBAMCAQYwHQYDVR0OBBYE%0AFAKmxWdlHNup9GLV3Er5wTJdC8fVMA8GA1UdEwEB%2FwQFMAMBAf8wBQYDK2VwA0EA%0Aycp7ZsV1ObabuVKHFIokDc9FiTU%2FkctceL2PZMMBUxEEgcLq11j0LcI6TevRMdlL%0AWM7wTlUzuu0wnAomOTiRAg%3D%3D%0A-----END%20CERTIFICATE-----%0A";Subject="CN=client";URI="#,
        ),
        ("x-ssl-client-verify", r#"SUCCESS"#),
        ("x-ssl-client-s-dn", r#"CN=client"#),
        ("x-ssl-client-i-dn", r#"CN=mtls development CA"#),
        ("x-ssl-client-serial", r#"8A3F0C1D"#),
        (
            "x-ssl-client-fingerprint",
            r#"d0316d0978fd90f45ed356cc28a20036ee67a2c6"#,
        ),
        (
            "x-ssl-client-cert",
            r#"-----BEGIN%20CERTIFICATE-----%0AMIIBNTCB6KADAgECAgUAij8MHTAFBgMrZXAwHjEcMBoGA1UEAwwTbXRscyBkZXZl%0AbG9wbWVudCBDQTAeFw0yNTExMDIxMjI4NTBaFw0yNjExMjIxMjI4NTBaMBExDzAN%0ABgNVBAMMBmNsaWVudDAqMAUGAytlcAMhAM%2BMXEqi207WNdBtq2U5zyXuMixmg06W%0Avct6EcKU%2FQ5wo1QwUjAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUH%0AAwIwHQYDVR0OBBYEFECO8tp%2F%2Boec8xRf2nr%2Bcqvwp0qZMAwGA1UdEwEB%2FwQCMAAw%0ABQYDK2VwA0EACuLAbwvJT9H3OgFpfl4u6eNb0M0WIh4u6hhPrrt8LDmCz1ks7eRd%0ABB88JV3zOPBxY%2FHiC3DRjTik%2Fey6C8L2Bg%3D%3D%0A-----END%20CERTIFICATE-----%0A"#,
        ),
        (
            "x-forwarded-tls-client-cert",
            r#"MIIBNTCB6KADAgECAgUAij8MHTAFBgMrZXAwHjEcMBoGA1UEAwwTbXRscyBkZXZlbG9wbWVudCBDQTAeFw0yNTExMDIxMjI4NTBaFw0yNjExMjIxMjI4NTBaMBExDzANBgNVBAMMBmNsaWVudDAqMAUGAytlcAMhAM%2BMXEqi207WNdBtq2U5zyXuMixmg06Wvct6EcKU%2FQ5wo1QwUjAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwIwHQYDVR0OBBYEFECO8tp%2F%2Boec8xRf2nr%2Bcqvwp0qZMAwGA1UdEwEB%2FwQCMAAwBQYDK2VwA0EACuLAbwvJT9H3OgFpfl4u6eNb0M0WIh4u6hhPrrt8LDmCz1ks7eRdBB88JV3zOPBxY%2FHiC3DRjTik%2Fey6C8L2Bg%3D%3D,MIIBLDCB36ADAgECAgEBMAUGAytlcDAeMRwwGgYDVQQDDBNtdGxzIGRldmVsb3BtZW50IENBMB4XDTI1MTEwMjEyMjg1MFoXDTM1MTEwMjEyMjg1MFowHjEcMBoGA1UEAwwTbXRscyBkZXZlbG9wbWVudCBDQTAqMAUGAytlcAMhABzc%2FVRZGJ8%2B%2BjPK%2FrotvQFR7NRtZfxt244mb6bBXMSyo0IwQDAOBgNVHQ8BAf8EBAMCAQYwHQYDVR0OBBYEFAKmxWdlHNup9GLV3Er5wTJdC8fVMA8GA1UdEwEB%2FwQFMAMBAf8wBQYDK2VwA0EAycp7ZsV1ObabuVKHFIokDc9FiTU%2FkctceL2PZMMBUxEEgcLq11j0LcI6TevRMdlLWM7wTlUzuu0wnAomOTiRAg%3D%3D"#,
        ),
        (
            "x-forwarded-tls-client-cert-info",
            r#"Subject%3D%22CN%3Dclient%22%3BIssuer%3D%22CN%3Dmtls+development+CA%22%3BNB%3D%221762086530%22%3BNA%3D%221795350530%22%2CSubject%3D%22CN%3Dmtls+development+CA%22%3BIssuer%3D%22CN%3Dmtls+development+CA%22%3BNB%3D%221762086530%22%3BNA%3D%222077619330%22"#,
        ),
    ];

    #[test]
    fn simple_certificate_in_every_format() {
        let got = all(&simple(), ApacheOptions::default());
        let got: Vec<(&str, &str)> = got.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(got, SIMPLE_EXPECTED);
    }

    #[test]
    fn tricky_subject_in_every_format() {
        let fixture = tricky();
        let got = all(&fixture, ApacheOptions::default());
        let value = |name: &str| {
            got.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no {name}"))
        };
        // mod_ssl: RFC 2253 with UTF-8 kept raw; nginx/Envoy: UTF-8 as \XX.
        assert_eq!(
            value("ssl-client-s-dn"),
            r#"CN=Zürich \<script\>\\,OU=R\"D \+1\;x=y,O=Acme\, Inc.,C=US"#
        );
        assert_eq!(value("ssl-client-s-dn-cn"), r#"Zürich <script>\\"#);
        assert_eq!(value("ssl-client-m-serial"), "0102");
        assert_eq!(
            value("x-ssl-client-s-dn"),
            r#"CN=Z\C3\BCrich \<script\>\\,OU=R\"D \+1\;x=y,O=Acme\, Inc.,C=US"#
        );
        assert_eq!(value("x-ssl-client-serial"), "0102");
        assert_eq!(
            value("x-ssl-client-fingerprint"),
            "ef41d4090d735a6b3789d5d98c8f8788708eac47"
        );
        let xfcc = value("x-forwarded-client-cert");
        assert!(xfcc.starts_with(
            "By=spiffe://example.org/mtls;Hash=81ffee1de3d784d1a013e3eaa5e13fb8413568e17a1a4d5ea03b367eddbcfb18;Cert=\"-----BEGIN%20CERTIFICATE-----%0AMIIBzjCCAYCgAwIBAgICAQIw"
        ));
        // The URI SAN contains `;` and `=`, so it is quoted.
        assert!(xfcc.ends_with(
            r#"%0A-----END%20CERTIFICATE-----%0A";Subject="CN=Z\C3\BCrich \<script\>\\,OU=R\"D \+1\;x=y,O=Acme\, Inc.,C=US";URI="spiffe://example.org/ns/a;b=c";DNS=client.example.com"#
        ));
        assert_eq!(
            value("x-forwarded-tls-client-cert-info"),
            "Subject%3D%22C%3DUS%2CO%3DAcme%2C+Inc.%2COU%3DR%5C%22D+%2B1%3Bx%3Dy%2CCN%3DZ%C3%BCrich+%3Cscript%3E%5C%5C%22\
             %3BIssuer%3D%22CN%3Dmtls+development+CA%22%3BNB%3D%221762086530%22%3BNA%3D%221795350530%22\
             %3BSANs%3D%22client.example.com%2Cgrace%40example.com%2C192.0.2.7%2Cspiffe%3A%2F%2Fexample.org%2Fns%2Fa%3Bb%3Dc%22\
             %2CSubject%3D%22CN%3Dmtls+development+CA%22%3BIssuer%3D%22CN%3Dmtls+development+CA%22%3BNB%3D%221762086530%22%3BNA%3D%222077619330%22"
        );
        let legacy = all(
            &fixture,
            ApacheOptions {
                underscore_names: true,
                legacy_dn: true,
            },
        );
        let legacy_dn = legacy
            .iter()
            .find(|(n, _)| n == "ssl_client_s_dn")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            legacy_dn,
            Some(r#"/C=US/O=Acme, Inc./OU=R"D \+1;x=y/CN=Z\xC3\xBCrich <script>\"#)
        );
    }

    #[test]
    fn apache_underscore_names_and_legacy_dn() {
        let options = ApacheOptions {
            underscore_names: true,
            legacy_dn: true,
        };
        let headers = identity_headers(&[HeaderFormat::Apache], &options, &simple().state(), None);
        let got: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        assert_eq!(
            &got[..7],
            &[
                ("ssl_client_verify", &b"SUCCESS"[..]),
                ("ssl_client_s_dn", b"/CN=client"),
                ("ssl_client_i_dn", b"/CN=mtls development CA"),
                ("ssl_client_s_dn_cn", b"client"),
                ("ssl_client_m_serial", b"8A3F0C1D"),
                ("ssl_client_v_start", b"Nov  2 12:28:50 2025 GMT"),
                ("ssl_client_v_end", b"Nov 22 12:28:50 2026 GMT"),
            ]
        );
        assert_eq!(got[7].0, "ssl_client_cert");
    }

    #[test]
    fn without_a_verified_certificate_only_the_verify_state_is_sent() {
        let expired = Rejection {
            reason: ReasonCode::Expired,
            detail: "certificate CN=client expired".to_owned(),
            hint: "renew it".to_owned(),
        };
        let missing = Rejection::no_certificate();
        for (state, verify) in [
            (VerifyState::None, "NONE"),
            (VerifyState::Failed(&expired), "FAILED:expired"),
            (VerifyState::Failed(&missing), "NONE"),
        ] {
            let headers = identity_headers(
                &HeaderFormat::ALL,
                &ApacheOptions::default(),
                &state,
                Some("spiffe://example.org/mtls"),
            );
            let got: Vec<(&str, &[u8])> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes()))
                .collect();
            assert_eq!(
                got,
                [
                    ("ssl-client-verify", verify.as_bytes()),
                    ("x-ssl-client-verify", verify.as_bytes()),
                ]
            );
        }
    }

    #[test]
    fn an_undecodable_leaf_sends_nothing() {
        let fixture = simple();
        let chain = vec![CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])];
        let state = VerifyState::Success(ClientCertificate {
            chain: &chain,
            details: &fixture.details,
        });
        assert!(
            identity_headers(&HeaderFormat::ALL, &ApacheOptions::default(), &state, None)
                .is_empty()
        );
    }

    #[test]
    fn formats_come_in_the_order_asked_each_once() {
        let fixture = simple();
        let headers = identity_headers(
            &[
                HeaderFormat::Azure,
                HeaderFormat::Traefik,
                HeaderFormat::Azure,
            ],
            &ApacheOptions::default(),
            &fixture.state(),
            None,
        );
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-arr-clientcert",
                "x-forwarded-tls-client-cert",
                "x-forwarded-tls-client-cert-info"
            ]
        );
        // Without a server URI SAN there is no `By`.
        let xfcc = identity_headers(
            &[HeaderFormat::Xfcc],
            &ApacheOptions::default(),
            &fixture.state(),
            None,
        );
        assert!(xfcc[0].1.to_str().unwrap().starts_with("Hash=c949b06b"));
    }

    #[test]
    fn format_names_parse_case_insensitively() {
        assert_eq!("Apache".parse(), Ok(HeaderFormat::Apache));
        assert_eq!(" XFCC ".parse(), Ok(HeaderFormat::Xfcc));
        for format in HeaderFormat::ALL {
            assert_eq!(format.to_string().parse(), Ok(format));
        }
        let err = "envoy".parse::<HeaderFormat>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown identity header format `envoy`; valid formats are apache, azure, xfcc, nginx and traefik"
        );
        assert_eq!(
            HeaderFormat::parse_list("apache,xfcc"),
            Ok(vec![HeaderFormat::Apache, HeaderFormat::Xfcc])
        );
        assert_eq!(
            HeaderFormat::parse_list(" Nginx , traefik,,nginx,"),
            Ok(vec![HeaderFormat::Nginx, HeaderFormat::Traefik])
        );
        assert_eq!(HeaderFormat::parse_list(""), Ok(vec![]));
        assert_eq!(
            HeaderFormat::parse_list("apache,x"),
            Err(UnknownHeaderFormat("x".to_owned()))
        );
    }

    #[test]
    fn spoofed_identity_headers_are_stripped_in_every_spelling() {
        let mut headers = HeaderMap::new();
        for name in [
            "SSL_CLIENT_S_DN",
            "ssl-client-i-dn",
            "Ssl_Client_Verify",
            "SSL_CLIENT_S_DN_O",
            "ssl_client_cert_chain_0",
            "X-SSL-Client-Cert",
            "x_ssl_client_s_dn",
            "X-ARR-ClientCert",
            "x_arr_clientcert",
            "X-Forwarded-Client-Cert",
            "X-Forwarded-Tls-Client-Cert",
            "x_forwarded_tls_client_cert_info",
            "X-Client-Identity",
            "Host",
            "X-Forwarded-For",
            "X-SSL",
            "SSL-Client",
            "Authorization",
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.append(name, HeaderValue::from_static("spoofed"));
        }
        headers.append("x-client-identity", HeaderValue::from_static("twice"));
        let mut removed = strip_identity_headers(&mut headers);
        removed.sort();
        assert_eq!(
            removed,
            [
                "ssl-client-i-dn",
                "ssl_client_cert_chain_0",
                "ssl_client_s_dn",
                "ssl_client_s_dn_o",
                "ssl_client_verify",
                "x-arr-clientcert",
                "x-client-identity",
                "x-forwarded-client-cert",
                "x-forwarded-tls-client-cert",
                "x-ssl-client-cert",
                "x_arr_clientcert",
                "x_forwarded_tls_client_cert_info",
                "x_ssl_client_s_dn",
            ]
        );
        let mut kept: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        kept.sort();
        assert_eq!(
            kept,
            [
                "authorization",
                "host",
                "ssl-client",
                "x-forwarded-for",
                "x-ssl"
            ]
        );
        // Every header this module sends is one it strips.
        let fixture = tricky();
        for options in [
            ApacheOptions::default(),
            ApacheOptions {
                underscore_names: true,
                legacy_dn: false,
            },
        ] {
            for (name, _) in identity_headers(
                &HeaderFormat::ALL,
                &options,
                &fixture.state(),
                Some("spiffe://x"),
            ) {
                assert!(is_identity_header(name.as_str()), "{name}");
            }
        }
        assert!(is_identity_header(X_CLIENT_IDENTITY.as_str()));
    }

    fn name_from_hex(hex_der: &str) -> Vec<u8> {
        hex::decode(hex_der).unwrap()
    }

    fn modssl_cn(name: &X509Name<'_>) -> Vec<u8> {
        let attr = name
            .iter_attributes()
            .find(|a| a.attr_type().to_id_string() == "2.5.4.3")
            .unwrap();
        let mut out = Vec::new();
        print_value(&mut out, attr.attr_value(), MODSSL_ENTRY);
        out
    }

    /// Found by fuzz/fuzz_targets/dn_formatting.rs: an attribute whose type
    /// is an empty OBJECT IDENTIFIER was printed with no type at all (`=`),
    /// which splits into no RDN structure. See the cert::dn test too.
    #[test]
    fn a_type_without_a_dotted_form_is_written_as_a_question_mark() {
        let der = name_from_hex("30083106300406000c00");
        let (_, name) = X509Name::from_der(&der).unwrap();
        assert_eq!(openssl_rfc2253(&name, true), b"?=#0C00");
        assert_eq!(openssl_oneline(&name), "/?=");
    }

    /// Hand-made names, for what rcgen cannot make: a multi-valued RDN
    /// (rcgen keeps one flat attribute list), BMPString, UniversalString and
    /// T61String with non-ASCII, SEQUENCE and BIT STRING values, a
    /// lone `#`, a lone space and an empty value, and an unknown attribute
    /// type. Expected values are OpenSSL 3.0's for the same DER.
    #[test]
    fn names_print_as_openssl_prints_them() {
        struct Case {
            der: &'static str,
            rfc2253: &'static str,
            rfc2253_utf8: &'static [u8],
            oneline: &'static str,
            cn: &'static [u8],
        }
        let cases = [
            // C=US / O=Acme, Inc. + OU=R"D / CN=Grace Hopper + UID=gh
            Case {
                der: "3057310b3009060355040613025553311f3011060355040a0c0a41636d652c20496e632e300a060355040b0c035222443127301306035504030c0c477261636520486f707065723010060a0992268993f22c6401010c026768",
                rfc2253: r#"UID=gh+CN=Grace Hopper,OU=R\"D+O=Acme\, Inc.,C=US"#,
                rfc2253_utf8: br#"UID=gh+CN=Grace Hopper,OU=R\"D+O=Acme\, Inc.,C=US"#,
                oneline: r#"/C=US/O=Acme, Inc.+OU=R"D/CN=Grace Hopper+UID=gh"#,
                cn: b"Grace Hopper",
            },
            Case {
                der: "3023310a30080603550403130123310a300806035504030c01203109300706035504030c00",
                rfc2253: r"CN=,CN=\ ,CN=#",
                rfc2253_utf8: br"CN=,CN=\ ,CN=#",
                oneline: "/CN=#/CN= /CN=",
                cn: b"#",
            },
            Case {
                der: "300f310d300b06035504031e04005a00fc",
                rfc2253: r"CN=Z\C3\BC",
                rfc2253_utf8: "CN=Zü".as_bytes(),
                oneline: r"/CN=\x00Z\x00\xFC",
                cn: "Zü".as_bytes(),
            },
            Case {
                der: "300f310d300b06035504031c040001f600",
                rfc2253: r"CN=\F0\9F\98\80",
                rfc2253_utf8: "CN=😀".as_bytes(),
                oneline: r"/CN=\x00\x01\xF6\x00",
                cn: "😀".as_bytes(),
            },
            Case {
                der: "300d310b300906035504031402fc80",
                rfc2253: r"CN=\C3\BC\C2\80",
                rfc2253_utf8: "CN=ü\u{80}".as_bytes(),
                oneline: r"/CN=\xFC\x80",
                cn: "ü\u{80}".as_bytes(),
            },
            Case {
                der: "300e310c300a0603550403160361017f",
                rfc2253: r"CN=a\01\7F",
                rfc2253_utf8: br"CN=a\01\7F",
                oneline: r"/CN=a\x01\x7F",
                cn: br"a\01\7F",
            },
            Case {
                der: "300e310c300a060355040330030c0178",
                rfc2253: "CN=#30030C0178",
                rfc2253_utf8: b"CN=#30030C0178",
                oneline: r"/CN=0\x03\x0C\x01x",
                cn: br"0\03\0C\01x",
            },
            Case {
                der: "300d310b3009060355040303020041",
                rfc2253: "CN=#03020041",
                rfc2253_utf8: b"CN=#03020041",
                oneline: "/CN=A",
                cn: b"A",
            },
            Case {
                der: "3019310c300a06032a03040c03616263310930070603550403",
                rfc2253: "",
                rfc2253_utf8: b"",
                oneline: "",
                cn: b"",
            },
        ];
        for case in &cases[..cases.len() - 1] {
            let der = name_from_hex(case.der);
            let (_, name) = X509Name::from_der(&der).unwrap();
            assert_eq!(
                String::from_utf8(openssl_rfc2253(&name, true)).unwrap(),
                case.rfc2253
            );
            assert_eq!(openssl_rfc2253(&name, false), case.rfc2253_utf8);
            assert_eq!(openssl_oneline(&name), case.oneline);
            assert_eq!(modssl_cn(&name), case.cn, "{}", case.oneline);
        }
        // An attribute type OpenSSL does not know: dotted OID and DER dump.
        let der = name_from_hex("300e310c300a06032a03040c03616263");
        let (_, name) = X509Name::from_der(&der).unwrap();
        assert_eq!(openssl_rfc2253(&name, true), b"1.2.3.4=#0C03616263");
        assert_eq!(openssl_oneline(&name), "/1.2.3.4=abc");
        // Traefik's own order and no escaping (quoting happens later).
        let multi_der = name_from_hex(cases[0].der);
        let (_, multi) = X509Name::from_der(&multi_der).unwrap();
        assert_eq!(
            traefik_dn(&multi, true),
            br#"C=US,O=Acme, Inc.,OU=R"D,CN=Grace Hopper"#
        );
        assert_eq!(
            traefik_dn(&multi, false),
            b"C=US,O=Acme, Inc.,CN=Grace Hopper"
        );
    }

    #[test]
    fn serials_print_as_i2a_asn1_integer() {
        assert_eq!(openssl_serial(&[0x00]), "00");
        assert_eq!(openssl_serial(&[0x01]), "01");
        assert_eq!(openssl_serial(&[0x00, 0x80]), "80");
        assert_eq!(openssl_serial(&[0x01, 0x00]), "0100");
        assert_eq!(openssl_serial(&[0xff]), "-01");
        assert_eq!(openssl_serial(&[0x80]), "-80");
        assert_eq!(openssl_serial(&[0xff, 0x7f]), "-81");
        assert_eq!(openssl_serial(&[]), "00");
    }

    #[test]
    fn times_print_as_asn1_time_print() {
        assert_eq!(
            asn1_time_print(at(1_762_086_530)),
            "Nov  2 12:28:50 2025 GMT"
        );
        assert_eq!(asn1_time_print(at(0)), "Jan  1 00:00:00 1970 GMT");
        assert_eq!(
            asn1_time_print(at(4_102_444_799)),
            "Dec 31 23:59:59 2099 GMT"
        );
    }

    #[test]
    fn xfcc_values_are_quoted_as_envoy_documents() {
        assert_eq!(
            xfcc_value("spiffe://example.org/a"),
            "spiffe://example.org/a"
        );
        assert_eq!(xfcc_value("a,b"), r#""a,b""#);
        assert_eq!(xfcc_value("a=b"), r#""a=b""#);
        assert_eq!(xfcc_value(r#"a"b"#), r#""a\"b""#);
        assert_eq!(xfcc_value(r"a;b\"), r#""a;b\\""#);
        assert_eq!(xfcc_value(r"a\b"), r"a\b");
        assert_eq!(xfcc_value("a\r\nb;"), r#""a%0D%0Ab;""#);
        assert_eq!(xfcc_value("é"), "%C3%A9");
    }

    /// A name ending in a space must not arrive as the name without it.
    #[test]
    fn edge_spaces_are_escaped_where_http_would_strip_them() {
        let fixture = hostile_fixture(" admin ", "ops ", &["a.example ".to_owned()], &[]);
        let value = |legacy_dn: bool, wanted: &str| {
            let options = ApacheOptions {
                underscore_names: false,
                legacy_dn,
            };
            identity_headers(&HeaderFormat::ALL, &options, &fixture.state(), None)
                .into_iter()
                .find(|(name, _)| name == wanted)
                .map(|(_, value)| value.as_bytes().to_vec())
                .unwrap()
        };
        assert_eq!(value(false, "ssl-client-s-dn-cn"), br"\20admin\20");
        // RFC 2253 escapes the spaces itself; only the final one changes.
        assert_eq!(value(false, "ssl-client-s-dn"), br"CN=\ admin\ ,O=ops\20");
        assert_eq!(value(false, "x-ssl-client-s-dn"), br"CN=\ admin\ ,O=ops\20");
        assert_eq!(value(true, "ssl-client-s-dn"), br"/O=ops /CN= admin\x20");
        let xfcc = value(false, "x-forwarded-client-cert");
        assert!(
            xfcc.ends_with(br#";Subject="CN=\ admin\ ,O=ops\20";URI=;DNS="a.example ""#),
            "{}",
            String::from_utf8_lossy(&xfcc)
        );
        assert_eq!(xfcc_value(" a"), "\" a\"");
        assert_eq!(keep_edge_spaces(b" ".to_vec(), b"\\20"), br"\20");
    }

    // -----------------------------------------------------------------
    // Property tests: attacker-chosen names never escape their value.
    // -----------------------------------------------------------------

    /// Splits at `separator` outside double quotes; inside quotes a `\`
    /// takes the next character with it.
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

    /// `"..."` with `\x` escapes, back to the value.
    fn unquote(value: &str) -> String {
        let inner = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("not quoted: {value:?}"));
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            out.push(if c == '\\' { chars.next().unwrap() } else { c });
        }
        out
    }

    /// Go's `url.QueryUnescape`.
    fn query_unescape(text: &str) -> Vec<u8> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        out
    }

    fn hostile_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            3 => any::<char>().prop_map(String::from),
            3 => proptest::sample::select(vec![
                "\r", "\n", "\0", "\"", ";", ",", "=", "+", "\\", "<script>", "#", " ", "\t",
                "\u{7f}", "\u{85}", "é", "東京", "😀", "\r\nX-Injected: 1", "\"; DNS=evil",
                "%0D%0A", "'",
            ])
            .prop_map(str::to_owned),
            2 => "[a-zA-Z0-9 .-]{1,6}",
        ];
        proptest::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
    }

    fn hostile_ascii() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                1 => 0u8..0x80,
                1 => proptest::sample::select(b",;=\"\\\r\n\0 ".to_vec()),
            ],
            1..16,
        )
        .prop_map(|bytes| String::from_utf8(bytes).unwrap())
    }

    static CA: std::sync::LazyLock<(crate::pki::Authority, KeyPair)> =
        std::sync::LazyLock::new(|| {
            (
                crate::pki::Authority::generate("mtls development CA").unwrap(),
                KeyPair::generate().unwrap(),
            )
        });

    fn hostile_fixture(cn: &str, org: &str, dns: &[String], uris: &[String]) -> Fixture {
        use rustls_pki_types::pem::PemObject;
        let (ca, key) = &*CA;
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, org);
        name.push(DnType::CommonName, cn);
        let mut params = CertificateParams::default();
        params.distinguished_name = name;
        params.subject_alt_names = dns
            .iter()
            .map(|d| SanType::DnsName(d.clone().try_into().unwrap()))
            .chain(
                uris.iter()
                    .map(|u| SanType::URI(u.clone().try_into().unwrap())),
            )
            .collect();
        let leaf = params.signed_by(key, ca.issuer()).unwrap().der().clone();
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
        let details = CertDetails::from_der(&leaf).unwrap();
        Fixture {
            chain: vec![leaf, ca_der],
            details,
        }
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn hostile_names_stay_inside_their_values(
            cn in hostile_text(),
            org in hostile_text(),
            dns in proptest::collection::vec(hostile_ascii(), 0..3),
            uris in proptest::collection::vec(hostile_ascii(), 0..3),
            by in hostile_text(),
            underscore in any::<bool>(),
            legacy in any::<bool>(),
        ) {
            let fixture = hostile_fixture(&cn, &org, &dns, &uris);
            let options = ApacheOptions { underscore_names: underscore, legacy_dn: legacy };
            let headers = identity_headers(&HeaderFormat::ALL, &options, &fixture.state(), Some(&by));
            // Every format is there: no value was dropped as unsafe.
            prop_assert!(headers.len() >= 16, "{headers:?}");
            for (name, value) in &headers {
                let bytes = value.as_bytes();
                // HTTP would strip an edge space in transit.
                prop_assert!(
                    !bytes.starts_with(b" ") && !bytes.ends_with(b" "),
                    "{name}: {value:?}"
                );
                prop_assert!(
                    !bytes.iter().any(|&b| b < 0x20 || b == 0x7f),
                    "{name}: {value:?}"
                );
                prop_assert!(HeaderValue::from_bytes(bytes).is_ok());
            }
            let get = |wanted: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n.as_str() == wanted)
                    .map(|(_, v)| v.to_str().unwrap().to_owned())
                    .unwrap()
            };

            // xfcc: one element; By, Hash, Cert, Chain, Subject, the URIs
            // (or one empty URI) and the DNS names, each value intact.
            let xfcc = get("x-forwarded-client-cert");
            let elements = split_outside_quotes(&xfcc, ',');
            prop_assert_eq!(elements.len(), 1);
            let pairs = split_outside_quotes(elements[0], ';');
            prop_assert_eq!(pairs.len(), 5 + uris.len().max(1) + dns.len());
            let keys: Vec<&str> = pairs.iter().map(|p| p.split('=').next().unwrap()).collect();
            let mut expected_keys = vec!["By", "Hash", "Cert", "Chain", "Subject"];
            expected_keys.extend(std::iter::repeat_n("URI", uris.len().max(1)));
            expected_keys.extend(std::iter::repeat_n("DNS", dns.len()));
            prop_assert_eq!(keys, expected_keys);
            let subject = pairs[4].strip_prefix("Subject=").unwrap();
            prop_assert_eq!(subject, format!("\"{}\"", get("x-ssl-client-s-dn")));
            for (pair, original) in pairs[5 + uris.len().max(1)..].iter().zip(&dns) {
                let value = pair.strip_prefix("DNS=").unwrap();
                let value = if value.starts_with('"') { unquote(value) } else { value.to_owned() };
                if !original.bytes().any(|b| b < 0x20 || b == 0x7f) {
                    prop_assert_eq!(&value, original);
                }
            }

            // traefik: one certificate per chain entry in both headers; the
            // info fields re-parse and the subject comes back unchanged.
            let pem = get("x-forwarded-tls-client-cert");
            let certs: Vec<&str> = pem.split(',').collect();
            prop_assert_eq!(certs.len(), 2);
            prop_assert_eq!(query_unescape(certs[0]), BASE64.encode(&fixture.chain[0]).into_bytes());
            let info = String::from_utf8(query_unescape(&get("x-forwarded-tls-client-cert-info"))).unwrap();
            let certs = split_outside_quotes(&info, ',');
            prop_assert_eq!(certs.len(), 2);
            let fields = split_outside_quotes(certs[0], ';');
            let (mut keys, mut subject) = (Vec::new(), None);
            for field in &fields {
                let (key, value) = field.split_once('=').unwrap();
                keys.push(key);
                if key == "Subject" {
                    subject = Some(unquote(value));
                }
            }
            let mut expected_subject = Vec::new();
            if !org.is_empty() {
                expected_subject.push(format!("O={org}"));
            }
            if !cn.is_empty() {
                expected_subject.push(format!("CN={cn}"));
            }
            let mut expected_keys = Vec::new();
            if !expected_subject.is_empty() {
                expected_keys.push("Subject");
            }
            expected_keys.extend(["Issuer", "NB", "NA"]);
            if !dns.is_empty() || !uris.is_empty() {
                expected_keys.push("SANs");
            }
            prop_assert_eq!(keys, expected_keys);
            prop_assert_eq!(subject.unwrap_or_default(), expected_subject.join(","));

            // apache: the one-line PEM is the certificate.
            let cert_name = if underscore { "ssl_client_cert" } else { "ssl-client-cert" };
            let apache_pem = get(cert_name);
            let body: String = apache_pem
                .trim_start_matches("-----BEGIN CERTIFICATE-----")
                .trim_end_matches("-----END CERTIFICATE-----")
                .split(' ')
                .collect();
            prop_assert_eq!(body, BASE64.encode(&fixture.chain[0]));
        }
    }
}
