//! The one boundary from command-line arguments to validated runtime settings.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

use crate::admin::parse_admin_listen;
use crate::cli::ServeArgs;
use crate::policy::{Policy, PolicyError};
use crate::proxy::forwarded_cert::{ForwardedTrust, parse_proxy};
use crate::proxy::identity_headers::{ApacheOptions, HeaderFormat};
use crate::tls::UpstreamIdentity;

/// Whether and how the server asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientAuthMode {
    /// No certificate is requested.
    Off,
    /// A certificate is requested; a client without one is still served.
    Optional,
    /// The handshake fails without a valid client certificate.
    Required,
}

impl ClientAuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMode::Off => "off",
            ClientAuthMode::Optional => "optional",
            ClientAuthMode::Required => "required",
        }
    }
}

impl fmt::Display for ClientAuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "MTLS_ENABLED has the value `{0}`; use true or false (or set CLIENT_AUTH=off|optional|required)"
    )]
    InvalidMtlsEnabled(String),
    #[error("--admin-listen / ADMIN_LISTEN: {0}")]
    InvalidAdminListen(String),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(
        "an allowlist is configured (--policy, ALLOWED_CLIENT_CERT_COMMON_NAMES or ALLOWED_CLIENT_CERT_THUMBPRINTS) but client auth is off, so no request could pass; set CLIENT_AUTH=optional or required"
    )]
    AllowlistWithoutClientAuth,
    #[error("--forward-client-cert / FORWARD_CLIENT_CERT: {0}")]
    ForwardFormat(String),
    #[error(
        "--upstream / UPSTREAM `{0}` is not a URL; write it as http://HOST:PORT or https://HOST:PORT"
    )]
    InvalidUpstream(String),
    #[error(
        "--forward-client-cert is set but there is no --upstream to forward to; set UPSTREAM=http://HOST:PORT"
    )]
    FormatsWithoutUpstream,
    #[error(
        "the `signed` identity format and --identity-signing-key-file / IDENTITY_SIGNING_KEY_FILE go together: give both or neither"
    )]
    SignedNeedsKey,
    #[error("{0}")]
    Forwarded(String),
    #[error("{0}")]
    UpstreamP12(String),
    #[error(transparent)]
    Hsts(#[from] crate::hsts::InvalidHsts),
    #[error(
        "--keylog without a FILE takes the path from SSLKEYLOGFILE, which is not set; write --keylog FILE"
    )]
    KeylogWithoutPath,
}

/// Everything `mtls serve` needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_auth: ClientAuthMode,
    pub client_ca: PathBuf,
    pub welcome_message: String,
    pub handshake_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// Where the plain-HTTP admin endpoint listens; `None` when off.
    pub admin_listen: Option<SocketAddr>,
    /// Certificate revocation lists for client certificates.
    pub crls: Vec<PathBuf>,
    /// Public paths, allowlists and per-path rules.
    pub policy: Policy,
    /// Where `policy` came from, to read it again on reload.
    pub policy_source: PolicySource,
    /// Poll the certificate, CA, CRL and policy files at this interval and
    /// reload when they change; `None` reloads on SIGHUP only.
    pub watch: Option<Duration>,
    /// RFC 5280 conformance checks on client chains beyond rustls-webpki.
    pub strict_x509: bool,
    /// The app to forward to, when `mtls serve` fronts one.
    pub upstream: Option<UpstreamConfig>,
    /// Client certificates forwarded by a trusted TLS terminator.
    pub forwarded_trust: Option<ForwardedTrust>,
    /// With `--proxy-protocol`: the peers allowed to send the header.
    pub proxy_protocol: Option<Vec<ipnet::IpNet>>,
    /// Keys shared by all replicas for TLS session tickets; the first seals.
    pub session_ticket_key_files: Vec<PathBuf>,
    pub limits: Limits,
    /// The Strict-Transport-Security value of every HTTPS answer; `None` is off.
    pub hsts: Option<hyper::header::HeaderValue>,
    /// Start even with secret files that every user may read or write.
    pub allow_insecure_key_permissions: bool,
    /// `--keylog`: where TLS secrets are appended (debugging only).
    pub keylog: Option<PathBuf>,
}

