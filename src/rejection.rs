//! Why a client was refused, as data: a stable reason code for programs and
//! metrics, a detail sentence naming the certificate, and a hint for the
//! person who has to fix it. Built from rustls' typed errors.

use std::fmt;

use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, ExtendedKeyPurpose};
use serde::Serialize;

use crate::cert::CertDetails;

/// The reason codes of 403 answers and failed-handshake log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    NoCertificate,
    UnknownIssuer,
    Expired,
    NotYetValid,
    Revoked,
    RevocationUnknown,
    BadKeyUsage,
    UnsupportedVersion,
    BadSignature,
    InvalidCertificate,
    NotConformant,
    NotAllowed,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 12] = [
        ReasonCode::NoCertificate,
        ReasonCode::UnknownIssuer,
        ReasonCode::Expired,
        ReasonCode::NotYetValid,
        ReasonCode::Revoked,
        ReasonCode::RevocationUnknown,
        ReasonCode::BadKeyUsage,
        ReasonCode::UnsupportedVersion,
        ReasonCode::BadSignature,
        ReasonCode::InvalidCertificate,
        ReasonCode::NotConformant,
        ReasonCode::NotAllowed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::NoCertificate => "no_certificate",
            ReasonCode::UnknownIssuer => "unknown_issuer",
            ReasonCode::Expired => "expired",
            ReasonCode::NotYetValid => "not_yet_valid",
            ReasonCode::Revoked => "revoked",
            ReasonCode::RevocationUnknown => "revocation_unknown",
            ReasonCode::BadKeyUsage => "bad_key_usage",
            ReasonCode::UnsupportedVersion => "unsupported_version",
            ReasonCode::BadSignature => "bad_signature",
            ReasonCode::InvalidCertificate => "invalid_certificate",
            ReasonCode::NotConformant => "not_conformant",
            ReasonCode::NotAllowed => "not_allowed",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal with everything a client needs to understand it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub reason: ReasonCode,
    pub detail: String,
    pub hint: String,
}

/// What is known about the certificate being judged, for the wording.
#[derive(Debug, Default)]
pub struct Subject {
    pub name: String,
    pub issuer: String,
    pub serial: String,
    pub version: u32,
}

impl Subject {
    pub fn of(leaf: Option<&CertificateDer<'_>>) -> Self {
        match leaf.and_then(|der| CertDetails::from_der(der).ok()) {
            Some(d) => Subject {
                name: if d.subject.rfc4514.is_empty() {
                    "the certificate with an empty subject".to_owned()
                } else {
                    format!("certificate {}", d.subject.rfc4514)
                },
                issuer: d.issuer.rfc4514,
                serial: d.serial,
                version: d.version,
            },
            // In `required` mode the handshake error comes without the chain.
            None => Subject {
                name: "the client certificate".to_owned(),
                ..Subject::default()
            },
        }
    }
}

impl Rejection {
    pub fn no_certificate() -> Self {
        Rejection {
            reason: ReasonCode::NoCertificate,
            detail: "no client certificate was presented".to_owned(),
            hint: "send a client certificate issued by a trusted CA (curl: --cert client.crt --key client.key; a browser: import the .p12 bundle and pick it when asked)".to_owned(),
        }
    }

    /// Valid for rustls-webpki, but not RFC 5280 conformant (`--strict-x509`).
    pub fn not_conformant(leaf: Option<&CertificateDer<'_>>, violations: &[String]) -> Self {
        let who = Subject::of(leaf);
        Rejection {
            reason: ReasonCode::NotConformant,
            detail: format!(
                "{} is refused by strict RFC 5280 checks: {}",
                who.name,
                violations.join("; ")
            ),
            hint: "re-issue the certificate (or its CA) conforming to RFC 5280; `mtls verify --strict` shows every violation".to_owned(),
        }
    }

    /// A verified certificate that no rule of the policy admits.
    pub fn not_allowed(subject: &str, path: &str, rules: &str) -> Self {
        Rejection {
            reason: ReasonCode::NotAllowed,
            detail: format!("certificate {subject} is not allowed on {path} by {rules}"),
            hint: "ask the operator to add this certificate to the policy, or use a certificate that the policy allows".to_owned(),
        }
    }

