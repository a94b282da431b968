//! The `signed` identity format: `X-Client-Identity`, a compact JWS
//! (HS256) that an upstream can verify with the shared key, so it can trust
//! the identity even if others can reach it. The token is bound to the
//! request (method and path) and lives for a few seconds.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::header::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cert::CertDetails;
use crate::cert::details::SubjectAltNames;

pub const X_CLIENT_IDENTITY: HeaderName = HeaderName::from_static("x-client-identity");

/// How long a token is valid after it is issued.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(30);
/// Keys shorter than this are refused: HS256 wants at least 256 bits.
const MIN_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error(
        "cannot read the identity signing key `{path}` (--identity-signing-key-file / IDENTITY_SIGNING_KEY_FILE): {cause}",
        path = .path.display()
    )]
    Unreadable {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "the identity signing key `{path}` has {len} bytes; use at least 32 random bytes, e.g. `(umask 077; head -c 32 /dev/urandom > {path})`",
        path = .path.display()
    )]
    TooShort { path: PathBuf, len: usize },
}

/// The shared HMAC key; its bytes are never logged.
pub struct SigningKey {
    key: EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// Reads the key file: its bytes are the key (trailing newline ignored).
    pub fn from_file(path: &Path) -> Result<Self, SigningKeyError> {
        let mut bytes = std::fs::read(path).map_err(|cause| SigningKeyError::Unreadable {
            path: path.to_owned(),
            cause,
        })?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        if bytes.len() < MIN_KEY_BYTES {
            return Err(SigningKeyError::TooShort {
                path: path.to_owned(),
                len: bytes.len(),
            });
        }
        Ok(SigningKey {
            key: EncodingKey::from_secret(&bytes),
        })
    }
}

/// The claims of `X-Client-Identity`.
#[derive(Debug, Serialize)]
pub struct IdentityClaims<'a> {
    /// Always `mtls`.
    pub iss: &'static str,
    /// The client certificate's subject (RFC 4514).
    pub sub: &'a str,
    /// The client certificate's issuer (RFC 4514).
    pub cert_issuer: &'a str,
    pub sans: &'a SubjectAltNames,
    /// SHA-256 of the certificate, uppercase hex.
    pub fingerprint_sha256: &'a str,
    /// RFC 8705 confirmation: base64url SHA-256 of the certificate.
    pub cnf: Confirmation,
    /// When the certificate was verified (Unix seconds).
    pub verified_at: u64,
    pub iat: u64,
    pub exp: u64,
    /// The request the token is for: method and path (with query).
    pub htm: &'a str,
    pub htu: &'a str,
}

#[derive(Debug, Serialize)]
pub struct Confirmation {
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

/// The `X-Client-Identity` header for a verified client and one request.
pub fn identity_header(
    key: &SigningKey,
    details: &CertDetails,
    leaf_der: &[u8],
    method: &str,
    path_and_query: &str,
) -> Option<(HeaderName, HeaderValue)> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = IdentityClaims {
        iss: "mtls",
        sub: &details.subject.rfc4514,
        cert_issuer: &details.issuer.rfc4514,
        sans: &details.subject_alt_names,
        fingerprint_sha256: &details.fingerprints.sha256,
        cnf: Confirmation {
            x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(leaf_der)),
        },
        verified_at: now,
        iat: now,
        exp: now + TOKEN_LIFETIME.as_secs(),
        htm: method,
        htu: path_and_query,
    };
    let token = encode(&Header::new(Algorithm::HS256), &claims, &key.key).ok()?;
    // A compact JWS is base64url and dots: always a valid header value.
    HeaderValue::from_str(&token)
        .ok()
        .map(|value| (X_CLIENT_IDENTITY, value))
}
