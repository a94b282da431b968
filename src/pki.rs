//! A development PKI made with rcgen: an ECDSA P-256 CA, a server
//! certificate and client certificates, written as PEM files.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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
    #[error("cannot make the PKCS#12 bundle for `{name}`: {cause}")]
    Pkcs12 { name: String, cause: String },
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
    /// Also write `NAME.p12` (certificate, key and CA) for every client.
    pub p12: Option<P12Options>,
}

/// One file written by `init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    pub path: PathBuf,
    pub private: bool,
    /// Set for a PKCS#12 bundle: how it is encrypted, and the password when
    /// it was generated (to be shown to the user once).
    pub p12: Option<P12Written>,
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
    let mut targets: Vec<PathBuf> = stems
        .iter()
        .flat_map(|stem| {
            [
                options.dir.join(format!("{stem}.crt")),
                options.dir.join(format!("{stem}.key")),
            ]
        })
        .collect();
    if options.p12.is_some() {
        targets.extend(clients.iter().map(|name| p12_path(&options.dir, name)));
    }
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
    // Encode the bundles before writing anything, so a failure leaves no
    // half-written PKI behind.
    let mut p12_files = Vec::new();
    if let Some(p12) = &options.p12 {
        for (name, issued) in bundles.iter().skip(2) {
            p12_files.push(encode_client_p12(
                &options.dir,
                name,
                issued,
                ca.cert_pem(),
                p12,
            )?);
        }
    }

    // Only the owner may list or enter a directory mtls creates for keys;
    // an existing directory is left as its owner set it.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&options.dir)
        .map_err(|cause| PkiError::Write {
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
            p12: None,
        });
        let key_path = options.dir.join(format!("{stem}.key"));
        write_file(&key_path, issued.key_pem.as_bytes(), 0o600, options.force)?;
        written.push(WrittenFile {
            path: key_path,
            private: true,
            p12: None,
        });
    }
    for file in p12_files {
        written.push(file.write(options.force)?);
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
    add_client_with_p12(dir, name, force, None)
}

/// Issues one more client certificate from the CA in `dir`, and with `p12`
/// also its `NAME.p12` bundle.
pub fn add_client_with_p12(
    dir: &Path,
    name: &str,
    force: bool,
    p12: Option<&P12Options>,
) -> Result<Vec<WrittenFile>, PkiError> {
    if !is_file_safe(name) || name == "ca" || name == "server" || name == "crl" {
        return Err(PkiError::BadClientName(name.to_owned()));
    }
    let ca = load_authority(dir)?;
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    if !force {
        let bundle_path = p12.map(|_| p12_path(dir, name));
        let existing: Vec<PathBuf> = [Some(&cert_path), Some(&key_path), bundle_path.as_ref()]
            .into_iter()
            .flatten()
            .filter(|p| p.exists())
            .cloned()
            .collect();
        if !existing.is_empty() {
            return Err(PkiError::WouldOverwrite(existing));
        }
    }
    let issued = ca.issue(&LeafSpec::client(name))?;
    let bundle = p12
        .map(|options| encode_client_p12(dir, name, &issued, ca.cert_pem(), options))
        .transpose()?;
    write_file(&cert_path, issued.cert_pem.as_bytes(), 0o644, force)?;
    write_file(&key_path, issued.key_pem.as_bytes(), 0o600, force)?;
    let mut written = vec![
        WrittenFile {
            path: cert_path,
            private: false,
            p12: None,
        },
        WrittenFile {
            path: key_path,
            private: true,
            p12: None,
        },
    ];
    if let Some(bundle) = bundle {
        written.push(bundle.write(force)?);
    }
    Ok(written)
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

/// How a PKCS#12 bundle is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum P12Encryption {
    /// AES-256-CBC with PBKDF2-HMAC-SHA256 for the key and the certificates,
    /// and an HMAC-SHA256 MAC: what OpenSSL 3 writes by default.
    #[default]
    Modern,
    /// pbeWithSHAAnd3-KeyTripleDES-CBC and an HMAC-SHA1 MAC, for importers
    /// that know nothing newer (older macOS Keychain, Windows before
    /// Server 2019 / Windows 10 1709).
    Legacy,
}