/// The policy file and the Azure-style allowlist variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySource {
    pub file: Option<PathBuf>,
    pub common_names: Option<String>,
    pub thumbprints: Option<String>,
}

impl PolicySource {
    /// Reads the policy; with no source at all, `fallback` is kept (a
    /// policy given programmatically survives a reload).
    pub fn load(&self, fallback: &Policy) -> Result<Policy, PolicyError> {
        if *self == PolicySource::default() {
            return Ok(fallback.clone());
        }
        let mut policy = match &self.file {
            Some(path) => Policy::from_file(path)?,
            None => Policy::default(),
        };
        policy.add_env_allowlists(self.common_names.as_deref(), self.thumbprints.as_deref())?;
        Ok(policy)
    }
}

/// Bounds that keep slow and hostile clients from exhausting the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most; more are closed at once.
    pub max_connections: usize,
    /// Time to send a request head, and to start the next one on an idle
    /// HTTP/1.1 keep-alive connection.
    pub header_read_timeout: Duration,
    /// Time an HTTP/1.1 client may take none of an answer that is waiting
    /// to be sent.
    pub send_timeout: Duration,
    /// HTTP/2 ping interval on idle connections.
    pub idle_timeout: Duration,
    /// Size of a request head (HTTP/1.1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_streams: 100,
        }
    }
}

/// `--upstream` and its companions, as given.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub url: hyper::Uri,
    pub timeout: Duration,
    pub formats: Vec<HeaderFormat>,
    pub apache: ApacheOptions,
    pub ca: Option<PathBuf>,
    pub identity: Option<UpstreamIdentity>,
    /// The `signed` format's HMAC key file (`X-Client-Identity`).
    pub signing_key_file: Option<PathBuf>,
    /// Largest request body forwarded (then 413).
    pub max_body_bytes: usize,
}

