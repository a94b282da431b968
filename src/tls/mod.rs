//! Building the rustls server configuration: the server's identity, the
//! client verifier for the chosen mode, protocol versions and ALPN.

pub mod danger;
pub mod pem;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{InconsistentKeys, RootCertStore, ServerConfig};

use crate::config::{ClientAuthMode, ServeConfig};
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
    #[error("cannot build the TLS configuration: {0}")]
    Rustls(String),
}

/// The crypto provider every TLS configuration of the process uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A complete server configuration for `config`, validated: the key matches
/// the certificate and the client CA bundle parses.
pub fn server_config(config: &ServeConfig) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = provider();
    let identity = load_server_identity(&provider, &config.cert, &config.key)?;
    let verifier = client_verifier(&provider, config.client_auth, &config.client_ca)?;

    let mut server_config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| TlsConfigError::Rustls(err.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(identity)));
    server_config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(server_config))
}

/// The server's certificate chain and signing key, checked to belong together.
pub fn load_server_identity(
    provider: &CryptoProvider,
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsConfigError> {
    let chain = pem::load_certificates(FileRole::ServerCert, cert_path)?;
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

/// The verifier for a mode. Both `optional` and `required` verify a presented
/// chain fully (trust, validity, clientAuth EKU); `optional` additionally
/// admits clients that present no certificate at all.
fn client_verifier(
    provider: &Arc<CryptoProvider>,
    mode: ClientAuthMode,
    client_ca: &Path,
) -> Result<Arc<dyn ClientCertVerifier>, TlsConfigError> {
    if mode == ClientAuthMode::Off {
        return Ok(WebPkiClientVerifier::no_client_auth());
    }
    let roots = Arc::new(load_client_roots(client_ca)?);
    let builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
    let builder = match mode {
        ClientAuthMode::Optional => builder.allow_unauthenticated(),
        _ => builder,
    };
    builder
        .build()
        .map_err(|err| TlsConfigError::Rustls(err.to_string()))
}
