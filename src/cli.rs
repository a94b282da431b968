//! Command-line definitions. Every `serve` flag also reads an environment
//! variable, and `main` loads `.env` into the environment before parsing, so
//! the precedence is flag > environment > `.env` > default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::admin::DEFAULT_ADMIN_LISTEN;
use crate::config::ClientAuthMode;
use crate::verify::Purpose;

#[derive(Debug, Parser)]
#[command(
    name = "mtls",
    version,
    about = "An HTTPS server that authenticates clients by certificate (mutual TLS), and the tools to make client certificates work."
)]
pub struct Cli {
    /// Read settings from this dotenv file instead of `./.env`.
    /// Variables already set in the environment win over the file.
    #[arg(long, global = true, value_name = "FILE", env = "ENV_FILE")]
    pub env_file: Option<PathBuf>,

    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS server.
    Serve(Box<ServeArgs>),
    /// Create and manage a development PKI (CA, server and client certificates).
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Probe a running server's admin endpoint; exit 0 when healthy, 1 when
    /// not. Needs no shell or curl, for container health checks.
    Health(HealthArgs),
    /// Decode certificates: PEM, DER or PKCS#12 files, or a server's chain.
    Inspect(InspectArgs),
    /// Validate a certificate chain offline, exactly as `mtls serve` does.
    /// Exit 0 valid, 1 invalid, 2 bad usage or unreadable input.
    Verify(VerifyArgs),
    /// Make one HTTPS request with a client certificate (curl-like)
    Client(ClientArgs),
    /// Explain step by step why an mTLS connection fails
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The URL to request: https://HOST[:PORT][/PATH].
    #[arg(value_name = "URL")]
    pub url: String,

    /// CA certificates that may issue the server's certificate (PEM bundle
    /// or DER) [default: the system's roots].
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Client certificate (PEM chain, leaf first, or DER).
    #[arg(long, value_name = "FILE", requires = "key", conflicts_with = "p12")]
    pub cert: Option<PathBuf>,

    /// Private key of --cert (PEM: PKCS#8, SEC1 or PKCS#1; or DER).
    #[arg(long, value_name = "FILE", requires = "cert", conflicts_with = "p12")]
    pub key: Option<PathBuf>,

    /// Client certificate and key as a PKCS#12 bundle (.p12/.pfx).
    #[arg(long, value_name = "FILE")]
    pub p12: Option<PathBuf>,

    /// Environment variable holding the --p12 password (without it, the
    /// password is asked for on the terminal).
    #[arg(long, value_name = "VAR", requires = "p12")]
    pub password_env: Option<String>,

    /// HTTP method [default: POST with -d, else GET].
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub method: Option<String>,

    /// Request body; `@FILE` sends a file's bytes, `@-` standard input.
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    pub data: Option<String>,

    /// Extra request header `Name: value`; repeatable.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// Print the connection, the server's chain, the client certificate
    /// and the response head to standard error.
    #[arg(short, long)]
    pub verbose: bool,

    /// Do not verify the server's certificate (for testing only).
    #[arg(short = 'k', long)]
    pub insecure: bool,

    /// Name to send as SNI and to check in the server's certificate
    /// [default: the URL's host].
    #[arg(long, value_name = "NAME")]
    pub servername: Option<String>,

    /// Connect to ADDR for HOST:PORT instead of resolving HOST, as curl's
    /// --resolve; repeatable.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Vec<String>,

    /// Time allowed for the whole exchange, e.g. `10s`, `500ms`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The URL to check: https://HOST[:PORT][/PATH]. Without it, only the
    /// client certificate is checked, offline (with --cacert: its chain too).
    #[arg(value_name = "URL", required_unless_present_any = ["cert", "p12"])]
    pub url: Option<String>,