impl P12Encryption {
    /// Key derivation iterations: p12-keystore's (and Java's) default for
    /// the modern scheme, OpenSSL's historical default for the legacy one.
    const fn iterations(self) -> u32 {
        match self {
            P12Encryption::Modern => 10_000,
            P12Encryption::Legacy => 2048,
        }
    }

    /// The algorithms, in words, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            P12Encryption::Modern => "AES-256-CBC, PBKDF2-HMAC-SHA256, SHA-256 MAC",
            P12Encryption::Legacy => "legacy 3DES, SHA-1 MAC",
        }
    }
}

/// A password. Its `Debug` output never shows it, so it cannot end up in a
/// log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

/// Characters of generated passwords: letters and digits without the ones
/// that are easy to confuse (0/O, 1/l/I), so it can be typed from a screen.
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
/// 24 characters of 57: about 140 bits.
const PASSWORD_LENGTH: usize = 24;

impl Password {
    pub fn new(text: impl Into<String>) -> Self {
        Password(text.into())
    }

    /// A random password from the operating system-seeded CSPRNG that
    /// p12-keystore itself uses for salts and IVs.
    pub fn generate() -> Self {
        // Bytes at or above the largest multiple of the alphabet size are
        // dropped, so every character is equally likely.
        let limit = 256 - 256 % PASSWORD_ALPHABET.len();
        let mut text = String::with_capacity(PASSWORD_LENGTH);
        while text.len() < PASSWORD_LENGTH {
            let bytes: [u8; 32] = p12_keystore::rand::random();
            for byte in bytes.map(usize::from) {
                if byte < limit && text.len() < PASSWORD_LENGTH {
                    text.push(char::from(
                        PASSWORD_ALPHABET[byte % PASSWORD_ALPHABET.len()],
                    ));
                }
            }
        }
        Password(text)
    }

    /// The password itself, for the one place that must show or use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Where the password of the `.p12` bundles comes from.
#[derive(Debug, Clone)]
pub enum P12Password {
    /// The same given password for every bundle.
    Given(Password),
    /// A new random password for each bundle, returned in [`P12Written`].
    Generate,
}

/// Options for writing `NAME.p12` next to `NAME.crt` and `NAME.key`.
#[derive(Debug, Clone)]
pub struct P12Options {
    pub password: P12Password,
    pub encryption: P12Encryption,
}

/// What was written as a PKCS#12 bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct P12Written {
    pub encryption: P12Encryption,
    /// The password, when it was generated: show it to the user once.
    pub generated_password: Option<Password>,
}

/// The path of the PKCS#12 bundle of client `name` in `dir`.
pub fn p12_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.p12"))
}

/// A PKCS#12 bundle of `issued` (its certificate and PKCS#8 private key)
/// with the certificates of `chain_pem` (intermediates, then the root) as
/// its chain, under the friendly name `alias`, encrypted with `password`.
pub fn pkcs12_bundle(
    alias: &str,
    issued: &Issued,
    chain_pem: &str,
    password: &Password,
    encryption: P12Encryption,
) -> Result<Vec<u8>, PkiError> {
    use p12_keystore::{
        Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
        PrivateKeyChain,
    };
    use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
    use sha1::{Digest, Sha1};

    let fail = |cause: String| PkiError::Pkcs12 {
        name: alias.to_owned(),
        cause,
    };
    if password.expose().is_empty() {
        return Err(fail("the password is empty".to_owned()));
    }
    let leaf = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
        .map_err(|err| fail(format!("certificate: {err}")))?;
    let mut ders = vec![leaf];
    for cert in CertificateDer::pem_slice_iter(chain_pem.as_bytes()) {
        ders.push(cert.map_err(|err| fail(format!("chain: {err}")))?);
    }
    let certs = ders
        .iter()
        .map(|der| Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| fail(format!("certificate: {err}")))?;
    let key_der = PrivatePkcs8KeyDer::from_pem_slice(issued.key_pem.as_bytes())
        .map_err(|err| fail(format!("private key (PKCS#8 expected): {err}")))?;
    let key = PrivateKey::from_der(key_der.secret_pkcs8_der())
        .map_err(|err| fail(format!("private key: {err}")))?;
    // The usual local key ID: the SHA-1 of the certificate, which ties the
    // key bag to its certificate bag.
    let local_key_id = Sha1::digest(ders[0].as_ref()).to_vec();

    let mut store = KeyStore::new();
    store.add_entry(
        alias,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
    );
    let (cipher, mac) = match encryption {
        P12Encryption::Modern => (
            EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
            MacAlgorithm::HmacSha256,
        ),
        P12Encryption::Legacy => (
            EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc,
            MacAlgorithm::HmacSha1,
        ),
    };
    store
        .writer(password.expose())
        .encryption_algorithm(cipher)
        .encryption_iterations(encryption.iterations())
        .mac_algorithm(mac)
        .mac_iterations(encryption.iterations())
        .write()
        .map_err(|err| fail(err.to_string()))
}

