//! Behind another TLS terminator (Azure App Service, Envoy, nginx): the
//! client certificate arrives in a header. It is read only from trusted
//! proxies, and then validated exactly like a direct one; from anyone else
//! the header is dropped and logged.

use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::HeaderMap;
use hyper::header::HeaderName;
use ipnet::IpNet;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Which terminator's header carries the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedFormat {
    /// `X-ARR-ClientCert`: base64 DER (Azure App Service).
    Azure,
    /// `x-forwarded-client-cert`: the first element's `Chain` or `Cert`
    /// (URL-encoded PEM), as Envoy writes it.
    Xfcc,
    /// `X-SSL-Client-Cert`: URL-encoded PEM (`$ssl_client_escaped_cert`).
    Nginx,
}

impl FromStr for ForwardedFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "azure" => Ok(ForwardedFormat::Azure),
            "xfcc" => Ok(ForwardedFormat::Xfcc),
            "nginx" => Ok(ForwardedFormat::Nginx),
            other => Err(format!(
                "--trust-forwarded-cert / TRUST_FORWARDED_CERT: unknown format `{other}`; use azure, xfcc or nginx"
            )),
        }
    }
}

impl ForwardedFormat {
    pub fn header(self) -> HeaderName {
        match self {
            ForwardedFormat::Azure => HeaderName::from_static("x-arr-clientcert"),
            ForwardedFormat::Xfcc => HeaderName::from_static("x-forwarded-client-cert"),
            ForwardedFormat::Nginx => HeaderName::from_static("x-ssl-client-cert"),
        }
    }
}

/// `--trust-forwarded-cert` with its `--trusted-proxy` networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedTrust {
    pub format: ForwardedFormat,
    pub proxies: Vec<IpNet>,
}

/// A header that cannot be decoded; the client gets a 400 with this text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed {header} header: {reason}")]
pub struct MalformedHeader {
    pub header: String,
    pub reason: String,
}

/// What a request's forwarded-certificate header amounts to.
#[derive(Debug)]
pub enum Forwarded {
    /// No such header.
    Absent,
    /// The header came from a peer that is not a trusted proxy; dropped.
    Untrusted,
    /// The chain the trusted proxy forwarded, leaf first (still unverified).
    Chain(Vec<CertificateDer<'static>>),
}

/// Parses a CIDR or a single address (`10.0.0.0/8`, `192.0.2.7`, `::1`).
pub fn parse_proxy(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("--trusted-proxy / TRUSTED_PROXY: `{text}` is not an address or CIDR, e.g. 10.0.0.0/8")
        })
}

impl ForwardedTrust {
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
            v4 => v4,
        };
        self.proxies.iter().any(|net| net.contains(&peer))
    }

    /// Takes the header out of `headers` (it never travels further) and
    /// decodes it when `peer` is trusted.
    pub fn take(
        &self,
        headers: &mut HeaderMap,
        peer: IpAddr,
    ) -> Result<Forwarded, MalformedHeader> {
        let name = self.format.header();
        let values: Vec<_> = headers.get_all(&name).iter().cloned().collect();
        headers.remove(&name);
        let Some(value) = values.first() else {
            return Ok(Forwarded::Absent);
        };
        if !self.trusts(peer) {
            return Ok(Forwarded::Untrusted);
        }
        let malformed = |reason: &str| MalformedHeader {
            header: name.as_str().to_owned(),
            reason: reason.to_owned(),
        };
        if values.len() > 1 {
            return Err(malformed("it appears more than once"));
        }
        let text = value
            .to_str()
            .map_err(|_| malformed("it is not printable ASCII"))?;
        let chain = match self.format {
            ForwardedFormat::Azure => {
                // base64 decodes "" to no bytes: a certificate of zero length.
                if text.trim().is_empty() {
                    return Err(malformed("it is empty"));
                }
                let der = STANDARD
                    .decode(text.trim())
                    .map_err(|err| malformed(&format!("not base64 DER: {err}")))?;
                vec![CertificateDer::from(der)]
            }
            ForwardedFormat::Nginx => pem_chain(&percent_decode(text).map_err(|r| malformed(&r))?)
                .map_err(|r| malformed(&r))?,
            ForwardedFormat::Xfcc => {
                let element = xfcc_first_element(text).map_err(|r| malformed(&r))?;
                let pem = element
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("Chain"))
                    .or_else(|| element.iter().find(|(k, _)| k.eq_ignore_ascii_case("Cert")))
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| malformed("the first element has no Cert or Chain"))?;
                pem_chain(&percent_decode(&pem).map_err(|r| malformed(&r))?)
                    .map_err(|r| malformed(&r))?
            }
        };
        if chain.is_empty() {
            return Err(malformed("it holds no certificate"));
        }
        // A PEM block with nothing between its BEGIN and END lines.
        if chain.iter().any(|der| der.is_empty()) {
            return Err(malformed("it holds an empty certificate"));
        }
        Ok(Forwarded::Chain(chain))
    }
}

fn pem_chain(text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("not PEM: {err}"))
}

fn percent_decode(text: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| "the URL-decoded value is not UTF-8".to_owned())
}

