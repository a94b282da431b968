//! Offline chain validation, exactly as `mtls serve` validates: the verdict
//! comes from rustls' own verifiers (rustls-webpki path building, EKU,
//! validity, CRLs), and the reasons are rustls' typed errors in words.

use std::fmt::Write;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore};

use crate::cert::{self, CertDetails};
use crate::rejection::eku_name;
use crate::tls;

/// What the certificate must be good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Purpose {
    /// TLS client authentication (clientAuth EKU), as `mtls serve` checks.
    Client,
    /// TLS server authentication (serverAuth EKU), as a client checks.
    Server,
}

/// Everything one validation needs.
pub struct Verification<'a> {
    pub trusted: &'a [CertificateDer<'static>],
    pub intermediates: &'a [CertificateDer<'static>],
    pub crls: &'a [CertificateRevocationListDer<'static>],
    pub purpose: Purpose,
    /// For `Purpose::Server`: the name the certificate must be valid for.
    pub dns_name: Option<&'a str>,
    pub at: UnixTime,
    /// Also apply the RFC 5280 conformance checks of [`crate::strict`]
    /// once rustls has accepted the certificate.
    pub strict: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The certificate is not valid; the text says why.
    #[error("{0}")]
    Invalid(String),
    /// The inputs cannot be used (no usable trust anchor, bad name, ...).
    #[error("{0}")]
    Unusable(String),
}

impl Verification<'_> {
    /// Validates `leaf`; on success returns the chain that was built, leaf
    /// first and the trust anchor last.
    pub fn run(&self, leaf: &CertificateDer<'static>) -> Result<Vec<String>, VerifyError> {
        let mut roots = RootCertStore::empty();
        for (i, cert) in self.trusted.iter().enumerate() {
            roots.add(cert.clone()).map_err(|err| {
                VerifyError::Unusable(format!(
                    "trusted certificate #{} cannot be a trust anchor: {err}",
                    i + 1
                ))
            })?;
        }
        let roots = Arc::new(roots);
        let provider = tls::provider();
        let verdict = match (self.purpose, self.dns_name) {
            (Purpose::Client, _) => {
                let mut builder =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
                if !self.crls.is_empty() {
                    builder = builder.with_crls(self.crls.iter().cloned());
                }
                let verifier = builder
                    .build()
                    .map_err(|err| VerifyError::Unusable(err.to_string()))?;
                verifier
                    .verify_client_cert(leaf, self.intermediates, self.at)
                    .map(|_| ())
            }
            (Purpose::Server, name) => {
                let mut builder =
                    WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone());
                if !self.crls.is_empty() {
                    builder = builder.with_crls(self.crls.iter().cloned());
                }
                let verifier = builder
                    .build()
                    .map_err(|err| VerifyError::Unusable(err.to_string()))?;
                // Without a name, check the chain only: a certificate has no
                // name we could pass that would not also be checked.
                let verifier: Arc<dyn ServerCertVerifier> = match name {
                    Some(_) => verifier,
                    None => Arc::new(ChainOnly(verifier)),
                };
                let server_name = ServerName::try_from(name.unwrap_or("invalid").to_owned())
                    .map_err(|_| {
                        VerifyError::Unusable(format!(
                            "--dns-name `{}` is not a valid DNS name or IP address",
                            name.unwrap_or_default()
                        ))
                    })?;
                verifier
                    .verify_server_cert(leaf, self.intermediates, &server_name, &[], self.at)
                    .map(|_| ())
            }
        };
        verdict.map_err(|err| VerifyError::Invalid(reason(&err, leaf)))?;
        if self.strict {
            let violations = crate::strict::violations(
                leaf,
                self.intermediates,
                self.trusted,
                self.crls,
                self.purpose,
                self.at,
            );
            if !violations.is_empty() {
                return Err(VerifyError::Invalid(format!(
                    "strict: {}",
                    violations.join("; ")
                )));
            }
        }
        Ok(self.built_chain(leaf, &roots))
    }

    /// The subjects along the path rustls-webpki builds, for display.
    fn built_chain(&self, leaf: &CertificateDer<'static>, roots: &RootCertStore) -> Vec<String> {
        let subject = |der: &[u8]| {
            CertDetails::from_der(der)
                .map(|d| d.subject.rfc4514)
                .unwrap_or_else(|_| "(undecodable)".to_owned())
        };
        let mut chain = vec![subject(leaf)];
        let Ok(end_entity) = webpki::EndEntityCert::try_from(leaf) else {
            return chain;
        };
        let usage = match self.purpose {
            Purpose::Client => webpki::KeyUsage::client_auth(),
            Purpose::Server => webpki::KeyUsage::server_auth(),
        };
        let algs = tls::provider().signature_verification_algorithms.all;
        if let Ok(path) = end_entity.verify_for_usage(
            algs,
            &roots.roots,
            self.intermediates,
            self.at,
            usage,
            None,
            None,
        ) {
            for intermediate in path.intermediate_certificates() {
                chain.push(subject(intermediate.der().as_ref()));
            }
            chain.push(cert::dn_der_to_rfc4514(path.anchor().subject.as_ref()));
        }
        chain
    }
}

