//! Loading PEM files, with errors that name the file, the flag that chose
//! it and the fix.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What a file is for; decides how errors about it are worded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    ServerCert,
    ServerKey,
    ClientCa,
    UpstreamCa,
    UpstreamCert,
    UpstreamKey,
}

impl FileRole {
    fn what(self) -> &'static str {
        match self {
            FileRole::ServerCert => "server certificate",
            FileRole::ServerKey => "server private key",
            FileRole::ClientCa => "client CA bundle",
            FileRole::UpstreamCa => "upstream CA bundle",
            FileRole::UpstreamCert => "upstream client certificate",
            FileRole::UpstreamKey => "upstream client key",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            FileRole::ServerCert => "--cert / SERVER_CERT",
            FileRole::ServerKey => "--key / SERVER_KEY",
            FileRole::ClientCa => "--client-ca / CLIENT_CA",
            FileRole::UpstreamCa => "--upstream-ca / UPSTREAM_CA",
            FileRole::UpstreamCert => "--upstream-cert / UPSTREAM_CERT",
            FileRole::UpstreamKey => "--upstream-key / UPSTREAM_KEY",
        }
    }
}

impl fmt::Display for FileRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.what(), self.flag())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error(
        "cannot read {role} `{path}`: {cause}; {hint}",
        path = .path.display(), hint = unreadable_hint(.role, .cause)
    )]
    Unreadable {
        role: FileRole,
        path: PathBuf,
        cause: io::Error,
    },
    #[error("{role} `{path}` is not valid PEM: {detail}", path = .path.display())]
    Malformed {
        role: FileRole,
        path: PathBuf,
        detail: String,
    },
    #[error(
        "{role} `{path}` holds no `BEGIN CERTIFICATE` block; if it is DER, convert it with `openssl x509 -inform DER -in {path} -out {path}.pem`",
        path = .path.display()
    )]
    NoCertificate { role: FileRole, path: PathBuf },
    #[error(
        "{role} `{path}` holds no private key; expected a `BEGIN PRIVATE KEY` (PKCS#8), `BEGIN EC PRIVATE KEY` (SEC1) or `BEGIN RSA PRIVATE KEY` (PKCS#1) block",
        path = .path.display()
    )]
    NoPrivateKey { role: FileRole, path: PathBuf },
}

fn unreadable_hint(role: &FileRole, cause: &io::Error) -> String {
    match cause.kind() {
        io::ErrorKind::PermissionDenied => format!(
            "run mtls as the file's owner (in a container: `docker run --user $(id -u):$(id -g)`, or MTLS_UID/MTLS_GID with docker-compose) or make the file readable by the user mtls runs as ({})",
            role.flag()
        ),
        _ => format!(
            "create a development PKI with `mtls pki init` (or ./run.sh), or point {} at an existing file",
            role.flag()
        ),
    }
}

/// Every certificate in a PEM file, in file order.
pub fn load_certificates(
    role: FileRole,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let bytes = read(role, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| malformed(role, path, err))?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate {
            role,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file, in PKCS#8, SEC1 or PKCS#1 form.
pub fn load_private_key(role: FileRole, path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let bytes = read(role, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| match err {
        pem::Error::NoItemsFound => PemError::NoPrivateKey {
            role,
            path: path.to_owned(),
        },
        other => malformed(role, path, other),
    })
}

fn read(role: FileRole, path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|cause| PemError::Unreadable {
        role,
        path: path.to_owned(),
        cause,
    })
}

fn malformed(role: FileRole, path: &Path, err: pem::Error) -> PemError {
    PemError::Malformed {
        role,
        path: path.to_owned(),
        detail: err.to_string(),
    }
}