/// A PKCS#12 bundle encoded but not written yet.
struct PendingP12 {
    path: PathBuf,
    bytes: Vec<u8>,
    written: P12Written,
}

impl PendingP12 {
    fn write(self, overwrite: bool) -> Result<WrittenFile, PkiError> {
        write_file(&self.path, &self.bytes, 0o600, overwrite)?;
        Ok(WrittenFile {
            path: self.path,
            private: true,
            p12: Some(self.written),
        })
    }
}

fn encode_client_p12(
    dir: &Path,
    name: &str,
    issued: &Issued,
    ca_cert_pem: &str,
    options: &P12Options,
) -> Result<PendingP12, PkiError> {
    let (password, generated) = match &options.password {
        P12Password::Given(password) => (password.clone(), false),
        P12Password::Generate => (Password::generate(), true),
    };
    let bytes = pkcs12_bundle(name, issued, ca_cert_pem, &password, options.encryption)?;
    Ok(PendingP12 {
        path: p12_path(dir, name),
        bytes,
        written: P12Written {
            encryption: options.encryption,
            generated_password: generated.then_some(password),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_long_distinct_and_typeable() {
        let first = Password::generate();
        let second = Password::generate();
        assert_eq!(first.expose().len(), PASSWORD_LENGTH);
        assert!(
            first
                .expose()
                .bytes()
                .all(|b| PASSWORD_ALPHABET.contains(&b))
        );
        assert_ne!(first, second);
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let password = Password::new("hunter2-secret");
        let options = P12Options {
            password: P12Password::Given(password.clone()),
            encryption: P12Encryption::Modern,
        };
        for text in [format!("{password:?}"), format!("{options:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn a_bundle_opens_with_its_password_only_and_holds_key_and_chain() {
        let ca = Authority::generate("bundle test CA").unwrap();
        let issued = ca.issue(&LeafSpec::client("alice")).unwrap();
        let password = Password::new("correct horse");
        for encryption in [P12Encryption::Modern, P12Encryption::Legacy] {
            let bytes =
                pkcs12_bundle("alice", &issued, ca.cert_pem(), &password, encryption).unwrap();
            let store = p12_keystore::KeyStore::from_pkcs12(
                &bytes,
                "correct horse",
                p12_keystore::Pkcs12ImportPolicy::Strict,
            )
            .unwrap();
            let (alias, chain) = store.private_key_chain().expect("a key entry");
            assert_eq!(alias, "alice");
            assert_eq!(chain.certs().len(), 2, "leaf and CA");
            assert!(chain.certs()[0].subject().contains("alice"));
            assert!(chain.certs()[1].subject().contains("bundle test CA"));
            assert!(
                p12_keystore::KeyStore::from_pkcs12(
                    &bytes,
                    "wrong",
                    p12_keystore::Pkcs12ImportPolicy::Strict
                )
                .is_err()
            );
        }
        let empty = pkcs12_bundle(
            "alice",
            &issued,
            ca.cert_pem(),
            &Password::new(""),
            P12Encryption::Modern,
        );
        assert!(matches!(empty, Err(PkiError::Pkcs12 { .. })));
    }
}
