//! A development PKI made with rcgen: an ECDSA P-256 CA, a server
//! certificate and client certificates, written as PEM files.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

pub const DEFAULT_DOMAIN: &str = "api.flaskmtlsauth.com";
pub const DEFAULT_CLIENT: &str = "client";
pub const CA_COMMON_NAME: &str = "mtls development CA";

const CA_VALIDITY_DAYS: i64 = 3650;
const LEAF_VALIDITY_DAYS: i64 = 365;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot generate certificate for `{name}`: {cause}")]
    Generate { name: String, cause: rcgen::Error },
    #[error("cannot load the CA certificate and key: {cause}")]
    LoadCa { cause: rcgen::Error },
    #[error("`{name}` is not a valid name for a certificate: {cause}")]
    InvalidName { name: String, cause: rcgen::Error },
    #[error(
        "refusing to overwrite existing files: {}; pass --force to replace them",
        .0.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", ")
    )]
    WouldOverwrite(Vec<PathBuf>),
    #[error(
        "`{0}` is not a usable client name; use letters, digits, `-`, `_` or `.`, not `ca` or `server`, each name once (it becomes the file name NAME.crt)"
    )]
    BadClientName(String),
    #[error("cannot write `{path}`: {cause}", path = .path.display())]
    Write { path: PathBuf, cause: io::Error },
    #[error(
        "cannot read `{path}`: {cause}; create the PKI first with `mtls pki init --dir {dir}`",
        path = .path.display(), dir = .dir.display()
    )]
    MissingCa {
        path: PathBuf,
        dir: PathBuf,
        cause: io::Error,
    },
    #[error("cannot read the certificate of `{name}` at `{path}`: {cause}", path = .path.display())]
    MissingClient {
        name: String,
        path: PathBuf,
        cause: String,
    },
    #[error("the existing CRL `{path}` cannot be read: {cause}; remove it to start a new one", path = .path.display())]
    BadCrl { path: PathBuf, cause: String },
    #[error("cannot sign the CRL: {0}")]
    SignCrl(rcgen::Error),
}

/// A certificate and its private key, PEM encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The period a certificate is valid for.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From one hour ago (tolerating clock skew) for `days` days.
    pub fn days_from_now(days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
        }
    }
}

/// What to put in an end-entity certificate.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub common_name: String,
    /// DNS names and IP addresses.
    pub subject_alt_names: Vec<String>,
    pub extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    pub validity: Validity,
}

impl LeafSpec {
    /// A TLS server certificate for `domain`, also valid for the loopback names.
    pub fn server(domain: &str) -> Self {
        LeafSpec {
            common_name: domain.to_owned(),
            subject_alt_names: vec![
                domain.to_owned(),
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ],
            extended_key_usages: vec![ExtendedKeyUsagePurpose::ServerAuth],
            validity: Validity::days_from_now(LEAF_VALIDITY_DAYS),
        }
    }

    /// A TLS client certificate whose common name is `name`.
    pub fn client(name: &str) -> Self {
        LeafSpec {
            common_name: name.to_owned(),
            subject_alt_names: Vec::new(),
            extended_key_usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
            validity: Validity::days_from_now(LEAF_VALIDITY_DAYS),
        }
    }
}

/// A certificate authority that can issue certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl Authority {
    /// A new self-signed ECDSA P-256 CA.
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let generate = |cause| PkiError::Generate {
            name: common_name.to_owned(),
            cause,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate)?;
        let params = ca_params(common_name);
        let cert = params.self_signed(&key).map_err(generate)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// An existing CA from its PEM certificate and PKCS#8 key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let load = |cause| PkiError::LoadCa { cause };
        let key = KeyPair::from_pem(key_pem).map_err(load)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(load)?;
        Ok(Authority {
            issuer,
            cert_pem: cert_pem.to_owned(),
        })
    }

    /// An intermediate CA signed by this one, with a fresh ECDSA P-256 key.
    pub fn issue_intermediate(&self, common_name: &str) -> Result<Authority, PkiError> {
        let generate = |cause| PkiError::Generate {
            name: common_name.to_owned(),
            cause,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate)?;
        let params = ca_params(common_name);
        let cert = params.signed_by(&key, &self.issuer).map_err(generate)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The rcgen issuer, for certificates this module has no spec for.
    pub fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues an end-entity certificate with a fresh ECDSA P-256 key.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, PkiError> {
        let generate = |cause| PkiError::Generate {
            name: spec.common_name.clone(),
            cause,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate)?;
        let cert = self.issue_for_key(spec, &key)?;
        Ok(Issued {
            cert_pem: cert,
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues an end-entity certificate for an existing key; returns the PEM.
    pub fn issue_for_key(&self, spec: &LeafSpec, key: &KeyPair) -> Result<String, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&spec.common_name);
        params.subject_alt_names = spec
            .subject_alt_names
            .iter()
            .map(|name| san(name))
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = spec.extended_key_usages.clone();
        params.use_authority_key_identifier_extension = true;
        params.not_before = spec.validity.not_before;
        params.not_after = spec.validity.not_after;
        let cert = params
            .signed_by(key, &self.issuer)
            .map_err(|cause| PkiError::Generate {
                name: spec.common_name.clone(),
                cause,
            })?;
        Ok(cert.pem())
    }
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    let validity = Validity::days_from_now(CA_VALIDITY_DAYS);
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn san(name: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let dns = name.try_into().map_err(|cause| PkiError::InvalidName {
        name: name.to_owned(),
        cause,
    })?;
    Ok(SanType::DnsName(dns))
}

/// Options of `mtls pki init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub dir: PathBuf,
    pub domain: String,
    pub clients: Vec<String>,
    pub force: bool,
}

/// One file written by `init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    pub path: PathBuf,
    pub private: bool,
}