    /// CA certificates (PEM bundle or DER) that may issue the server's
    /// certificate [default: the system's roots]; offline, the CAs the
    /// client certificate must chain to.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Client certificate (PEM chain, leaf first, or DER).
    #[arg(long, value_name = "FILE", requires = "key", conflicts_with = "p12")]
    pub cert: Option<PathBuf>,

    /// Private key of --cert (PEM: PKCS#8, SEC1 or PKCS#1; or DER).
    #[arg(long, value_name = "FILE", requires = "cert", conflicts_with = "p12")]
    pub key: Option<PathBuf>,

    /// Client certificate and key as a PKCS#12 bundle (.p12/.pfx).
    #[arg(long, value_name = "FILE")]
    pub p12: Option<PathBuf>,

    /// Environment variable holding the --p12 password (without it, the
    /// password is asked for on the terminal).
    #[arg(long, value_name = "VAR", requires = "p12")]
    pub password_env: Option<String>,

    /// Name to send as SNI and to check in the server's certificate
    /// [default: the URL's host].
    #[arg(long, value_name = "NAME")]
    pub servername: Option<String>,

    /// Connect to ADDR for HOST:PORT instead of resolving HOST, as curl's
    /// --resolve; repeatable.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Vec<String>,

    /// Print the steps as one JSON object ({"ok", "summary", "steps": [...]}).
    #[arg(long)]
    pub json: bool,

    /// Time allowed for each network phase (connect, handshake, request).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Files to decode (PEM with any number of certificates, DER, PKCS#12);
    /// `-` reads standard input.
    #[arg(value_name = "FILE", required_unless_present = "connect")]
    pub files: Vec<PathBuf>,

    /// Print `CertDetails` JSON (an array) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Environment variable holding the PKCS#12 password (without it, the
    /// password is asked for on the terminal).
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,

    /// Fetch and decode the chain a server presents (not verified).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "files")]
    pub connect: Option<String>,

