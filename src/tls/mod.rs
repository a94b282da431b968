//! Building the rustls server configuration: the server's identity, the
//! client verifier for the chosen mode, protocol versions and ALPN.

pub mod client_auth;
pub mod danger;
pub mod keylog;
pub mod pem;
pub mod tickets;
mod verified_chains;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateRevocationListDer;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{InconsistentKeys, RootCertStore, ServerConfig};

use crate::config::{ClientAuthMode, ServeConfig};
use crate::secrets::{self, SecretRole};
use client_auth::{ClientTrust, DeferredChainVerifier, StrictChecks};
use pem::{FileRole, PemError};

/// ALPN protocols offered, in order of preference.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error(
        "server private key `{key}` (--key / SERVER_KEY) is not usable: {detail}; use an ECDSA P-256/P-384, Ed25519 or RSA (2048 bits or more) key",
        key = .key.display()
    )]
    UnsupportedKey { key: PathBuf, detail: String },
    #[error(
        "server certificate `{path}` (--cert / SERVER_CERT): certificate #{index} is not valid X.509: {detail}",
        path = .path.display()
    )]
    BadServerCert {
        path: PathBuf,
        index: usize,
        detail: String,
    },
    #[error(
        "server private key `{key}` does not match the certificate `{cert}`; pass the key that was generated with this certificate (--key / SERVER_KEY, --cert / SERVER_CERT)",
        key = .key.display(), cert = .cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "client CA bundle `{path}` (--client-ca / CLIENT_CA): certificate #{index} cannot be a trust anchor: {detail}",
        path = .path.display()
    )]
    BadClientCa {
        path: PathBuf,
        index: usize,
        detail: String,
    },
    #[error(
        "upstream CA bundle `{path}` (--upstream-ca / UPSTREAM_CA): certificate #{index} cannot be a trust anchor: {detail}",
        path = .path.display()
    )]
    BadUpstreamCa {
        path: PathBuf,
        index: usize,
        detail: String,
    },
    #[error("the upstream client identity (--upstream-cert / --upstream-key) is not usable: {0}")]
    UpstreamIdentity(String),
    #[error(transparent)]
    TicketKey(#[from] tickets::TicketKeyError),
    #[error("--crl / CRL: {0}")]
    Crl(#[from] crate::input::InputError),
    #[error("cannot build the TLS configuration: {0}")]
    Rustls(String),
    #[error(transparent)]
    ClientPkcs12(crate::input::InputError),
    #[error("client identity `{path}` is not usable: {detail}", path = .path.display())]
    ClientIdentity { path: PathBuf, detail: String },
    #[error(transparent)]
    InsecureKey(#[from] crate::secrets::InsecurePermissions),
    #[error(transparent)]
    KeyLog(#[from] keylog::KeyLogError),
}

/// A server configuration and, when client auth is on, the trust that
/// judges client chains (needed again after the handshake).
pub struct TlsSetup {
    pub config: Arc<ServerConfig>,
    pub client_trust: Option<Arc<ClientTrust>>,
}

/// The crypto provider every TLS configuration of the process uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's provider: the same algorithms, with the AES-128-GCM suites
/// first. The server's order decides (`ignore_client_order`): AES-128 with
/// SHA-256 is as strong as the P-256 and X25519 key exchange it runs with,
/// and its SHA-256 key schedule costs clearly less per handshake than
/// AES-256's SHA-384 one (docs/benchmarks.md). Browsers already ask for it
/// first; OpenSSL and rustls clients ask for AES-256 first.
fn server_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(provider)
}

/// A complete server configuration for `config`, validated: the key matches
/// the certificate and the client CA bundle parses.
pub fn server_config(config: &ServeConfig) -> Result<TlsSetup, TlsConfigError> {
    let provider = server_provider();
    let allow_insecure = config.allow_insecure_key_permissions;
    secrets::check(&config.key, SecretRole::ServerKey, allow_insecure)?;
    for path in &config.session_ticket_key_files {
        secrets::check(path, SecretRole::SessionTicketKey, allow_insecure)?;
    }
    let identity = load_server_identity(&provider, &config.cert, &config.key)?;
    let client_trust = match config.client_auth {
        ClientAuthMode::Off => None,
        _ => Some(Arc::new(client_trust(
            &provider,
            &config.client_ca,
            &config.crls,
            config.strict_x509,
        )?)),
    };
    let verifier: Arc<dyn ClientCertVerifier> = match (&client_trust, config.client_auth) {
        (Some(trust), ClientAuthMode::Optional) => Arc::new(DeferredChainVerifier::new(
            trust.verifier(),
            provider.clone(),
        )),
        (Some(trust), _) => trust.verifier(),
        (None, _) => WebPkiClientVerifier::no_client_auth(),
    };

    let mut server_config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| TlsConfigError::Rustls(err.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(identity)));
    server_config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    server_config.ignore_client_order = true;
    if !config.session_ticket_key_files.is_empty() {
        server_config.ticketer = Arc::new(tickets::SharedKeyTicketer::from_files(
            &config.session_ticket_key_files,
        )?);
    }
    if let Some(path) = &config.keylog {
        server_config.key_log = Arc::new(keylog::KeyLogFile::open(path)?);
    }
    Ok(TlsSetup {
        config: Arc::new(server_config),
        client_trust,
    })
}

/// The server's certificate chain and signing key, checked to belong together.
pub fn load_server_identity(
    provider: &CryptoProvider,
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsConfigError> {
    let chain = pem::load_certificates(FileRole::ServerCert, cert_path)?;
    for (index, cert) in chain.iter().enumerate() {
        if let Err(err) = x509_parser::parse_x509_certificate(cert) {
            return Err(TlsConfigError::BadServerCert {
                path: cert_path.to_owned(),
                index: index + 1,
                detail: err.to_string(),
            });
        }
    }
    let key = pem::load_private_key(FileRole::ServerKey, key_path)?;
    let signing_key = provider.key_provider.load_private_key(key).map_err(|err| {
        TlsConfigError::UnsupportedKey {
            key: key_path.to_owned(),
            detail: err.to_string(),
        }
    })?;
    let identity = CertifiedKey::new(chain, signing_key);
    match identity.keys_match() {
        // `Unknown` means the key type cannot report its public key; the
        // handshake then fails visibly instead of silently.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(identity),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsConfigError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            })
        }
        Err(other) => Err(TlsConfigError::Rustls(other.to_string())),
    }
}

/// The trust anchors for client certificates, one per certificate in the bundle.
pub fn load_client_roots(path: &Path) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for (index, cert) in pem::load_certificates(FileRole::ClientCa, path)?
        .into_iter()
        .enumerate()
    {
        roots.add(cert).map_err(|err| TlsConfigError::BadClientCa {
            path: path.to_owned(),
            index: index + 1,
            detail: err.to_string(),
        })?;
    }
    Ok(roots)
}

