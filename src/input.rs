//! Reading certificates from the files people have: PEM (any number of
//! certificates), DER, and PKCS#12. Every failure is a clear error naming
//! the file, never a panic.

use std::path::{Path, PathBuf};

use p12_keystore::{KeyStore, KeyStoreEntry, Pkcs12ImportPolicy};
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read `{path}`: {cause}", path = .path.display())]
    Unreadable {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("`{path}` is empty", path = .path.display())]
    Empty { path: PathBuf },
    #[error("`{path}` is not valid PEM: {detail}", path = .path.display())]
    BadPem { path: PathBuf, detail: String },
    #[error(
        "`{path}` holds no `BEGIN CERTIFICATE` block (it has: {found}); pass a certificate file",
        path = .path.display()
    )]
    NoCertificateInPem { path: PathBuf, found: String },
    #[error(
        "`{path}` is neither PEM, a DER certificate nor PKCS#12: {detail}",
        path = .path.display()
    )]
    NotACertificate { path: PathBuf, detail: String },
    #[error(
        "`{path}` is PKCS#12 and needs a password; pass --password-env VAR with the password in VAR",
        path = .path.display()
    )]
    PasswordNeeded { path: PathBuf },
    #[error("`{path}`: wrong PKCS#12 password (the integrity check failed)", path = .path.display())]
    WrongPassword { path: PathBuf },
    #[error("`{path}` is not a readable PKCS#12 file: {detail}", path = .path.display())]
    BadPkcs12 { path: PathBuf, detail: String },
    #[error("`{path}` holds no CRL (expected `BEGIN X509 CRL` or DER)", path = .path.display())]
    NoCrl { path: PathBuf },
    #[error(
        "`{path}`: the PKCS#12 bundle holds no private key (only certificates); a client identity needs the key too: export both with `openssl pkcs12 -export -in CERT -inkey KEY -out {path}`",
        path = .path.display()
    )]
    NoPrivateKeyInPkcs12 { path: PathBuf },
}

/// Reads a file, or standard input for `-`.
pub fn read(path: &Path) -> Result<Vec<u8>, InputError> {
    let result = if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map(|_| bytes)
    } else {
        std::fs::read(path)
    };
    result.map_err(|cause| InputError::Unreadable {
        path: path.to_owned(),
        cause,
    })
}

/// The certificates in `bytes`, read from `path`: PEM, DER or PKCS#12.
/// `password` is asked only for PKCS#12.
pub fn certificates(
    path: &Path,
    bytes: &[u8],
    password: &dyn Fn() -> Option<String>,
) -> Result<Vec<CertificateDer<'static>>, InputError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(InputError::Empty {
            path: path.to_owned(),
        });
    }
    if is_pem(bytes) {
        return pem_certificates(path, bytes);
    }
    match X509Certificate::from_der(bytes) {
        Ok(([], _)) => Ok(vec![CertificateDer::from(bytes.to_vec())]),
        Ok(_) => Err(InputError::NotACertificate {
            path: path.to_owned(),
            detail: "trailing bytes after the certificate".to_owned(),
        }),
        Err(_) if looks_like_pkcs12(bytes) => pkcs12_certificates(path, bytes, password),
        Err(err) => Err(InputError::NotACertificate {
            path: path.to_owned(),
            detail: err.to_string(),
        }),
    }
}

/// A `--key` file: PEM (PKCS#8, SEC1 or PKCS#1) or DER. The error is one
/// line naming the file and the flag, for the commands' usage errors.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(path).map_err(|err| format!("--key: {err}"))?;
    let no_key = || {
        format!(
            "--key `{}` holds no private key; expected a `BEGIN PRIVATE KEY` (PKCS#8), `BEGIN EC PRIVATE KEY` (SEC1) or `BEGIN RSA PRIVATE KEY` (PKCS#1) block, or DER",
            path.display()
        )
    };
    if is_pem(&bytes) {
        return PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| match err {
            rustls::pki_types::pem::Error::NoItemsFound => no_key(),
            other => format!("--key `{}` is not valid PEM: {other}", path.display()),
        });
    }
    PrivateKeyDer::try_from(bytes.as_slice())
        .map(|key| key.clone_key())
        .map_err(|_| no_key())
}

