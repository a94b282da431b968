//! Client certificate verification for the three modes.
//!
//! `required` verifies in the handshake with rustls' `WebPkiClientVerifier`,
//! so a bad certificate ends the handshake with its TLS alert.
//!
//! `optional` must let a client with a bad certificate through the handshake
//! so that the HTTP layer can explain the refusal. Its handshake verifier,
//! `DeferredChainVerifier`, still makes rustls check the CertificateVerify
//! signature (the client proves it holds the key), but leaves the chain to
//! `ClientTrust::verify`, which runs the very same `WebPkiClientVerifier`
//! right after the handshake. Only a chain that passes becomes an identity.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, verify_tls13_signature_with_raw_key};
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Version;

use super::verified_chains::VerifiedChains;
use crate::identity::VerifiedClient;
use crate::rejection::Rejection;
use crate::strict;
use crate::verify::Purpose;

/// The trusted CAs and the verifier that judges client chains against them.
#[derive(Debug)]
pub struct ClientTrust {
    /// rustls' `WebPkiClientVerifier`.
    webpki: Arc<dyn ClientCertVerifier>,
    /// With `--strict-x509`: the RFC 5280 checks run after rustls-webpki.
    strict: Option<Arc<StrictChecks>>,
    /// RFC 4514 subjects of the trusted CAs, for explaining `unknown_issuer`.
    pub trusted_subjects: Vec<String>,
    /// Chains verified recently; off with `--strict-x509`, whose extra
    /// checks are not all bound by the validity dates the cache honours.
    recently_verified: Option<VerifiedChains>,
}

/// What `crate::strict` needs besides the chain.
#[derive(Debug)]
pub struct StrictChecks {
    pub trusted: Vec<CertificateDer<'static>>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

impl StrictChecks {
    fn violations(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Vec<String> {
        let leaf = leaf.clone().into_owned();
        let intermediates: Vec<CertificateDer<'static>> = intermediates
            .iter()
            .map(|c| c.clone().into_owned())
            .collect();
        strict::violations(
            &leaf,
            &intermediates,
            &self.trusted,
            &self.crls,
            Purpose::Client,
            now,
        )
    }
}

impl ClientTrust {
    /// `crls_valid_until`: the earliest nextUpdate of the CRLs in use.
    pub fn new(
        webpki: Arc<dyn ClientCertVerifier>,
        strict: Option<StrictChecks>,
        trusted_subjects: Vec<String>,
        crls_valid_until: Option<u64>,
    ) -> Self {
        ClientTrust {
            webpki,
            recently_verified: match strict {
                Some(_) => None,
                None => Some(VerifiedChains::new(crls_valid_until)),
            },
            strict: strict.map(Arc::new),
            trusted_subjects,
        }
    }

    /// The identity of a presented chain (leaf first), verified now.
    ///
    /// `verified_in_handshake`: rustls has just verified this chain with
    /// `self.verifier()` (a full handshake in `required` mode), so it is
    /// not verified twice. A chain this trust verified earlier is not
    /// verified again while the result still holds (see `verified_chains`).
    pub fn identify(
        &self,
        chain: &[CertificateDer<'_>],
        verified_in_handshake: bool,
    ) -> Result<Arc<VerifiedClient>, Rejection> {
        let now = UnixTime::now();
        let Some(cache) = &self.recently_verified else {
            if !verified_in_handshake {
                self.verify_at(chain, now)?;
            }
            return Ok(Arc::new(VerifiedClient::new(chain)));
        };
        if let Some(client) = cache.get(chain, now) {
            return Ok(client);
        }
        if !verified_in_handshake {
            self.verify_at(chain, now)?;
        }
        Ok(cache.insert(chain))
    }

    /// Verifies a presented chain (leaf first) now.
    pub fn verify(&self, chain: &[CertificateDer<'_>]) -> Result<(), Rejection> {
        self.verify_at(chain, UnixTime::now())
    }

    fn verify_at(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> Result<(), Rejection> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(Rejection::no_certificate());
        };
        self.webpki
            .verify_client_cert(leaf, intermediates, now)
            .map_err(|err| self.explain(&err, Some(leaf)))?;
        if let Some(strict) = &self.strict {
            let violations = strict.violations(leaf, intermediates, now);
            if !violations.is_empty() {
                return Err(Rejection::not_conformant(Some(leaf), &violations));
            }
        }
        Ok(())
    }

    /// The rejection for a verifier error.
    pub fn explain(&self, err: &rustls::Error, leaf: Option<&CertificateDer<'_>>) -> Rejection {
        Rejection::from_verifier(err, leaf, &self.trusted_subjects)
    }

    /// The verifier for `required` mode's handshake.
    pub fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        match &self.strict {
            Some(strict) => Arc::new(StrictVerifier {
                inner: self.webpki.clone(),
                strict: strict.clone(),
            }),
            None => self.webpki.clone(),
        }
    }
}

/// `required` mode with `--strict-x509`: rustls-webpki, then the RFC 5280
/// checks; a violation fails the handshake (alert `access_denied`).
#[derive(Debug)]
struct StrictVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    strict: Arc<StrictChecks>,
}

impl ClientCertVerifier for StrictVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let violations = self.strict.violations(end_entity, intermediates, now);
        if violations.is_empty() {
            return Ok(verified);
        }
        // The handshake error cannot carry the list: log it here.
        tracing::info!(violations = ?violations, "client certificate refused by --strict-x509");
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The handshake verifier of `optional` mode: asks for a certificate,
/// accepts none, checks possession of the key, defers the chain (see the
/// module comment).
#[derive(Debug)]
pub struct DeferredChainVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    provider: Arc<CryptoProvider>,
}

impl DeferredChainVerifier {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, provider: Arc<CryptoProvider>) -> Self {
        DeferredChainVerifier { inner, provider }
    }
}

impl ClientCertVerifier for DeferredChainVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Judged by ClientTrust::verify once the handshake is complete.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match self.inner.verify_tls13_signature(message, cert, dss) {
            // rustls-webpki cannot parse an X.509 v1 certificate at all, so
            // the signature is checked against its public key directly:
            // possession is still proven, and the chain check after the
            // handshake refuses the certificate with `unsupported_version`.
            Err(err) if is_version_1(cert) => {
                let spki = version_1_public_key(cert).ok_or(err)?;
                verify_tls13_signature_with_raw_key(
                    message,
                    &spki,
                    dss,
                    &self.provider.signature_verification_algorithms,
                )
            }
            other => other,
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn is_version_1(cert: &CertificateDer<'_>) -> bool {
    X509Certificate::from_der(cert).is_ok_and(|(_, c)| c.version() == X509Version::V1)
}

fn version_1_public_key(cert: &CertificateDer<'_>) -> Option<SubjectPublicKeyInfoDer<'static>> {
    let (_, parsed) = X509Certificate::from_der(cert).ok()?;
    Some(SubjectPublicKeyInfoDer::from(
        parsed.public_key().raw.to_vec(),
    ))
}
