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
/// headers); `None` when the subject has none or does not decode.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    dn::is_complete(cert.subject())
        .then(|| dn::common_name(cert.subject()))
        .flatten()
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
    let whole = |parsed: Result<(&[u8], X509Name<'_>), _>| match parsed {
        Ok((rest, name)) if rest.is_empty() && dn::is_complete(&name) => Some(dn::rfc4514(&name)),
        _ => None,
    };
    if let Some(text) = whole(X509Name::from_der(der)) {
        return text;
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
    whole(X509Name::from_der(&wrapped)).unwrap_or_else(|| "(undecodable name)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// emailAddress= (empty), then an RDN whose SET is empty: the subject
    /// of the certificate that fuzz/corpus/dn_formatting/
    /// regression_name_cut_short assembles.
    const NAME_WITH_A_BROKEN_RDN: &str = "3013310f300d06092a864886f70d01090116003100";

    /// Found by fuzz/fuzz_targets/dn_formatting.rs (first from the tricky
    /// seed certificate with bytes of its subject mutated; the minimised
    /// input is kept in the corpus, see above): x509-parser stops
    /// reading a name at the first RDN it cannot decode and returns the RDNs
    /// before it as the whole name, so the certificate was shown, matched
    /// by policy rules and forwarded with a subject cut short, and
    /// `dn_der_to_rfc4514` answered an empty string.
    #[test]
    fn a_name_cut_short_by_the_parser_does_not_decode() {
        let name = hex::decode(NAME_WITH_A_BROKEN_RDN).unwrap();
        let (_, parsed) = x509_parser::x509::X509Name::from_der(&name).unwrap();
        assert_eq!(
            dn::rfc4514(&parsed),
            "emailAddress=",
            "x509-parser still cuts it short"
        );
        assert!(!dn::is_complete(&parsed));
        assert_eq!(dn_der_to_rfc4514(&name), "(undecodable name)");
        assert_eq!(dn_der_to_rfc4514(&name[2..]), "(undecodable name)");

        let pki = crate::pki::Authority::generate("Fuzz CA").unwrap();
        let ca: rustls_pki_types::CertificateDer<'static> =
            rustls_pki_types::pem::PemObject::from_pem_slice(pki.cert_pem().as_bytes()).unwrap();
        let good = ca.to_vec();
        assert!(CertDetails::from_der(&good).is_ok());
        assert_eq!(common_name(&good).as_deref(), Some("Fuzz CA"));
        // The same certificate with its subject replaced by the broken name
        // (the signature no longer matters to the decoder).
        let (_, cert) = X509Certificate::from_der(&good).unwrap();
        let subject = cert.subject().as_raw();
        let broken = splice(&good, subject, &name);
        let err = CertDetails::from_der(&broken).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a valid X.509 certificate: the subject name holds an attribute that cannot be decoded"
        );
        assert_eq!(common_name(&broken), None);
    }

    /// `der` with the bytes `old` (a slice of it) replaced by `new`, and the
    /// lengths of the two SEQUENCEs around them (certificate and TBS) fixed.
    fn splice(der: &[u8], old: &[u8], new: &[u8]) -> Vec<u8> {
        let at = old.as_ptr() as usize - der.as_ptr() as usize;
        let mut body = [&der[..at], new, &der[at + old.len()..]].concat();
        let grow = new.len() as isize - old.len() as isize;
        for offset in [0, 4] {
            // Both SEQUENCEs use a two-byte length (0x82 hi lo) here.
            assert_eq!(body[offset + 1], 0x82);
            let length = u16::from_be_bytes([body[offset + 2], body[offset + 3]]) as isize + grow;
            body[offset + 2..offset + 4].copy_from_slice(&(length as u16).to_be_bytes());
        }
        body
    }
}
