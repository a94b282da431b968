//! Decoding X.509 certificates into the facts people ask about.

pub mod details;
pub mod dn;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::{FromDer, X509Certificate};

pub use details::CertDetails;

#[derive(Debug, thiserror::Error)]
#[error("not a valid X.509 certificate: {0}")]
pub struct DecodeError(String);

/// The subject's first common name, RFC 4514 escaped (safe for logs and
/// headers); `None` when the subject has none or the DER does not parse.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    dn::common_name(cert.subject())
}

/// Unix seconds as RFC 3339 UTC; the number itself when out of range.
pub fn unix_rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .map(rfc3339)
        .unwrap_or_else(|_| secs.to_string())
}

fn rfc3339(time: OffsetDateTime) -> String {
    // Formatting fails only for years outside 0..=9999, which X.509 cannot encode.
    time.format(&Rfc3339)
        .unwrap_or_else(|_| time.unix_timestamp().to_string())
}

/// An RFC 4514 string for a DER-encoded Name, with or without its outer
/// SEQUENCE header (trust anchors store the name without it).
pub fn dn_der_to_rfc4514(der: &[u8]) -> String {
    use x509_parser::x509::X509Name;
    if let Ok((_, name)) = X509Name::from_der(der) {
        return dn::rfc4514(&name);
    }
    let mut wrapped = vec![0x30];
    let len = der.len();
    if len < 0x80 {
        wrapped.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        wrapped.push(0x80 | (bytes.len() - skip) as u8);
        wrapped.extend_from_slice(&bytes[skip..]);
    }
    wrapped.extend_from_slice(der);
    X509Name::from_der(&wrapped)
        .map(|(_, name)| dn::rfc4514(&name))
        .unwrap_or_else(|_| "(undecodable name)".to_owned())
}