impl ServeConfig {
    pub fn from_args(args: ServeArgs) -> Result<Self, ConfigError> {
        let client_auth = resolve_client_auth(args.client_auth, args.mtls_enabled.as_deref())?;
        let policy_source = PolicySource {
            file: args.policy.clone(),
            common_names: args.allowed_common_names.clone(),
            thumbprints: args.allowed_thumbprints.clone(),
        };
        let policy = policy_source.load(&Policy::default())?;
        if policy.restricts() && client_auth == ClientAuthMode::Off {
            return Err(ConfigError::AllowlistWithoutClientAuth);
        }
        let proxies = args
            .trusted_proxy
            .iter()
            .map(|p| parse_proxy(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ConfigError::Forwarded)?;
        if args.proxy_protocol && proxies.is_empty() {
            return Err(ConfigError::Forwarded(
                "--proxy-protocol needs --trusted-proxy CIDR: the header is accepted only from those peers".to_owned(),
            ));
        }
        let forwarded_trust = match &args.trust_forwarded_cert {
            Some(format) => {
                let format = format.parse().map_err(ConfigError::Forwarded)?;
                if proxies.is_empty() {
                    return Err(ConfigError::Forwarded(
                        "--trust-forwarded-cert needs --trusted-proxy CIDR: the header is trusted only from those peers".to_owned(),
                    ));
                }
                if client_auth == ClientAuthMode::Off {
                    return Err(ConfigError::Forwarded(
                        "--trust-forwarded-cert needs CLIENT_AUTH=optional (or required with a proxy that presents a client certificate), so requests without a valid certificate are refused".to_owned(),
                    ));
                }
                Some(ForwardedTrust {
                    format,
                    proxies: proxies.clone(),
                })
            }
            None => None,
        };
        // `signed` is not a header family of another system: it needs a key.
        let mut signed = false;
        let formats = match args.forward_client_cert.as_deref() {
            Some(list) => {
                let others: Vec<&str> = list
                    .split(',')
                    .filter(|item| {
                        let is_signed = item.trim().eq_ignore_ascii_case("signed");
                        signed |= is_signed;
                        !is_signed
                    })
                    .collect();
                HeaderFormat::parse_list(&others.join(","))
                    .map_err(|err| ConfigError::ForwardFormat(err.to_string()))?
            }
            None => Vec::new(),
        };
        if signed != args.identity_signing_key_file.is_some() {
            return Err(ConfigError::SignedNeedsKey);
        }
        let upstream = match args.upstream {
            Some(url) => Some(UpstreamConfig {
                url: url
                    .parse()
                    .map_err(|_| ConfigError::InvalidUpstream(url.clone()))?,
                timeout: args.upstream_timeout,
                formats,
                apache: ApacheOptions {
                    underscore_names: args.apache_underscore_headers,
                    legacy_dn: args.apache_legacy_dn,
                },
                ca: args.upstream_ca,
                identity: upstream_identity(
                    args.upstream_cert,
                    args.upstream_key,
                    args.upstream_p12,
                    args.upstream_p12_password_env.as_deref(),
                )?,
                signing_key_file: args.identity_signing_key_file,
                max_body_bytes: args.max_body_bytes,
            }),
            None if !formats.is_empty() || signed => {
                return Err(ConfigError::FormatsWithoutUpstream);
            }
            None => None,
        };
        Ok(ServeConfig {
            listen: args.listen,
            cert: args.cert,
            key: args.key,
            client_auth,
            client_ca: args.client_ca,
            welcome_message: args.welcome_message,
            handshake_timeout: args.handshake_timeout,
            shutdown_timeout: args.shutdown_timeout,
            admin_listen: parse_admin_listen(&args.admin_listen)
                .map_err(ConfigError::InvalidAdminListen)?,
            crls: args.crl,
            policy,
            policy_source,
            watch: args.watch.then_some(args.watch_interval),
            strict_x509: args.strict_x509,
            upstream,
            forwarded_trust,
            proxy_protocol: args.proxy_protocol.then_some(proxies),
            session_ticket_key_files: args.session_ticket_key_file,
            limits: Limits {
                max_connections: args.max_connections.max(1),
                header_read_timeout: args.header_read_timeout,
                send_timeout: args.send_timeout,
                idle_timeout: args.idle_timeout,
                max_header_bytes: args.max_header_bytes,
                max_streams: args.max_streams,
            },
            hsts: crate::hsts::parse(&args.hsts)?,
            allow_insecure_key_permissions: args.allow_insecure_key_permissions,
            keylog: resolve_keylog(args.keylog)?,
        })
    }

    /// Settings for a server with the seed's defaults, rooted in `pki_dir`.
    pub fn with_pki_dir(pki_dir: &std::path::Path, client_auth: ClientAuthMode) -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cert: pki_dir.join("server.crt"),
            key: pki_dir.join("server.key"),
            client_auth,
            client_ca: pki_dir.join("ca.crt"),
            welcome_message: "Welcome to the mTLS Flask App!".to_owned(),
            handshake_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            admin_listen: None,
            crls: Vec::new(),
            policy: Policy::default(),
            policy_source: PolicySource::default(),
            watch: None,
            strict_x509: false,
            upstream: None,
            forwarded_trust: None,
            proxy_protocol: None,
            session_ticket_key_files: Vec::new(),
            limits: Limits::default(),
            hsts: crate::hsts::parse(crate::hsts::DEFAULT_HSTS).unwrap_or_default(),
            allow_insecure_key_permissions: false,
            keylog: None,
        }
    }
}

/// `--keylog FILE`, or bare `--keylog` with the path from SSLKEYLOGFILE.
/// The variable alone does nothing: an inherited environment must not be
/// able to turn secret logging on.
fn resolve_keylog(flag: Option<Option<PathBuf>>) -> Result<Option<PathBuf>, ConfigError> {
    match flag {
        None => Ok(None),
        Some(Some(path)) => Ok(Some(path)),
        Some(None) => std::env::var_os("SSLKEYLOGFILE")
            .filter(|path| !path.is_empty())
            .map(|path| Some(PathBuf::from(path)))
            .ok_or(ConfigError::KeylogWithoutPath),
    }
}