/// The key/value pairs of the first element of an XFCC header: elements
/// are separated by `,`, pairs by `;`, and values may be double-quoted
/// (with `\"` inside), as Envoy documents.
fn xfcc_first_element(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut key = String::new();
    let mut value = String::new();
    let mut in_value = false;
    let mut quoted = false;
    // A quoted value has just ended: only `;`, `,` or the end may follow.
    let mut closed = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if closed && !matches!(c, ';' | ',') {
            return Err(format!(
                "`{}` follows the closing quote of a value; a quoted value must be quoted whole",
                c.escape_default()
            ));
        }
        match c {
            '"' if in_value && value.is_empty() && !quoted => quoted = true,
            '"' if quoted => {
                quoted = false;
                closed = true;
            }
            '\\' if quoted => match chars.next() {
                Some(escaped) => value.push(escaped),
                None => return Err("a value ends with a lone backslash".to_owned()),
            },
            ';' | ',' if !quoted => {
                if !key.trim().is_empty() {
                    pairs.push((key.trim().to_owned(), value.clone()));
                }
                key.clear();
                value.clear();
                in_value = false;
                closed = false;
                if c == ',' {
                    break;
                }
            }
            '=' if !in_value => in_value = true,
            c if in_value => value.push(c),
            c => key.push(c),
        }
    }
    if quoted {
        return Err("a quoted value is not closed".to_owned());
    }
    if !key.trim().is_empty() {
        pairs.push((key.trim().to_owned(), value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_are_networks_or_addresses() {
        assert_eq!(parse_proxy("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            parse_proxy("127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert!(parse_proxy("localhost").is_err());
        let trust = ForwardedTrust {
            format: ForwardedFormat::Azure,
            proxies: vec![parse_proxy("127.0.0.0/8").unwrap()],
        };
        assert!(trust.trusts("127.0.0.1".parse().unwrap()));
        assert!(trust.trusts("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!trust.trusts("10.0.0.1".parse().unwrap()));
    }

    fn take_from_trusted_proxy(
        format: ForwardedFormat,
        value: &[u8],
    ) -> Result<Forwarded, MalformedHeader> {
        let trust = ForwardedTrust {
            format,
            proxies: vec![parse_proxy("10.0.0.0/8").unwrap()],
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            format.header(),
            hyper::header::HeaderValue::from_bytes(value).unwrap(),
        );
        trust.take(&mut headers, "10.0.0.1".parse().unwrap())
    }

    /// Found by fuzz/fuzz_targets/forwarded_cert_header.rs (input `W`: the
    /// azure format with an empty value), which used to come back as a
    /// chain holding one certificate of zero bytes.
    #[test]
    fn an_empty_azure_header_is_malformed() {
        for value in [&b""[..], b"   "] {
            let err = take_from_trusted_proxy(ForwardedFormat::Azure, value).unwrap_err();
            assert_eq!(
                err.to_string(),
                "malformed x-arr-clientcert header: it is empty"
            );
        }
    }

    #[test]
    fn an_empty_pem_block_is_malformed() {
        let empty = "-----BEGIN%20CERTIFICATE-----%0A-----END%20CERTIFICATE-----%0A";
        let err = take_from_trusted_proxy(ForwardedFormat::Nginx, empty.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed x-ssl-client-cert header: it holds an empty certificate"
        );
        let xfcc = format!("Hash=00;Cert=\"{empty}\"");
        let err = take_from_trusted_proxy(ForwardedFormat::Xfcc, xfcc.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed x-forwarded-client-cert header: it holds an empty certificate"
        );
    }

    #[test]
    fn xfcc_elements_split_outside_quotes() {
        let pairs =
            xfcc_first_element(r#"By=spiffe://a;Hash=ab;Subject="CN=x,O=\"q\";y";URI=,By=second"#)
                .unwrap();
        assert_eq!(
            pairs,
            [
                ("By".to_owned(), "spiffe://a".to_owned()),
                ("Hash".to_owned(), "ab".to_owned()),
                ("Subject".to_owned(), "CN=x,O=\"q\";y".to_owned()),
                ("URI".to_owned(), String::new()),
            ]
        );
        assert!(xfcc_first_element(r#"Cert="unterminated"#).is_err());
        assert!(xfcc_first_element("Cert=\"x\\").is_err());
    }

    /// Found by fuzz/fuzz_targets/forwarded_cert_header.rs (minimized): a
    /// `"` inside a quoted Chain ended the quoting and the rest of the value
    /// was silently glued on, so the PEM decoded was not the one quoted.
    #[test]
    fn a_quoted_xfcc_value_must_be_quoted_whole() {
        let fuzzed =
            "7b07;Chain=\"-----BEGIN%20CERTIFICATE-----%0AMA\"nC%0A-----END%20CERTIFICATE-----";
        let err = take_from_trusted_proxy(ForwardedFormat::Xfcc, fuzzed.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed x-forwarded-client-cert header: `n` follows the closing quote of a value; a quoted value must be quoted whole"
        );
        assert!(xfcc_first_element("Cert=\"a\"\"").is_err());
        assert!(xfcc_first_element(r#"Cert="a"b;Hash=00"#).is_err());
        assert_eq!(
            xfcc_first_element(r#"Cert="a";Hash="";URI=x"y,By=z"#).unwrap(),
            [
                ("Cert".to_owned(), "a".to_owned()),
                ("Hash".to_owned(), String::new()),
                ("URI".to_owned(), "x\"y".to_owned()),
            ]
        );
    }
}