    /// Why rustls' verifier refused a chain. `leaf` is the certificate when
    /// it is known; `trusted` lists the subjects of the trusted CAs.
    pub fn from_verifier(
        err: &rustls::Error,
        leaf: Option<&CertificateDer<'_>>,
        trusted: &[String],
    ) -> Self {
        let who = Subject::of(leaf);
        let name = &who.name;
        if who.version == 1 || is_unsupported_version(err) {
            return Rejection {
                reason: ReasonCode::UnsupportedVersion,
                detail: format!(
                    "{name} is X.509 version 1; TLS client certificates must be version 3 (with extensions)"
                ),
                hint: "version 1 certificates come from `openssl x509 -req` without extensions (as older cert-generate.sh scripts make them); issue a new one with `mtls pki client NAME`, or add `-extfile` with extendedKeyUsage=clientAuth to the openssl command".to_owned(),
            };
        }
        let rustls::Error::InvalidCertificate(cert_err) = err else {
            return invalid(format!("{name} was refused: {err}"));
        };
        match cert_err {
            CertificateError::UnknownIssuer => Rejection {
                reason: ReasonCode::UnknownIssuer,
                detail: format!(
                    "{name} was issued by {}, which is not a trusted CA (trusted: {})",
                    if who.issuer.is_empty() { "an unknown issuer" } else { &who.issuer },
                    if trusted.is_empty() { "none".to_owned() } else { trusted.join("; ") }
                ),
                hint: "use a certificate issued by one of the trusted CAs, or send the intermediate certificates along with yours".to_owned(),
            },
            CertificateError::ExpiredContext { not_after, .. } => Rejection {
                reason: ReasonCode::Expired,
                detail: format!("{name} expired at {}", unix_rfc3339(not_after.as_secs())),
                hint: "renew the certificate (with the dev PKI: `mtls pki client NAME --force`)".to_owned(),
            },
            CertificateError::Expired => Rejection {
                reason: ReasonCode::Expired,
                detail: format!("{name} has expired"),
                hint: "renew the certificate".to_owned(),
            },
            CertificateError::NotValidYetContext { not_before, .. } => Rejection {
                reason: ReasonCode::NotYetValid,
                detail: format!(
                    "{name} is not valid before {}",
                    unix_rfc3339(not_before.as_secs())
                ),
                hint: "check the clocks of the client, the server and the CA".to_owned(),
            },
            CertificateError::NotValidYet => Rejection {
                reason: ReasonCode::NotYetValid,
                detail: format!("{name} is not valid yet"),
                hint: "check the clocks of the client, the server and the CA".to_owned(),
            },
            CertificateError::Revoked => Rejection {
                reason: ReasonCode::Revoked,
                detail: match (who.serial.is_empty(), who.issuer.is_empty()) {
                    (false, false) => format!(
                        "{name} (serial {}) is revoked by a CRL of {}",
                        who.serial, who.issuer
                    ),
                    _ => format!("{name} is revoked by a CRL of its issuer"),
                },
                hint: "this certificate can no longer be used; ask for a new one".to_owned(),
            },
            CertificateError::UnknownRevocationStatus
            | CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => Rejection {
                reason: ReasonCode::RevocationUnknown,
                detail: format!("the revocation status of {name} cannot be established: {}", describe(cert_err)),
                hint: "the operator must provide a current CRL from every CA in the chain (--crl)".to_owned(),
            },
            CertificateError::InvalidPurposeContext { presented, .. } => Rejection {
                reason: ReasonCode::BadKeyUsage,
                detail: format!(
                    "{name} lacks the clientAuth extended key usage (it has: {})",
                    presented.iter().map(eku_name).collect::<Vec<_>>().join(", ")
                ),
                hint: "issue a certificate with extendedKeyUsage = clientAuth (`mtls pki client NAME` does)".to_owned(),
            },
            CertificateError::InvalidPurpose => Rejection {
                reason: ReasonCode::BadKeyUsage,
                detail: format!("{name} lacks the clientAuth extended key usage"),
                hint: "issue a certificate with extendedKeyUsage = clientAuth (`mtls pki client NAME` does)".to_owned(),
            },
            #[allow(deprecated)]
            CertificateError::BadSignature
            | CertificateError::UnsupportedSignatureAlgorithm
            | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => Rejection {
                reason: ReasonCode::BadSignature,
                detail: format!("the signature on {name} is invalid or uses an unsupported algorithm"),
                hint: "re-issue the certificate with ECDSA (P-256/P-384), Ed25519 or RSA with SHA-256 or better".to_owned(),
            },
            CertificateError::ApplicationVerificationFailure => Rejection {
                reason: ReasonCode::NotConformant,
                detail: format!("{name} is refused by strict RFC 5280 checks (--strict-x509)"),
                hint: "`mtls verify --strict` shows every violation".to_owned(),
            },
            other => invalid(format!("{name} is invalid: {}", describe(other))),
        }
    }
}

/// rustls reports webpki's "not version 3" as an opaque `Other` error.
fn is_unsupported_version(err: &rustls::Error) -> bool {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::UnsupportedCertVersion)
        ),
        _ => false,
    }
}

fn invalid(detail: String) -> Rejection {
    Rejection {
        reason: ReasonCode::InvalidCertificate,
        detail,
        hint: "inspect it with `mtls inspect FILE` and validate it with `mtls verify --ca CA FILE`"
            .to_owned(),
    }
}

fn describe(err: &CertificateError) -> String {
    match err {
        CertificateError::ExpiredRevocationListContext { next_update, .. } => {
            format!("the CRL expired at {}", unix_rfc3339(next_update.as_secs()))
        }
        CertificateError::Other(other) => other.to_string(),
        other => format!("{other:?}"),
    }
}

pub fn eku_name(purpose: &ExtendedKeyPurpose) -> String {
    match purpose {
        ExtendedKeyPurpose::ServerAuth => "serverAuth".to_owned(),
        ExtendedKeyPurpose::ClientAuth => "clientAuth".to_owned(),
        ExtendedKeyPurpose::Other(arcs) => {
            let oid: Vec<String> = arcs.iter().map(usize::to_string).collect();
            match oid.join(".").as_str() {
                "1.3.6.1.5.5.7.3.3" => "codeSigning".to_owned(),
                "1.3.6.1.5.5.7.3.4" => "emailProtection".to_owned(),
                other => other.to_owned(),
            }
        }
    }
}

fn unix_rfc3339(secs: u64) -> String {
    crate::cert::unix_rfc3339(secs as i64)
}
