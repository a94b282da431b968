//! Decoding X.509 certificates into the facts people ask about.

pub mod dn;

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, thiserror::Error)]
#[error("not a valid X.509 certificate: {0}")]
pub struct DecodeError(String);

/// The identifying facts of one certificate. Every string is already
/// escaped (RFC 4514 for names), so it is safe for any text sink.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    /// The first common name of the subject, if any.
    #[serde(skip)]
    pub common_name: Option<String>,
    /// Uppercase hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    /// SHA-256 of the DER encoding, uppercase hex.
    pub sha256_fingerprint: String,
}

impl CertSummary {
    pub fn from_der(der: &[u8]) -> Result<Self, DecodeError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|err| DecodeError(err.to_string()))?;
        let validity = cert.validity();
        Ok(CertSummary {
            subject: dn::rfc4514(cert.subject()),
            issuer: dn::rfc4514(cert.issuer()),
            common_name: dn::common_name(cert.subject()),
            serial: hex::encode_upper(cert.serial.to_bytes_be()),
            not_before: rfc3339(validity.not_before.to_datetime()),
            not_after: rfc3339(validity.not_after.to_datetime()),
            sha256_fingerprint: sha256_hex(der),
        })
    }
}

pub fn sha256_hex(der: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(der))
}

fn rfc3339(time: OffsetDateTime) -> String {
    // Formatting fails only for years outside 0..=9999, which X.509 cannot encode.
    time.format(&Rfc3339)
        .unwrap_or_else(|_| time.unix_timestamp().to_string())
}