/// The trusted client CAs and CRLs, with the verifier `required` uses in
/// the handshake and `optional` after it. It verifies the chain to a trusted
/// CA, validity, the clientAuth EKU and, with CRLs, revocation of every
/// certificate in the chain; a CRL past its nextUpdate is not trusted (the
/// certificate's status is then unknown, and it is refused).
fn client_trust(
    provider: &Arc<CryptoProvider>,
    client_ca: &Path,
    crl_paths: &[PathBuf],
    strict_x509: bool,
) -> Result<ClientTrust, TlsConfigError> {
    let roots = load_client_roots(client_ca)?;
    let trusted_subjects = roots
        .roots
        .iter()
        .map(|anchor| crate::cert::dn_der_to_rfc4514(anchor.subject.as_ref()))
        .collect();
    let mut crls = Vec::new();
    for path in crl_paths {
        crls.extend(crate::input::crls(path)?);
    }
    let strict = match strict_x509 {
        true => Some(StrictChecks {
            trusted: pem::load_certificates(FileRole::ClientCa, client_ca)?,
            crls: crls.clone(),
        }),
        false => None,
    };
    // Before 1970 means already expired.
    let crls_valid_until = earliest_next_update(&crls).map(|t| u64::try_from(t).unwrap_or(0));
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if !crls.is_empty() {
        builder = builder.with_crls(crls).enforce_revocation_expiration();
    }
    let verifier = builder
        .build()
        .map_err(|err| TlsConfigError::Rustls(err.to_string()))?;
    Ok(ClientTrust::new(
        verifier,
        strict,
        trusted_subjects,
        crls_valid_until,
    ))
}

