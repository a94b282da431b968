//! `CertDetails`: everything people ask about a certificate, decoded once
//! with x509-parser and used by `/cert`, `/headers`, the HTML pages and
//! `mtls inspect` alike.

use std::fmt::Write;
use std::net::IpAddr;

use serde::Serialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::extensions::{DistributionPointName, GeneralName, KeyUsage, ParsedExtension};
use x509_parser::objects::{oid_registry, oid2sn};
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::dn;
use super::{DecodeError, rfc3339};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertDetails {
    /// 1, 2 or 3.
    pub version: u32,
    /// Uppercase hex with colons, e.g. `4E:78:1D`.
    pub serial: String,
    /// Uppercase hex without colons, as `openssl x509 -serial` prints it.
    pub serial_hex: String,
    pub subject: Name,
    pub issuer: Name,
    pub not_before: String,
    pub not_after: String,
    /// Whole days until `not_after`; negative once expired.
    pub expires_in_days: i64,
    pub valid_now: bool,
    pub subject_alt_names: SubjectAltNames,
    /// The URI SAN starting with `spiffe://`, if any.
    pub spiffe_id: Option<String>,
    pub public_key: PublicKeyInfo,
    pub signature_algorithm: String,
    pub fingerprints: Fingerprints,
    pub key_usage: Vec<&'static str>,
    pub extended_key_usage: Vec<String>,
    pub basic_constraints: Option<BasicConstraints>,
    /// Uppercase hex with colons.
    pub subject_key_id: Option<String>,
    pub authority_key_id: Option<String>,
    pub crl_distribution_points: Vec<String>,
    pub authority_info_access: Vec<AccessLocation>,
    /// Issuer and subject are the same name (and key identifiers, when both
    /// are present, agree): a root or a self-made certificate.
    pub self_signed: bool,
}