impl UpstreamConfig {
    /// The secret files the upstream side loads, for the permission check.
    pub fn secret_files(&self) -> Vec<(&std::path::Path, crate::secrets::SecretRole)> {
        use crate::secrets::SecretRole;
        let mut files = Vec::new();
        match &self.identity {
            Some(UpstreamIdentity::Files { key, .. }) => {
                files.push((key.as_path(), SecretRole::UpstreamKey))
            }
            Some(UpstreamIdentity::Pkcs12 { path, .. }) => {
                files.push((path.as_path(), SecretRole::UpstreamP12))
            }
            None => {}
        }
        if let Some(path) = &self.signing_key_file {
            files.push((path.as_path(), SecretRole::IdentitySigningKey));
        }
        files
    }
}

/// `--upstream-cert`/`--upstream-key`, or `--upstream-p12` with its password
/// from the named environment variable.
fn upstream_identity(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    p12: Option<PathBuf>,
    password_env: Option<&str>,
) -> Result<Option<UpstreamIdentity>, ConfigError> {
    match (cert.zip(key), p12) {
        (Some((cert, key)), None) => Ok(Some(UpstreamIdentity::Files { cert, key })),
        (None, Some(path)) => {
            let variable = password_env.ok_or_else(|| {
                ConfigError::UpstreamP12(
                    "--upstream-p12 needs --upstream-p12-password-env VAR naming the variable that holds its password".to_owned(),
                )
            })?;
            let password = std::env::var(variable).map_err(|_| {
                ConfigError::UpstreamP12(format!(
                    "--upstream-p12-password-env names `{variable}`, which is not set"
                ))
            })?;
            Ok(Some(UpstreamIdentity::Pkcs12 { path, password }))
        }
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(ConfigError::UpstreamP12(
            "give --upstream-cert/--upstream-key or --upstream-p12, not both".to_owned(),
        )),
    }
}

/// An explicit `CLIENT_AUTH` wins; `MTLS_ENABLED` is the seed's on/off
/// shorthand; without either, client auth is off (as in the seed's `.env`).
fn resolve_client_auth(
    explicit: Option<ClientAuthMode>,
    mtls_enabled: Option<&str>,
) -> Result<ClientAuthMode, ConfigError> {
    if let Some(mode) = explicit {
        return Ok(mode);
    }
    let Some(value) = mtls_enabled else {
        return Ok(ClientAuthMode::Off);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(ClientAuthMode::Required),
        "false" | "0" | "no" | "off" | "" => Ok(ClientAuthMode::Off),
        _ => Err(ConfigError::InvalidMtlsEnabled(value.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_client_auth_wins_over_mtls_enabled() {
        let mode = resolve_client_auth(Some(ClientAuthMode::Optional), Some("true")).unwrap();
        assert_eq!(mode, ClientAuthMode::Optional);
    }

    #[test]
    fn mtls_enabled_is_a_shorthand() {
        assert_eq!(
            resolve_client_auth(None, Some("true")).unwrap(),
            ClientAuthMode::Required
        );
        assert_eq!(
            resolve_client_auth(None, Some("TRUE")).unwrap(),
            ClientAuthMode::Required
        );
        assert_eq!(
            resolve_client_auth(None, Some("false")).unwrap(),
            ClientAuthMode::Off
        );
        assert_eq!(
            resolve_client_auth(None, None).unwrap(),
            ClientAuthMode::Off
        );
    }

    #[test]
    fn a_wrong_mtls_enabled_is_an_error_naming_the_variable() {
        let err = resolve_client_auth(None, Some("maybe")).unwrap_err();
        assert!(
            err.to_string()
                .contains("MTLS_ENABLED has the value `maybe`")
        );
    }
}