/// Server verification without the host-name check.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// One line that says precisely why rustls rejected the certificate.
pub fn reason(err: &rustls::Error, leaf: &CertificateDer<'_>) -> String {
    let details = CertDetails::from_der(leaf).ok();
    let rustls::Error::InvalidCertificate(cert_err) = err else {
        return err.to_string();
    };
    match cert_err {
        CertificateError::UnknownIssuer => {
            let issuer = details
                .as_ref()
                .map(|d| d.issuer.rfc4514.clone())
                .unwrap_or_default();
            format!(
                "unknown issuer: no chain to a trusted CA (the certificate's issuer is `{issuer}`); trust that CA, or supply the missing intermediate"
            )
        }
        CertificateError::ExpiredContext { time, not_after } => format!(
            "expired at {} (checked at {})",
            unix_rfc3339(not_after),
            unix_rfc3339(time)
        ),
        CertificateError::Expired => "expired".to_owned(),
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "not valid before {} (checked at {})",
            unix_rfc3339(not_before),
            unix_rfc3339(time)
        ),
        CertificateError::NotValidYet => "not valid yet".to_owned(),
        CertificateError::InvalidPurposeContext {
            required,
            presented,
        } => {
            let mut text = format!("extended key usage {} missing", eku_name(required));
            let presented: Vec<String> = presented.iter().map(eku_name).collect();
            let _ = write!(text, " (the certificate has: {})", presented.join(", "));
            text
        }
        CertificateError::InvalidPurpose => {
            "extended key usage does not allow this purpose".to_owned()
        }
        CertificateError::NotValidForNameContext { expected, .. } => {
            let names: Vec<String> = details
                .as_ref()
                .map(|d| {
                    let sans = &d.subject_alt_names;
                    sans.dns.iter().chain(&sans.ip).cloned().collect()
                })
                .unwrap_or_default();
            let names = if names.is_empty() {
                "no names".to_owned()
            } else {
                names.join(", ")
            };
            format!(
                "name mismatch: expected `{}`, the certificate is valid for: {names}",
                expected.to_str()
            )
        }
        CertificateError::NotValidForName => "name mismatch".to_owned(),
        CertificateError::Revoked => {
            let serial = details
                .as_ref()
                .map(|d| d.serial.clone())
                .unwrap_or_default();
            format!("revoked: serial {serial} is listed in a CRL from its issuer")
        }
        CertificateError::UnknownRevocationStatus => {
            "revocation status unknown: no CRL from the issuer of a certificate in the chain"
                .to_owned()
        }
        CertificateError::ExpiredRevocationListContext { time, next_update } => format!(
            "the CRL expired at {} (checked at {})",
            unix_rfc3339(next_update),
            unix_rfc3339(time)
        ),
        CertificateError::ExpiredRevocationList => "the CRL has expired".to_owned(),
        #[allow(deprecated)]
        CertificateError::BadSignature => "bad signature".to_owned(),
        #[allow(deprecated)]
        CertificateError::UnsupportedSignatureAlgorithm => {
            format!("bad signature or unsupported signature algorithm ({err})")
        }
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            format!("bad signature or unsupported signature algorithm ({err})")
        }
        CertificateError::BadEncoding => "malformed certificate (bad DER encoding)".to_owned(),
        CertificateError::UnhandledCriticalExtension => {
            "a critical extension is not understood".to_owned()
        }
        other => format!("{other:?}"),
    }
}

fn unix_rfc3339(time: &UnixTime) -> String {
    crate::cert::unix_rfc3339(time.as_secs() as i64)
}