/// A distinguished name both as one RFC 4514 string (escaped, safe for any
/// text sink) and as its attributes in certificate order.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Name {
    pub rfc4514: String,
    pub attributes: Vec<NameAttribute>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NameAttribute {
    /// Short name (CN, O, ...) or the dotted OID.
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl Name {
    /// The first value of an attribute, e.g. `CN`.
    pub fn first(&self, kind: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.kind == kind)
            .map(|a| a.value.as_str())
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SubjectAltNames {
    pub dns: Vec<String>,
    pub ip: Vec<String>,
    pub uri: Vec<String>,
    pub email: Vec<String>,
}

impl SubjectAltNames {
    pub fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.ip.is_empty() && self.uri.is_empty() && self.email.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PublicKeyInfo {
    /// `RSA`, `EC`, `Ed25519`, `Ed448`, or the OID's name.
    pub algorithm: String,
    pub bits: Option<u32>,
    /// For EC keys: `P-256`, `P-384`, `P-521`, or the curve's OID.
    pub curve: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Fingerprints {
    pub sha256: String,
    /// What Azure and Windows call the thumbprint.
    pub sha1: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BasicConstraints {
    pub ca: bool,
    pub path_len: Option<u32>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AccessLocation {
    /// `OCSP`, `caIssuers`, or the OID.
    pub method: String,
    pub location: String,
}

impl CertDetails {
    pub fn from_der(der: &[u8]) -> Result<Self, DecodeError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|err| DecodeError(err.to_string()))?;
        for (field, name) in [("subject", cert.subject()), ("issuer", cert.issuer())] {
            if !dn::is_complete(name) {
                return Err(DecodeError(format!(
                    "the {field} name holds an attribute that cannot be decoded"
                )));
            }
        }
        Ok(Self::from_parsed(&cert, der, OffsetDateTime::now_utc()))
    }

    /// Decodes a parsed certificate; `now` decides `valid_now` and
    /// `expires_in_days`.
    pub fn from_parsed(cert: &X509Certificate<'_>, der: &[u8], now: OffsetDateTime) -> Self {
        let validity = cert.validity();
        let not_before = validity.not_before.to_datetime();
        let not_after = validity.not_after.to_datetime();
        let serial = cert.serial.to_bytes_be();

        let mut details = CertDetails {
            version: cert.version().0 + 1,
            serial: hex_colons(&serial),
            serial_hex: hex::encode_upper(&serial),
            subject: name(cert.subject()),
            issuer: name(cert.issuer()),
            not_before: rfc3339(not_before),
            not_after: rfc3339(not_after),
            expires_in_days: (not_after - now).whole_days(),
            valid_now: not_before <= now && now <= not_after,
            subject_alt_names: SubjectAltNames::default(),
            spiffe_id: None,
            public_key: public_key(cert),
            signature_algorithm: oid_name(&cert.signature_algorithm.algorithm),
            fingerprints: Fingerprints {
                sha256: hex::encode_upper(Sha256::digest(der)),
                sha1: hex::encode_upper(Sha1::digest(der)),
            },
            key_usage: Vec::new(),
            extended_key_usage: Vec::new(),
            basic_constraints: None,
            subject_key_id: None,
            authority_key_id: None,
            crl_distribution_points: Vec::new(),
            authority_info_access: Vec::new(),
            self_signed: false,
        };
        for extension in cert.iter_extensions() {
            details.add_extension(extension.parsed_extension());
        }
        details.spiffe_id = details
            .subject_alt_names
            .uri
            .iter()
            .find(|uri| uri.starts_with("spiffe://"))
            .cloned();
        let same_name = cert.subject().as_raw() == cert.issuer().as_raw();
        let same_key = match (&details.subject_key_id, &details.authority_key_id) {
            (Some(ski), Some(aki)) => ski == aki,
            _ => true,
        };
        details.self_signed = same_name && same_key;
        details
    }

    /// The rows people read first, in the order `openssl x509 -text` uses.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let d = self;
        let sans = &d.subject_alt_names;
        let mut rows = vec![
            ("Subject", d.subject.rfc4514.clone()),
            ("Issuer", d.issuer.rfc4514.clone()),
            ("Serial", d.serial.clone()),
            ("Version", d.version.to_string()),
            ("Valid from", d.not_before.clone()),
            ("Valid until", d.not_after.clone()),
            (
                "Valid now",
                format!(
                    "{} (expires in {} days)",
                    if d.valid_now { "yes" } else { "no" },
                    d.expires_in_days
                ),
            ),
        ];
        let joined = |list: &[String]| list.join(", ");
        for (label, list) in [
            ("DNS names", &sans.dns),
            ("IP addresses", &sans.ip),
            ("URIs", &sans.uri),
            ("Emails", &sans.email),
        ] {
            if !list.is_empty() {
                rows.push((label, joined(list)));
            }
        }
        if let Some(spiffe) = &d.spiffe_id {
            rows.push(("SPIFFE ID", spiffe.clone()));
        }
        let key = &d.public_key;
        let mut key_text = key.algorithm.clone();
        if let Some(curve) = &key.curve {
            let _ = write!(key_text, " {curve}");
        } else if let Some(bits) = key.bits {
            let _ = write!(key_text, " {bits} bits");
        }
        rows.push(("Public key", key_text));
        rows.push(("Signature", d.signature_algorithm.clone()));
        if !d.key_usage.is_empty() {
            rows.push(("Key usage", d.key_usage.join(", ")));
        }
        if !d.extended_key_usage.is_empty() {
            rows.push(("Extended key usage", d.extended_key_usage.join(", ")));
        }
        if let Some(bc) = &d.basic_constraints {
            let mut text = format!("CA: {}", bc.ca);
            if let Some(len) = bc.path_len {
                let _ = write!(text, ", path length {len}");
            }
            rows.push(("Basic constraints", text));
        }
        if let Some(id) = &d.subject_key_id {
            rows.push(("Subject key ID", id.clone()));
        }
        if let Some(id) = &d.authority_key_id {
            rows.push(("Authority key ID", id.clone()));
        }
        if !d.crl_distribution_points.is_empty() {
            rows.push(("CRL distribution", d.crl_distribution_points.join(", ")));
        }
        for access in &d.authority_info_access {
            rows.push((
                "Authority info",
                format!("{} {}", access.method, access.location),
            ));
        }
        rows.push(("SHA-256 fingerprint", d.fingerprints.sha256.clone()));
        rows.push(("SHA-1 thumbprint", d.fingerprints.sha1.clone()));
        rows.push(("Self-signed", d.self_signed.to_string()));
        rows
    }

    fn add_extension(&mut self, extension: &ParsedExtension<'_>) {
        match extension {
            ParsedExtension::SubjectAlternativeName(san) => {
                for general_name in &san.general_names {
                    self.add_san(general_name);
                }
            }
            ParsedExtension::KeyUsage(usage) => self.key_usage = key_usage_names(usage),
            ParsedExtension::ExtendedKeyUsage(eku) => {
                let known = [
                    (eku.server_auth, "serverAuth"),
                    (eku.client_auth, "clientAuth"),
                    (eku.code_signing, "codeSigning"),
                    (eku.email_protection, "emailProtection"),
                    (eku.time_stamping, "timeStamping"),
                    (eku.ocsp_signing, "OCSPSigning"),
                    (eku.any, "anyExtendedKeyUsage"),
                ];
                self.extended_key_usage = known
                    .iter()
                    .filter(|(present, _)| *present)
                    .map(|(_, name)| (*name).to_owned())
                    .chain(eku.other.iter().map(oid_name))
                    .collect();
            }
            ParsedExtension::BasicConstraints(bc) => {
                self.basic_constraints = Some(BasicConstraints {
                    ca: bc.ca,
                    path_len: bc.path_len_constraint,
                });
            }
            ParsedExtension::SubjectKeyIdentifier(id) => {
                self.subject_key_id = Some(hex_colons(id.0))
            }
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                self.authority_key_id = aki.key_identifier.as_ref().map(|id| hex_colons(id.0));
            }
            ParsedExtension::CRLDistributionPoints(points) => {
                for point in &points.points {
                    if let Some(DistributionPointName::FullName(names)) = &point.distribution_point
                    {
                        self.crl_distribution_points
                            .extend(names.iter().map(general_name_text));
                    }
                }
            }
            ParsedExtension::AuthorityInfoAccess(aia) => {
                self.authority_info_access = aia
                    .accessdescs
                    .iter()
                    .map(|desc| AccessLocation {
                        method: match desc.access_method.to_id_string().as_str() {
                            "1.3.6.1.5.5.7.48.1" => "OCSP".to_owned(),
                            "1.3.6.1.5.5.7.48.2" => "caIssuers".to_owned(),
                            other => other.to_owned(),
                        },
                        location: general_name_text(&desc.access_location),
                    })
                    .collect();
            }
            _ => {}
        }
    }

    fn add_san(&mut self, general_name: &GeneralName<'_>) {
        let sans = &mut self.subject_alt_names;
        match general_name {
            GeneralName::DNSName(dns) => sans.dns.push((*dns).to_owned()),
            GeneralName::URI(uri) => sans.uri.push((*uri).to_owned()),
            GeneralName::RFC822Name(email) => sans.email.push((*email).to_owned()),
            GeneralName::IPAddress(bytes) => sans.ip.push(ip_text(bytes)),
            _ => {}
        }
    }
}

fn name(x509_name: &x509_parser::x509::X509Name<'_>) -> Name {
    Name {
        rfc4514: dn::rfc4514(x509_name),
        attributes: dn::attributes(x509_name)
            .into_iter()
            .map(|(kind, value)| NameAttribute { kind, value })
            .collect(),
    }
}

fn public_key(cert: &X509Certificate<'_>) -> PublicKeyInfo {
    let spki = cert.public_key();
    let oid = spki.algorithm.algorithm.to_id_string();
    let parsed = spki.parsed();
    match (oid.as_str(), parsed) {
        ("1.2.840.113549.1.1.1", Ok(PublicKey::RSA(rsa))) => PublicKeyInfo {
            algorithm: "RSA".to_owned(),
            bits: Some(rsa.key_size() as u32),
            curve: None,
        },
        ("1.2.840.10045.2.1", parsed) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|curve| match curve.to_id_string().as_str() {
                    "1.2.840.10045.3.1.7" => "P-256".to_owned(),
                    "1.3.132.0.34" => "P-384".to_owned(),
                    "1.3.132.0.35" => "P-521".to_owned(),
                    other => other.to_owned(),
                });
            let bits = match curve.as_deref() {
                Some("P-256") => Some(256),
                Some("P-384") => Some(384),
                Some("P-521") => Some(521),
                _ => match parsed {
                    Ok(PublicKey::EC(point)) => Some(point.key_size() as u32),
                    _ => None,
                },
            };
            PublicKeyInfo {
                algorithm: "EC".to_owned(),
                bits,
                curve,
            }
        }
        ("1.3.101.112", _) => PublicKeyInfo {
            algorithm: "Ed25519".to_owned(),
            bits: Some(256),
            curve: None,
        },
        ("1.3.101.113", _) => PublicKeyInfo {
            algorithm: "Ed448".to_owned(),
            bits: Some(456),
            curve: None,
        },
        _ => PublicKeyInfo {
            algorithm: oid_name(&spki.algorithm.algorithm),
            bits: None,
            curve: None,
        },
    }
}