/// Creates the CA, the server certificate and the client certificates in
/// `options.dir`. Nothing is written if any target exists and `force` is off.
pub fn init(options: &InitOptions) -> Result<Vec<WrittenFile>, PkiError> {
    let clients = if options.clients.is_empty() {
        vec![DEFAULT_CLIENT.to_owned()]
    } else {
        options.clients.clone()
    };
    for (i, name) in clients.iter().enumerate() {
        let reserved = name == "ca" || name == "server";
        if !is_file_safe(name) || reserved || clients[..i].contains(name) {
            return Err(PkiError::BadClientName(name.clone()));
        }
    }

    let mut stems = vec!["ca".to_owned(), "server".to_owned()];
    stems.extend(clients.iter().cloned());
    let targets: Vec<PathBuf> = stems
        .iter()
        .flat_map(|stem| {
            [
                options.dir.join(format!("{stem}.crt")),
                options.dir.join(format!("{stem}.key")),
            ]
        })
        .collect();
    if !options.force {
        let existing: Vec<PathBuf> = targets.iter().filter(|p| p.exists()).cloned().collect();
        if !existing.is_empty() {
            return Err(PkiError::WouldOverwrite(existing));
        }
    }

    let ca = Authority::generate(CA_COMMON_NAME)?;
    let mut bundles = vec![
        (
            "ca".to_owned(),
            Issued {
                cert_pem: ca.cert_pem().to_owned(),
                key_pem: ca.key_pem(),
            },
        ),
        (
            "server".to_owned(),
            ca.issue(&LeafSpec::server(&options.domain))?,
        ),
    ];
    for name in &clients {
        bundles.push((name.clone(), ca.issue(&LeafSpec::client(name))?));
    }

    fs::create_dir_all(&options.dir).map_err(|cause| PkiError::Write {
        path: options.dir.clone(),
        cause,
    })?;
    let mut written = Vec::new();
    for (stem, issued) in bundles {
        let cert_path = options.dir.join(format!("{stem}.crt"));
        write_file(&cert_path, issued.cert_pem.as_bytes(), 0o644, options.force)?;
        written.push(WrittenFile {
            path: cert_path,
            private: false,
        });
        let key_path = options.dir.join(format!("{stem}.key"));
        write_file(&key_path, issued.key_pem.as_bytes(), 0o600, options.force)?;
        written.push(WrittenFile {
            path: key_path,
            private: true,
        });
    }
    Ok(written)
}

fn is_file_safe(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Writes a file created with `mode` from the start, so a private key is
/// never readable by others, not even for a moment.
pub fn write_file(
    path: &Path,
    contents: &[u8],
    mode: u32,
    overwrite: bool,
) -> Result<(), PkiError> {
    let wrap = |cause| PkiError::Write {
        path: path.to_owned(),
        cause,
    };
    let mut options = OpenOptions::new();
    options.write(true).mode(mode);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(wrap)?;
    // An existing file keeps its old mode on open; set it explicitly.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(wrap)?;
    file.write_all(contents).map_err(wrap)?;
    Ok(())
}

/// Validity of the CRLs `revoke` and `crl` write; refresh with `mtls pki crl`.
pub const CRL_VALIDITY_DAYS: i64 = 30;

/// The CA of a PKI directory made by `init`.
pub fn load_authority(dir: &Path) -> Result<Authority, PkiError> {
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read_to_string(&path).map_err(|cause| PkiError::MissingCa {
            path,
            dir: dir.to_owned(),
            cause,
        })
    };
    Authority::from_pem(&read("ca.crt")?, &read("ca.key")?)
}