    /// SNI name to send with --connect (default: the host).
    #[arg(long, value_name = "NAME", requires = "connect")]
    pub servername: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Trusted CA certificates (PEM bundle, DER or PKCS#12).
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,

    /// Intermediate certificates that may be used to build the chain; repeatable.
    #[arg(long, value_name = "FILE")]
    pub untrusted: Vec<PathBuf>,

    /// Certificate revocation lists (PEM or DER); repeatable.
    #[arg(long, value_name = "FILE")]
    pub crl: Vec<PathBuf>,

    /// What the certificate must be valid for.
    #[arg(long, value_enum, default_value_t = Purpose::Client)]
    pub purpose: Purpose,

    /// For --purpose server: the host name (or IP) it must be valid for.
    #[arg(long, value_name = "NAME")]
    pub dns_name: Option<String>,

    /// Validate at this time (RFC 3339, e.g. 2030-01-01T00:00:00Z) instead of now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,

    /// Also apply RFC 5280 conformance checks beyond rustls-webpki.
    #[arg(long)]
    pub strict: bool,

    /// Environment variable holding a PKCS#12 password.
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,

    /// The certificate to check; further certificates in the same file are
    /// used as intermediates (as a client sends its chain).
    #[arg(value_name = "LEAF")]
    pub leaf: PathBuf,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The admin address of the server to probe (0.0.0.0 is probed on 127.0.0.1).
    #[arg(long, env = "ADMIN_LISTEN", default_value = DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: String,

    /// Time to wait for the answer.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "LISTEN", default_value = "0.0.0.0:5001")]
    pub listen: SocketAddr,

    /// Server certificate chain (PEM, leaf first).
    #[arg(long, env = "SERVER_CERT", default_value = "pki/server.crt")]
    pub cert: PathBuf,

    /// Server private key (PEM: PKCS#8, SEC1 or PKCS#1).
    #[arg(long, env = "SERVER_KEY", default_value = "pki/server.key")]
    pub key: PathBuf,

    /// Client certificate authentication. Wins over MTLS_ENABLED. [default: off]
    #[arg(long, env = "CLIENT_AUTH", value_enum)]
    pub client_auth: Option<ClientAuthMode>,

    /// Seed-compatible shorthand: true means `--client-auth required`,
    /// false means `--client-auth off`.
    #[arg(long, env = "MTLS_ENABLED", value_name = "true|false")]
    pub mtls_enabled: Option<String>,

    /// CA certificates trusted to issue client certificates (PEM bundle).
    #[arg(long, env = "CLIENT_CA", default_value = "pki/ca.crt")]
    pub client_ca: PathBuf,

    /// Certificate revocation list (PEM or DER) for client certificates;
    /// repeatable, or comma-separated in CRL.
    #[arg(long, env = "CRL", value_delimiter = ',', value_name = "FILE")]
    pub crl: Vec<PathBuf>,

    /// TOML policy file: public paths, allowlist rules, per-path rules.
    #[arg(long, env = "POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Allowed client certificate common names, comma-separated (Azure style).
    #[arg(long, env = "ALLOWED_CLIENT_CERT_COMMON_NAMES", value_name = "CN,...")]
    pub allowed_common_names: Option<String>,

    /// Allowed client certificate SHA-1 thumbprints, comma-separated; any
    /// case, colons and spaces ignored (Azure style).
    #[arg(long, env = "ALLOWED_CLIENT_CERT_THUMBPRINTS", value_name = "SHA1,...")]
    pub allowed_thumbprints: Option<String>,

    /// Forward admitted requests to this app: http://HOST:PORT or
    /// https://HOST:PORT. Without it, the built-in routes answer.
    #[arg(long, env = "UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,

    /// Largest request body forwarded to the upstream, in bytes (then 413).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1 << 30)]
    pub max_body_bytes: usize,

    /// Time to wait for the upstream's response head (then 504).
    #[arg(long, env = "UPSTREAM_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// Identity headers sent to the upstream, comma-separated: apache,
    /// azure, xfcc, nginx, traefik, signed. Spoofed copies from clients are
    /// always removed, whatever is chosen.
    #[arg(long, env = "FORWARD_CLIENT_CERT", value_name = "FORMAT,...")]
    pub forward_client_cert: Option<String>,

    /// Behind another TLS terminator: read the client certificate from its
    /// header (azure: X-ARR-ClientCert, xfcc, nginx: X-SSL-Client-Cert),
    /// only from --trusted-proxy peers, and validate it like a direct one.
    #[arg(long, env = "TRUST_FORWARDED_CERT", value_name = "azure|xfcc|nginx")]
    pub trust_forwarded_cert: Option<String>,

    /// Expect a PROXY protocol header (v1 or v2) before TLS on every
    /// connection, from --trusted-proxy peers only; the client address it
    /// carries is used in logs, X-Forwarded-For and the policy.
    #[arg(long, env = "PROXY_PROTOCOL")]
    pub proxy_protocol: bool,

    /// Address or CIDR of a trusted proxy: its forwarded certificate header
    /// (--trust-forwarded-cert) or PROXY protocol header (--proxy-protocol)
    /// is believed; repeatable, or comma-separated in TRUSTED_PROXY.
    #[arg(
        long,
        env = "TRUSTED_PROXY",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub trusted_proxy: Vec<String>,

    /// Key file (32+ random bytes) for the `signed` format's
    /// `X-Client-Identity` HMAC-SHA256 JWS.
    #[arg(long, env = "IDENTITY_SIGNING_KEY_FILE", value_name = "FILE")]
    pub identity_signing_key_file: Option<PathBuf>,

    /// Send the apache headers with underscores (SSL_CLIENT_S_DN) instead
    /// of hyphens (SSL-Client-S-DN).
    #[arg(long, env = "APACHE_UNDERSCORE_HEADERS")]
    pub apache_underscore_headers: bool,

    /// Send apache DNs in the legacy OpenSSL form (/C=US/CN=Grace Hopper),
    /// as mod_ssl's LegacyDNStringFormat.
    #[arg(long, env = "APACHE_LEGACY_DN")]
    pub apache_legacy_dn: bool,

    /// CA bundle trusted for an https upstream (default: the system's roots).
    #[arg(long, env = "UPSTREAM_CA", value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,

    /// Client certificate for an upstream that requires mTLS.
    #[arg(
        long,
        env = "UPSTREAM_CERT",
        value_name = "FILE",
        requires = "upstream_key"
    )]
    pub upstream_cert: Option<PathBuf>,

    /// Private key of --upstream-cert.
    #[arg(
        long,
        env = "UPSTREAM_KEY",
        value_name = "FILE",
        requires = "upstream_cert"
    )]
    pub upstream_key: Option<PathBuf>,

    /// Client certificate and key for an mTLS upstream as a PKCS#12 bundle,
    /// read into memory only.
    #[arg(
        long,
        env = "UPSTREAM_P12",
        value_name = "FILE",
        conflicts_with = "upstream_cert"
    )]
    pub upstream_p12: Option<PathBuf>,

    /// Environment variable holding the --upstream-p12 password.
    #[arg(long, env = "UPSTREAM_P12_PASSWORD_ENV", value_name = "VAR")]
    pub upstream_p12_password_env: Option<String>,

    /// Also refuse client chains that break RFC 5280 rules rustls-webpki
    /// does not enforce (as `mtls verify --strict`).
    #[arg(long, env = "STRICT_X509")]
    pub strict_x509: bool,

    /// Body text of `GET /`.
    #[arg(
        long,
        env = "WELCOME_MESSAGE",
        default_value = "Welcome to the mTLS Flask App!"
    )]
    pub welcome_message: String,

    /// Time a client has to complete the TLS handshake, e.g. `10s`, `500ms`.
    #[arg(long, env = "HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Plain-HTTP admin endpoint (/healthz, /readyz) for probes, or `off`.
    /// Keep it on a private address: it is not protected by mTLS.
    #[arg(long, env = "ADMIN_LISTEN", default_value = DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: String,

    /// Reload the certificate, key, client CAs, CRLs and policy when their
    /// files change (polled), besides on SIGHUP.
    #[arg(long, env = "WATCH", default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    pub watch: bool,

    /// How often --watch looks at the files.
    #[arg(long, env = "WATCH_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub watch_interval: Duration,

    /// Seal TLS session tickets with this key (32+ random bytes), the same
    /// file on every replica, so clients resume on any of them. Repeatable
    /// for rotation: the first key seals, all open. Without it, sessions
    /// resume only on the process that made them.
    #[arg(
        long,
        env = "SESSION_TICKET_KEY_FILE",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub session_ticket_key_file: Vec<PathBuf>,

    /// Threads that serve connections (1 to 1024). By default one per core
    /// the process may use (this follows `taskset` and a container's CPU
    /// limit). With 1, the accept loop and every connection run on the main
    /// thread and no work is handed between threads, which is cheapest on
    /// one core.
    #[arg(long, env = "WORKER_THREADS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,

    /// Open connections at most; beyond it new connections are closed at
    /// once (counted in mtls_connections_refused_total).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Time a client has to send a request head; also how long an idle
    /// HTTP/1.1 keep-alive connection waits for the next request.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Time a client may leave an answer unread: when the server has more
    /// to send and the client has taken none of it for this long, the
    /// HTTP/1.1 connection is closed, the HTTP/2 stream reset (nginx's
    /// send_timeout).
    #[arg(long, env = "SEND_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub send_timeout: Duration,

    /// An HTTP/2 connection with no stream open this long is closed; also
    /// the interval of HTTP/2 keep-alive pings.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Largest request head accepted, in bytes (HTTP/1.1 and HTTP/2).
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = 65_536)]
    pub max_header_bytes: usize,

    /// Concurrent HTTP/2 streams per connection.
    #[arg(long, env = "MAX_STREAMS", default_value_t = 100)]
    pub max_streams: u32,

    /// Time in-flight requests get to finish after SIGINT/SIGTERM.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Strict-Transport-Security value sent with every HTTPS answer (an
    /// upstream's own header is kept), or `off`. Add `; includeSubDomains`
    /// only when every subdomain serves HTTPS.
    #[arg(long, env = "HSTS", default_value = crate::hsts::DEFAULT_HSTS, value_name = "VALUE|off")]
    pub hsts: String,

    /// Start even when a private key or other secret file is readable or
    /// writable by every user of the machine (it is refused otherwise).
    #[arg(long, env = "ALLOW_INSECURE_KEY_PERMISSIONS")]
    pub allow_insecure_key_permissions: bool,

    /// DEBUGGING ONLY: append the TLS session secrets to FILE (NSS key log
    /// format, created 0600) so Wireshark can decrypt the traffic. Without
    /// FILE, the path in SSLKEYLOGFILE; that variable is ignored without
    /// this flag. Deliberately no variable of its own.
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    pub keylog: Option<Option<PathBuf>>,
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create a CA, a server certificate and client certificates.
    Init(PkiInitArgs),
    /// Issue one more client certificate from an existing PKI's CA.
    Client(PkiClientArgs),
    /// Revoke a client certificate: add it to DIR/crl.pem (re-signed).
    Revoke(PkiRevokeArgs),
    /// Re-sign DIR/crl.pem with the same entries and a fresh nextUpdate.
    Crl(PkiDirArgs),
}