/// CRLs from PEM (`BEGIN X509 CRL`) or DER.
pub fn crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, InputError> {
    let bytes = read(path)?;
    if is_pem(&bytes) {
        let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| InputError::BadPem {
                path: path.to_owned(),
                detail: err.to_string(),
            })?;
        if crls.is_empty() {
            return Err(InputError::NoCrl {
                path: path.to_owned(),
            });
        }
        return Ok(crls);
    }
    if bytes.first() != Some(&0x30) {
        return Err(InputError::NoCrl {
            path: path.to_owned(),
        });
    }
    Ok(vec![CertificateRevocationListDer::from(bytes)])
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn pem_certificates(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, InputError> {
    let mut certs = Vec::new();
    let mut others = Vec::new();
    for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(bytes) {
        let (kind, der) = section.map_err(|err| InputError::BadPem {
            path: path.to_owned(),
            detail: err.to_string(),
        })?;
        match kind {
            SectionKind::Certificate => certs.push(CertificateDer::from(der)),
            other => others.push(format!("{other:?}")),
        }
    }
    if certs.is_empty() {
        let found = if others.is_empty() {
            "no block rustls knows".to_owned()
        } else {
            others.join(", ")
        };
        return Err(InputError::NoCertificateInPem {
            path: path.to_owned(),
            found,
        });
    }
    for cert in &certs {
        if let Err(err) = X509Certificate::from_der(cert) {
            return Err(InputError::NotACertificate {
                path: path.to_owned(),
                detail: err.to_string(),
            });
        }
    }
    Ok(certs)
}

/// A PFX starts with SEQUENCE { INTEGER 3, ... }.
fn looks_like_pkcs12(bytes: &[u8]) -> bool {
    let Some((&0x30, rest)) = bytes.split_first() else {
        return false;
    };
    let skip = match rest.first() {
        Some(len) if *len < 0x80 => 1,
        Some(len) => 1 + (*len & 0x7f) as usize,
        None => return false,
    };
    rest.get(skip..skip + 3) == Some(&[0x02, 0x01, 0x03])
}

fn pkcs12_certificates(
    path: &Path,
    bytes: &[u8],
    password: &dyn Fn() -> Option<String>,
) -> Result<Vec<CertificateDer<'static>>, InputError> {
    let Some(password) = password() else {
        return Err(InputError::PasswordNeeded {
            path: path.to_owned(),
        });
    };
    let store =
        KeyStore::from_pkcs12(bytes, &password, Pkcs12ImportPolicy::Relaxed).map_err(|err| {
            match err {
                p12_keystore::error::Error::MacError(_) => InputError::WrongPassword {
                    path: path.to_owned(),
                },
                other => InputError::BadPkcs12 {
                    path: path.to_owned(),
                    detail: other.to_string(),
                },
            }
        })?;
    let mut certs = Vec::new();
    for (_, entry) in store.entries() {
        match entry {
            KeyStoreEntry::PrivateKeyChain(chain) => certs.extend(
                chain
                    .certs()
                    .iter()
                    .map(|c| CertificateDer::from(c.as_der().to_vec())),
            ),
            KeyStoreEntry::Certificate(cert) => {
                certs.push(CertificateDer::from(cert.as_der().to_vec()))
            }
            _ => {}
        }
    }
    Ok(certs)
}

/// A client identity from a PKCS#12 bundle (`.p12`/`.pfx`, modern AES or
/// legacy 3DES/RC2): the certificate chain of the first private-key entry,
/// leaf first, and its PKCS#8 private key. Everything stays in memory.
pub fn pkcs12_identity(
    path: &Path,
    bytes: &[u8],
    password: &str,
) -> Result<
    (
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    InputError,
> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(InputError::Empty {
            path: path.to_owned(),
        });
    }
    if !looks_like_pkcs12(bytes) {
        let detail = if is_pem(bytes) {
            "it is PEM; pass PEM files with --cert and --key instead"
        } else {
            "it does not start with a PKCS#12 (PFX version 3) structure"
        };
        return Err(InputError::BadPkcs12 {
            path: path.to_owned(),
            detail: detail.to_owned(),
        });
    }
    let store = KeyStore::from_pkcs12(bytes, password, Pkcs12ImportPolicy::Relaxed).map_err(
        |err| match err {
            p12_keystore::error::Error::MacError(_) => InputError::WrongPassword {
                path: path.to_owned(),
            },
            other => InputError::BadPkcs12 {
                path: path.to_owned(),
                detail: other.to_string(),
            },
        },
    )?;
    // Entries are ordered by alias; a key that came with its certificate
    // is preferred over a stray key without one.
    let chains: Vec<_> = store
        .entries()
        .filter_map(|(_, entry)| match entry {
            KeyStoreEntry::PrivateKeyChain(chain) => Some(chain),
            _ => None,
        })
        .collect();
    let Some(chain) = chains
        .iter()
        .find(|chain| !chain.certs().is_empty())
        .or(chains.first())
    else {
        return Err(InputError::NoPrivateKeyInPkcs12 {
            path: path.to_owned(),
        });
    };
    if chain.certs().is_empty() {
        return Err(InputError::BadPkcs12 {
            path: path.to_owned(),
            detail: "the private key has no certificate in the bundle".to_owned(),
        });
    }
    let certs = chain
        .certs()
        .iter()
        .map(|c| CertificateDer::from(c.as_der().to_vec()))
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        chain.key().as_der().to_vec(),
    ));
    Ok((certs, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_password() -> Option<String> {
        None
    }

    #[test]
    fn garbage_is_a_clear_error_not_a_panic() {
        let path = Path::new("x");
        for bytes in [
            &b""[..],
            b"   \n",
            b"\x30",
            b"\x30\x82",
            b"\x30\x03\x02\x01\x03",
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            b"\xff\xfe\x00garbage",
        ] {
            assert!(
                certificates(path, bytes, &no_password).is_err(),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn a_pem_with_the_wrong_label_says_what_it_found() {
        let pem = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let err = certificates(Path::new("k.pem"), pem, &no_password).unwrap_err();
        assert!(
            err.to_string()
                .contains("holds no `BEGIN CERTIFICATE` block"),
            "{err}"
        );
        assert!(err.to_string().contains("PrivateKey"), "{err}");
    }
}
