//! Shared pieces of the benchmark tools (scripts/bench.sh): the crypto
//! provider choice, PEM loading, and reading a process's CPU time and
//! memory from /proc.

pub mod http1;
pub mod latency;
pub mod procfs;
pub mod tickets;

use std::path::Path;

use anyhow::{Context, bail};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The welcome document every server of the benchmark answers with, byte
/// for byte what `mtls serve` sends for `GET /` (with Flask's newline).
pub const WELCOME_BODY: &str = "{\"message\":\"Welcome to the mTLS Flask App!\"}\n";

/// The rustls crypto providers compared by the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    Ring,
    AwsLcRs,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Ring => "ring",
            Provider::AwsLcRs => "aws-lc-rs",
        }
    }

    pub fn crypto(self) -> CryptoProvider {
        match self {
            Provider::Ring => rustls::crypto::ring::default_provider(),
            Provider::AwsLcRs => rustls::crypto::aws_lc_rs::default_provider(),
        }
    }
}

/// Restricts `provider` to the X25519 key exchange, so that a client offers
/// the same single key share to every server (OpenSSL and rustls alike).
pub fn x25519_only(mut provider: CryptoProvider) -> anyhow::Result<CryptoProvider> {
    provider
        .kx_groups
        .retain(|group| group.name() == rustls::NamedGroup::X25519);
    if provider.kx_groups.is_empty() {
        bail!("this crypto provider has no X25519 key exchange");
    }
    Ok(provider)
}

/// Every certificate of a PEM file, in order.
pub fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read certificates from `{}`", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("`{}` is not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        bail!("`{}` holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// The first private key of a PEM file.
pub fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("cannot read a PEM private key from `{}`", path.display()))
}

/// Trust anchors from a PEM bundle.
pub fn load_roots(path: &Path) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .with_context(|| format!("`{}`: not a usable trust anchor", path.display()))?;
    }
    Ok(roots)
}