#[derive(Debug, Args)]
pub struct PkiDirArgs {
    /// The PKI directory (made by `mtls pki init`).
    #[arg(long, default_value = "pki")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct PkiClientArgs {
    /// Common name of the client; the files are NAME.crt, NAME.key and
    /// NAME.p12.
    pub name: String,
    #[command(flatten)]
    pub dir: PkiDirArgs,
    /// Overwrite an existing NAME.crt / NAME.key / NAME.p12.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub p12: PkiP12Args,
}

/// The PKCS#12 bundle (NAME.p12: certificate, key and CA certificate)
/// written for every client, for browsers and keychains.
#[derive(Debug, Args)]
pub struct PkiP12Args {
    /// Environment variable holding the password of the .p12 bundles
    /// [default: a random password for each bundle, printed once].
    #[arg(long, value_name = "VAR")]
    pub p12_password_env: Option<String>,

    /// Encrypt the .p12 bundles with 3DES and a SHA-1 MAC instead of
    /// AES-256-CBC, PBKDF2-HMAC-SHA256 and a SHA-256 MAC, for older macOS
    /// and Windows importers.
    #[arg(long)]
    pub p12_legacy: bool,
}

#[derive(Debug, Args)]
pub struct PkiRevokeArgs {
    /// The client to revoke (its certificate is DIR/NAME.crt).
    pub name: String,
    #[command(flatten)]
    pub dir: PkiDirArgs,
}

#[derive(Debug, Args)]
pub struct PkiInitArgs {
    /// Directory to write the files into.
    #[arg(long, default_value = "pki")]
    pub dir: PathBuf,

    /// Host name of the server certificate (also valid: localhost, 127.0.0.1, ::1).
    #[arg(long, default_value = "api.flaskmtlsauth.com")]
    pub domain: String,

    /// A client certificate to issue with this common name, written as
    /// NAME.crt, NAME.key and NAME.p12; repeatable. [default: client]
    #[arg(long = "client", value_name = "NAME")]
    pub clients: Vec<String>,

    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub p12: PkiP12Args,
}

/// Parses `10s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write e.g. 10s, 500ms or 2m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(number)),
        "ms" => Ok(Duration::from_millis(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(format!(
            "`{text}` has an unknown unit `{unit}`; use ms, s or m"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