/// Issues one more client certificate from the CA in `dir`.
pub fn add_client(dir: &Path, name: &str, force: bool) -> Result<Vec<WrittenFile>, PkiError> {
    if !is_file_safe(name) || name == "ca" || name == "server" || name == "crl" {
        return Err(PkiError::BadClientName(name.to_owned()));
    }
    let ca = load_authority(dir)?;
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    if !force {
        let existing: Vec<PathBuf> = [&cert_path, &key_path]
            .into_iter()
            .filter(|p| p.exists())
            .cloned()
            .collect();
        if !existing.is_empty() {
            return Err(PkiError::WouldOverwrite(existing));
        }
    }
    let issued = ca.issue(&LeafSpec::client(name))?;
    write_file(&cert_path, issued.cert_pem.as_bytes(), 0o644, force)?;
    write_file(&key_path, issued.key_pem.as_bytes(), 0o600, force)?;
    Ok(vec![
        WrittenFile {
            path: cert_path,
            private: false,
        },
        WrittenFile {
            path: key_path,
            private: true,
        },
    ])
}

/// What `revoke` and `refresh_crl` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlWritten {
    pub path: PathBuf,
    /// Serials on the CRL, uppercase hex.
    pub revoked: Vec<String>,
    pub next_update: OffsetDateTime,
}

/// Revokes the client `name` (its `NAME.crt` in `dir`): adds its serial to
/// `dir/crl.pem`, re-signed by the CA with a new CRL number.
pub fn revoke(dir: &Path, name: &str) -> Result<CrlWritten, PkiError> {
    let path = dir.join(format!("{name}.crt"));
    let missing = |cause: String| PkiError::MissingClient {
        name: name.to_owned(),
        path: path.clone(),
        cause,
    };
    let pem = fs::read_to_string(&path).map_err(|err| missing(err.to_string()))?;
    let der = PemObject::from_pem_slice(pem.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .map_err(|err| missing(err.to_string()))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|err| missing(err.to_string()))?;
    write_crl(dir, Some(cert.serial.to_bytes_be()))
}

/// Re-signs `dir/crl.pem` with the same entries and a fresh nextUpdate.
pub fn refresh_crl(dir: &Path) -> Result<CrlWritten, PkiError> {
    write_crl(dir, None)
}

fn write_crl(dir: &Path, add_serial: Option<Vec<u8>>) -> Result<CrlWritten, PkiError> {
    use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};

    let ca = load_authority(dir)?;
    let path = dir.join("crl.pem");
    let now = OffsetDateTime::now_utc();
    let (mut entries, number) = existing_crl(&path)?;
    if let Some(serial) = add_serial
        && !entries.iter().any(|(s, _)| *s == serial)
    {
        entries.push((serial, now));
    }
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: now + Duration::days(CRL_VALIDITY_DAYS),
        crl_number: SerialNumber::from_slice(&minimal_be(number + 1)),
        issuing_distribution_point: None,
        revoked_certs: entries
            .iter()
            .map(|(serial, time)| RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial),
                revocation_time: *time,
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(ca.issuer()).map_err(PkiError::SignCrl)?;
    let pem = crl.pem().map_err(PkiError::SignCrl)?;
    write_file(&path, pem.as_bytes(), 0o644, true)?;
    Ok(CrlWritten {
        path,
        revoked: entries.iter().map(|(s, _)| hex::encode_upper(s)).collect(),
        next_update: params.next_update,
    })
}

/// Big-endian bytes without leading zeros, as DER integers want them.
fn minimal_be(number: u64) -> Vec<u8> {
    let bytes = number.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    bytes[skip..].to_vec()
}

/// The entries and CRL number of an existing CRL file, or none.
/// Revoked serials (big-endian bytes) with their revocation times.
type CrlEntries = Vec<(Vec<u8>, OffsetDateTime)>;

fn existing_crl(path: &Path) -> Result<(CrlEntries, u64), PkiError> {
    let bad = |cause: String| PkiError::BadCrl {
        path: path.to_owned(),
        cause,
    };
    let Ok(pem) = fs::read(path) else {
        return Ok((Vec::new(), 0));
    };
    let der = rustls_pki_types::CertificateRevocationListDer::from_pem_slice(&pem)
        .map_err(|err| bad(err.to_string()))?;
    let (_, crl) = x509_parser::parse_x509_crl(&der).map_err(|err| bad(err.to_string()))?;
    let entries = crl
        .iter_revoked_certificates()
        .map(|entry| {
            (
                entry.user_certificate.to_bytes_be(),
                entry.revocation_date.to_datetime(),
            )
        })
        .collect();
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n.clone()).ok())
        .unwrap_or(0);
    Ok((entries, number))
}