fn key_usage_names(usage: &KeyUsage) -> Vec<&'static str> {
    [
        (usage.digital_signature(), "digitalSignature"),
        (usage.non_repudiation(), "nonRepudiation"),
        (usage.key_encipherment(), "keyEncipherment"),
        (usage.data_encipherment(), "dataEncipherment"),
        (usage.key_agreement(), "keyAgreement"),
        (usage.key_cert_sign(), "keyCertSign"),
        (usage.crl_sign(), "cRLSign"),
        (usage.encipher_only(), "encipherOnly"),
        (usage.decipher_only(), "decipherOnly"),
    ]
    .into_iter()
    .filter(|(present, _)| *present)
    .map(|(_, name)| name)
    .collect()
}

/// The registry's short name for an OID (e.g. `ecdsa-with-SHA256`), or the
/// dotted form when it has none.
fn oid_name(oid: &Oid<'_>) -> String {
    oid2sn(oid, oid_registry())
        .map(str::to_owned)
        .unwrap_or_else(|_| oid.to_id_string())
}

fn general_name_text(general_name: &GeneralName<'_>) -> String {
    match general_name {
        GeneralName::URI(text) | GeneralName::DNSName(text) | GeneralName::RFC822Name(text) => {
            (*text).to_owned()
        }
        GeneralName::IPAddress(bytes) => ip_text(bytes),
        GeneralName::DirectoryName(name) => dn::rfc4514(name),
        other => format!("{other:?}"),
    }
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).unwrap_or_default()).to_string(),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap_or_default()).to_string(),
        _ => hex_colons(bytes),
    }
}

/// Uppercase hex bytes joined by colons, as OpenSSL prints identifiers.
pub fn hex_colons(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{byte:02X}"));
    }
    out
}
