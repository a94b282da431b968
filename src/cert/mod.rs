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

fn rfc3339(time: OffsetDateTime) -> String {
    // Formatting fails only for years outside 0..=9999, which X.509 cannot encode.
    time.format(&Rfc3339)
        .unwrap_or_else(|_| time.unix_timestamp().to_string())
}