/// The earliest nextUpdate among the CRLs, in Unix seconds: past it, the
/// verifier refuses every chain (revocation status unknown).
pub(crate) fn earliest_next_update(crls: &[CertificateRevocationListDer<'_>]) -> Option<i64> {
    crls.iter()
        .filter_map(|crl| {
            let (_, parsed) = x509_parser::parse_x509_crl(crl).ok()?;
            Some(parsed.next_update()?.timestamp())
        })
        .min()
}

/// The TLS client configuration for an https upstream: trust from
/// `--upstream-ca` (or the system's roots), and a client identity for
/// upstreams that require mTLS themselves.
pub fn upstream_client_config(
    ca: Option<&Path>,
    identity: Option<&UpstreamIdentity>,
) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for (index, cert) in pem::load_certificates(FileRole::UpstreamCa, path)?
                .into_iter()
                .enumerate()
            {
                roots
                    .add(cert)
                    .map_err(|err| TlsConfigError::BadUpstreamCa {
                        path: path.to_owned(),
                        index: index + 1,
                        detail: err.to_string(),
                    })?;
            }
        }
        None => {
            // Unreadable system certificates are skipped, as curl does.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| TlsConfigError::Rustls(err.to_string()))?
        .with_root_certificates(roots);
    // No ALPN here: hyper-rustls sets it from the enabled HTTP versions.
    let config = match identity {
        Some(identity) => {
            let (chain, key) = match identity {
                UpstreamIdentity::Files { cert, key } => (
                    pem::load_certificates(FileRole::UpstreamCert, cert)?,
                    pem::load_private_key(FileRole::UpstreamKey, key)?,
                ),
                UpstreamIdentity::Pkcs12 { path, password } => {
                    client_identity_from_pkcs12(path, password)?
                }
            };
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|err| TlsConfigError::UpstreamIdentity(err.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The client identity mtls presents to an upstream that requires mTLS.
#[derive(Clone)]
pub enum UpstreamIdentity {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Read into memory only; never written out as PEM.
    Pkcs12 {
        path: PathBuf,
        password: String,
    },
}

impl std::fmt::Debug for UpstreamIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamIdentity::Files { cert, key } => f
                .debug_struct("Files")
                .field("cert", cert)
                .field("key", key)
                .finish(),
            // The password is never printed.
            UpstreamIdentity::Pkcs12 { path, .. } => {
                f.debug_struct("Pkcs12").field("path", path).finish()
            }
        }
    }
}

/// A client identity (certificate chain, leaf first, and private key) from a
/// PKCS#12 bundle, checked to be usable: the key is one rustls can sign
/// with and it matches the leaf. The bundle is read into memory only; no
/// PEM file is ever written.
pub fn client_identity_from_pkcs12(
    path: &Path,
    password: &str,
) -> Result<
    (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    TlsConfigError,
> {
    let bytes = crate::input::read(path).map_err(TlsConfigError::ClientPkcs12)?;
    let (chain, key) = crate::input::pkcs12_identity(path, &bytes, password)
        .map_err(TlsConfigError::ClientPkcs12)?;
    let unusable = |detail: String| TlsConfigError::ClientIdentity {
        path: path.to_owned(),
        detail,
    };
    let signing_key = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|err| {
            unusable(format!(
                "{err}; use an ECDSA P-256/P-384, Ed25519 or RSA (2048 bits or more) key"
            ))
        })?;
    match CertifiedKey::new(chain.clone(), signing_key).keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {
            Ok((chain, key))
        }
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(unusable(
            "the private key does not belong to the first certificate".to_owned(),
        )),
        Err(other) => Err(unusable(other.to_string())),
    }
}
