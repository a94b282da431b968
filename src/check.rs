//! `mtls check`: one mTLS connection taken apart, step by step, against any
//! TLS server, with the cause and the fix of every step that fails.
//!
//! 1. name resolution and TCP connect;
//! 2. the server's chain, verified by rustls' WebPKI verifier against
//!    `--cacert` or the system's roots (never weakened: a rejected chain
//!    ends the handshake, and no request is sent);
//! 3. the server's CertificateRequest: the CA names it accepts;
//! 4. the client identity, offline: key match, X.509 version, clientAuth,
//!    validity, the chain sent, and the signature schemes the server accepts;
//! 5. the handshake result, including the TLS 1.3 alert a server sends
//!    after the handshake when it refuses the client certificate;
//! 6. the HTTP answer, made by `mtls client`'s code ([`crate::client::send`])
//!    on a second connection, with the JSON reason of `mtls serve`'s 403.
//!
//! Without a URL only step 4 runs, plus the chain check of the client
//! certificate against `--cacert` as a server does it (purpose client).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::{
    ClientSessionStore, ResolvesClientCert, Resumption, Tls12ClientSessionValue,
    Tls13ClientSessionValue, WebPkiServerVerifier,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, NamedGroup, RootCertStore, SignatureScheme,
};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::cert::{CertDetails, dn_der_to_rfc4514};
use crate::client::{self, ClientRequest, Identity};
use crate::client::{ChainRecorder, ServerSeen};
use crate::input;
use crate::tls;
use crate::verify::{self, Purpose, Verification, VerifyError};

/// What to check, as given on the command line.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    /// `https://HOST[:PORT][/PATH]`; `None`: offline, the identity only.
    pub url: Option<String>,
    /// Trusted CAs (PEM bundle or DER): for the server's chain online, for
    /// the client's chain offline. `None`: the system's roots online.
    pub cacert: Option<PathBuf>,
    pub identity: Option<Identity>,
    /// SNI and the name checked in the server's certificate.
    pub servername: Option<String>,
    /// `--resolve HOST:PORT:ADDR[,ADDR...]`, as `mtls client` takes it.
    pub resolve: Vec<String>,
    /// For each network phase: connect, handshake, the HTTP exchange.
    pub timeout: Duration,
}

/// One step of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `connect`, `server_certificate`, `certificate_request`,
    /// `client_certificate`, `client_chain`, `handshake` or `http`.
    pub step: &'static str,
    pub ok: bool,
    pub summary: String,
    pub cause: Option<String>,
    pub fix: Option<String>,
    pub details: Value,
    /// Extra lines of the text form (the JSON has them in `details`).
    #[serde(skip)]
    pub lines: Vec<String>,
}

impl Step {
    fn new(step: &'static str, ok: bool, summary: impl Into<String>) -> Step {
        Step {
            step,
            ok,
            summary: summary.into(),
            cause: None,
            fix: None,
            details: json!({}),
            lines: Vec::new(),
        }
    }

    fn failed(
        step: &'static str,
        summary: impl Into<String>,
        cause: impl Into<String>,
        fix: impl Into<String>,
    ) -> Step {
        Step {
            cause: Some(cause.into()),
            fix: Some(fix.into()),
            ..Step::new(step, false, summary)
        }
    }

    fn details(mut self, details: Value) -> Step {
        self.details = details;
        self
    }

    /// The number and name people read in the text form.
    fn label(&self) -> (&'static str, &'static str) {
        match self.step {
            "connect" => ("1", "connect"),
            "server_certificate" => ("2", "server certificate"),
            "certificate_request" => ("3", "certificate request"),
            "client_certificate" => ("4", "client certificate"),
            "client_chain" => ("4b", "client chain"),
            "handshake" => ("5", "handshake"),
            "http" => ("6", "http"),
            other => ("?", other),
        }
    }
}

/// The whole check.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The URL checked; `null` offline.
    pub url: Option<String>,
    /// Every step passed (online: the request succeeded).
    pub ok: bool,
    pub summary: String,
    pub steps: Vec<Step>,
}

/// Bad arguments or unusable files (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(text: impl Into<String>) -> UsageError {
    UsageError(text.into())
}

const HOW_TO_SEND: &str =
    "pass a client certificate with --cert FILE --key FILE, or --p12 FILE --password-env VAR";

/// Runs the check. Only bad usage is an error; everything the check finds
/// is in the report.
pub async fn run(request: &CheckRequest) -> Result<Report, UsageError> {
    let target = match &request.url {
        Some(url) => Some(Target::parse(url, request)?),
        None if request.identity.is_none() => {
            return Err(usage(
                "nothing to check: give a URL (https://HOST[:PORT][/PATH]), or a client identity (--cert FILE --key FILE, or --p12 FILE) to check offline",
            ));
        }
        None => None,
    };
    let identity = match &request.identity {
        Some(identity) => Some(ClientIdentity::load(identity)?),
        None => None,
    };
    let report = match target {
        Some(target) => {
            let trust = Trust::load(request.cacert.as_deref())?;
            online(request, &target, &trust, identity.as_ref()).await
        }
        None => {
            let trusted = match &request.cacert {
                Some(path) => Some(read_cacert(path)?),
                None => None,
            };
            let identity = identity.expect("offline mode has an identity");
            offline(
                &identity,
                trusted
                    .as_ref()
                    .map(|(certs, what)| (&certs[..], &what[..])),
            )
        }
    };
    Ok(report)
}

// ------------------------------------------------------------------ input

/// The URL taken apart, with the address `--resolve` gives for it.
struct Target {
    url: String,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    resolved: Option<Vec<IpAddr>>,
}

impl Target {
    fn parse(url: &str, request: &CheckRequest) -> Result<Target, UsageError> {
        let bad = |why: &str| {
            usage(format!(
                "`{url}` {why}; write e.g. https://api.flaskmtlsauth.com:5001/"
            ))
        };
        let uri: hyper::Uri = url.parse().map_err(|_| bad("is not a URL"))?;
        match uri.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => {}
            Some(_) => return Err(bad("is not an https:// URL")),
            None => return Err(bad("has no scheme")),
        }
        let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("has user information, which is not supported"));
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        let port = authority.port_u16().unwrap_or(443);
        let name = request.servername.as_deref().unwrap_or(&host);
        let server_name = ServerName::try_from(name.to_owned()).map_err(|_| {
            usage(format!(
                "`{name}` is not a valid server name (a DNS name or an IP address)"
            ))
        })?;
        let mut resolved = None;
        for entry in &request.resolve {
            let (entry_host, entry_port, addrs) =
                client::parse_resolve(entry).map_err(|err| usage(err.to_string()))?;
            if resolved.is_none()
                && entry_port == port
                && (entry_host == "*" || entry_host.eq_ignore_ascii_case(&host))
            {
                resolved = Some(addrs);
            }
        }
        Ok(Target {
            url: url.to_owned(),
            host,
            port,
            server_name,
            resolved,
        })
    }

    fn server_name_text(&self) -> String {
        server_name_text(&self.server_name)
    }
}

fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(dns) => dns.as_ref().to_owned(),
        ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
        _ => "(unknown)".to_owned(),
    }
}

/// `--cacert`: the certificates and how to name them.
fn read_cacert(path: &Path) -> Result<(Vec<CertificateDer<'static>>, String), UsageError> {
    let bytes = input::read(path).map_err(|err| usage(format!("--cacert: {err}")))?;
    let certs = input::certificates(path, &bytes, &|| None)
        .map_err(|err| usage(format!("--cacert: {err}")))?;
    let what = format!(
        "--cacert {} ({} certificate{})",
        path.display(),
        certs.len(),
        if certs.len() == 1 { "" } else { "s" }
    );
    Ok((certs, what))
}

/// The trust anchors for the server's chain.
struct Trust {
    roots: Arc<RootCertStore>,
    /// `--cacert ca.crt (1 certificate)`, `the system's roots (140 CA certificates)`.
    what: String,
    from_cacert: bool,
}

impl Trust {
    fn load(cacert: Option<&Path>) -> Result<Trust, UsageError> {
        let (certs, what, from_cacert) = match cacert {
            Some(path) => {
                let (certs, what) = read_cacert(path)?;
                (certs, what, true)
            }
            None => {
                // Unreadable system certificates are skipped, as curl does.
                let certs = rustls_native_certs::load_native_certs().certs;
                let what = format!(
                    "the system's roots ({} CA certificate{})",
                    certs.len(),
                    if certs.len() == 1 { "" } else { "s" }
                );
                (certs, what, false)
            }
        };
        let mut roots = RootCertStore::empty();
        for (index, cert) in certs.iter().enumerate() {
            let added = roots.add(cert.clone());
            if let (Err(err), true) = (added, from_cacert) {
                return Err(usage(format!(
                    "--cacert: certificate #{} cannot be a trust anchor: {err}",
                    index + 1
                )));
            }
        }
        if roots.is_empty() {
            return Err(usage(
                "no trusted CA certificates found on this system; pass the server's CA with --cacert FILE",
            ));
        }
        Ok(Trust {
            roots: Arc::new(roots),
            what,
            from_cacert,
        })
    }
}

// ---------------------------------------------------------- client identity

/// The client identity as read from its files, and what is wrong with it.
struct ClientIdentity {
    /// `--cert client.crt`, `--p12 client.p12`.
    source: String,
    chain: Vec<CertificateDer<'static>>,
    /// One per certificate of `chain`; `None` when it cannot be decoded.
    details: Vec<Option<CertDetails>>,
    /// rustls' signing key, or why rustls cannot use the key.
    key: Result<Arc<dyn SigningKey>, String>,
    /// Whether the key belongs to the leaf (`None`: cannot tell).
    key_matches: Option<bool>,
}

impl ClientIdentity {
    fn load(identity: &Identity) -> Result<ClientIdentity, UsageError> {
        let (source, chain, key) = match identity {
            Identity::Files { cert, key } => {
                let bytes = input::read(cert).map_err(|err| usage(format!("--cert: {err}")))?;
                let chain = input::certificates(cert, &bytes, &|| None)
                    .map_err(|err| usage(format!("--cert: {err}")))?;
                (
                    format!("--cert {}", cert.display()),
                    chain,
                    read_private_key(key)?,
                )
            }
            Identity::Pkcs12 { path, password } => {
                let bytes = input::read(path).map_err(|err| usage(format!("--p12: {err}")))?;
                let (chain, key) = input::pkcs12_identity(path, &bytes, password)
                    .map_err(|err| usage(format!("--p12: {err}")))?;
                (format!("--p12 {}", path.display()), chain, key)
            }
        };
        let details: Vec<Option<CertDetails>> = chain
            .iter()
            .map(|der| CertDetails::from_der(der).ok())
            .collect();
        if details.first().is_none_or(Option::is_none) {
            return Err(usage(format!(
                "{source}: the first certificate cannot be decoded as X.509"
            )));
        }
        let key = tls::provider()
            .key_provider
            .load_private_key(key)
            .map_err(|err| err.to_string());
        let key_matches = key
            .as_ref()
            .ok()
            .and_then(|key| same_public_key(key.as_ref(), &chain[0]));
        Ok(ClientIdentity {
            source,
            chain,
            details,
            key,
            key_matches,
        })
    }

    fn leaf(&self) -> &CertDetails {
        self.details[0].as_ref().expect("checked in load")
    }

    fn subject(&self) -> &str {
        &self.leaf().subject.rfc4514
    }

    fn is_v1(&self) -> bool {
        self.leaf().version < 3
    }

    fn lacks_client_auth(&self) -> bool {
        let eku = &self.leaf().extended_key_usage;
        !eku.is_empty() && !eku.iter().any(|e| e == "clientAuth")
    }

    /// The issuer names along the chain that will be sent.
    fn issuers(&self) -> Vec<String> {
        self.details
            .iter()
            .flatten()
            .map(|d| d.issuer.rfc4514.clone())
            .collect()
    }

    /// The issuer of the last certificate sent: the one the server must
    /// know (or reach from its trust anchors).
    fn top_issuer(&self) -> String {
        self.details
            .iter()
            .rev()
            .flatten()
            .next()
            .map(|d| d.issuer.rfc4514.clone())
            .unwrap_or_default()
    }

    /// Only the leaf is sent, and it was not issued by itself: an
    /// intermediate CA may be missing.
    fn leaf_only_from_another_ca(&self) -> bool {
        self.chain.len() == 1 && !self.leaf().self_signed
    }

    /// Why the handshake cannot be attempted with this identity, if so.
    fn unusable(&self) -> Option<String> {
        if self.is_v1() {
            return Some(format!(
                "the client certificate {} is X.509 version {}: rustls will not load it as a client identity, so the handshake cannot be attempted with it (rustls-based servers and many others would refuse it anyway)",
                self.subject(),
                self.leaf().version
            ));
        }
        if let Err(err) = &self.key {
            return Some(format!(
                "rustls cannot use the private key ({err}), so the certificate cannot be sent"
            ));
        }
        if self.key_matches == Some(false) {
            return Some(
                "the private key does not belong to the certificate: rustls refuses such a pair (a server would answer with the alert decrypt_error)".to_owned(),
            );
        }
        None
    }

    /// The identity the handshake offers, when it can be used.
    fn certified_key(&self) -> Option<Arc<CertifiedKey>> {
        if self.unusable().is_some() {
            return None;
        }
        let key = self.key.as_ref().ok()?.clone();
        Some(Arc::new(CertifiedKey::new(self.chain.clone(), key)))
    }

    /// `EC P-256`, `RSA 2048 bits`.
    fn key_text(&self) -> String {
        let key = &self.leaf().public_key;
        match (&key.curve, key.bits) {
            (Some(curve), _) => format!("{} {curve}", key.algorithm),
            (None, Some(bits)) => format!("{} {bits} bits", key.algorithm),
            _ => key.algorithm.clone(),
        }
    }
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, UsageError> {
    input::private_key(path).map_err(usage)
}

/// Whether the key's public half is the certificate's. Compares the key
/// bits themselves, so it also works for certificates rustls will not
/// parse (X.509 v1).
fn same_public_key(key: &dyn SigningKey, leaf: &[u8]) -> Option<bool> {
    let spki = key.public_key()?;
    let (_, ours) = SubjectPublicKeyInfo::from_der(spki.as_ref()).ok()?;
    let (_, cert) = X509Certificate::from_der(leaf).ok()?;
    Some(ours.subject_public_key.data == cert.public_key().subject_public_key.data)
}

/// One finding of step 4.
struct Finding {
    check: &'static str,
    ok: bool,
    text: String,
    fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, text: String) -> Finding {
        Finding {
            check,
            ok: true,
            text,
            fix: None,
        }
    }

    fn bad(check: &'static str, text: String, fix: String) -> Finding {
        Finding {
            check,
            ok: false,
            text,
            fix: Some(fix),
        }
    }
}

/// Step 4: the identity offline, and against the server's signature
/// schemes when its certificate request is known.
fn client_certificate_step(id: &ClientIdentity, request: Option<&CertRequest>) -> Step {
    let leaf = id.leaf();
    let mut findings = Vec::new();

    findings.push(match (&id.key, id.key_matches) {
        (Err(err), _) => Finding::bad(
            "key",
            format!("rustls cannot use the private key: {err}"),
            "use an ECDSA P-256/P-384, Ed25519 or RSA (2048 bits or more) key".to_owned(),
        ),
        (Ok(_), Some(false)) => Finding::bad(
            "key",
            "the private key does not match the certificate (it is the key of another certificate)".to_owned(),
            "pass the key that was generated with this certificate (`openssl x509 -noout -pubkey -in CERT` and `openssl pkey -pubout -in KEY` print the same key for a matching pair)".to_owned(),
        ),
        (Ok(_), Some(true)) => Finding::ok(
            "key",
            format!("the private key matches the certificate ({})", id.key_text()),
        ),
        (Ok(_), None) => Finding::ok(
            "key",
            format!(
                "the private key is usable ({}); whether it matches cannot be told",
                id.key_text()
            ),
        ),
    });

    findings.push(if id.is_v1() {
        Finding::bad(
            "version",
            format!(
                "X.509 version {}: rustls will not load it as a client identity, and rustls-based servers (mtls serve included) and many others refuse it; `openssl x509 -req` without extensions makes such certificates",
                leaf.version
            ),
            "issue a version 3 certificate: `mtls pki client NAME`, or add `-extfile` with `extendedKeyUsage = clientAuth` to the `openssl x509 -req` command".to_owned(),
        )
    } else {
        Finding::ok("version", "X.509 version 3".to_owned())
    });

    let eku = &leaf.extended_key_usage;
    findings.push(if eku.iter().any(|e| e == "clientAuth") {
        Finding::ok("client_auth", "extended key usage clientAuth".to_owned())
    } else if eku.is_empty() {
        Finding::ok(
            "client_auth",
            "no extended key usage extension (any purpose: rustls accepts it; some servers insist on clientAuth)".to_owned(),
        )
    } else {
        Finding::bad(
            "client_auth",
            format!(
                "the clientAuth extended key usage is missing (it has: {}); servers refuse it for client authentication",
                eku.join(", ")
            ),
            "issue a certificate with extendedKeyUsage = clientAuth (`mtls pki client NAME` does)"
                .to_owned(),
        )
    });

    findings.push(if leaf.valid_now {
        Finding::ok(
            "validity",
            format!(
                "valid until {} ({} days left)",
                leaf.not_after, leaf.expires_in_days
            ),
        )
    } else if leaf.expires_in_days < 0 {
        Finding::bad(
            "validity",
            format!(
                "expired at {} ({} days ago)",
                leaf.not_after, -leaf.expires_in_days
            ),
            "renew the certificate (with the dev PKI: `mtls pki client NAME --force`)".to_owned(),
        )
    } else {
        Finding::bad(
            "validity",
            format!("not valid before {}", leaf.not_before),
            "check the clocks of this machine and of the CA, or wait until it is valid".to_owned(),
        )
    });

    findings.push(chain_finding(id));

    if let (Some(request), Ok(key)) = (request, &id.key) {
        let schemes = request
            .schemes
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>();
        findings.push(match key.choose_scheme(&request.schemes) {
            Some(signer) => Finding::ok(
                "signature_scheme",
                format!(
                    "the key signs with {:?}, which the server accepts",
                    signer.scheme()
                ),
            ),
            None => Finding::bad(
                "signature_scheme",
                format!(
                    "the {} key cannot sign with any signature scheme the server accepts ({})",
                    id.key_text(),
                    schemes.join(", ")
                ),
                "use a client key of a type the server accepts (ECDSA P-256 is the most widely accepted)".to_owned(),
            ),
        });
    }

    let problems: Vec<&Finding> = findings.iter().filter(|f| !f.ok).collect();
    let who = format!("{} (issuer {})", leaf.subject.rfc4514, leaf.issuer.rfc4514);
    let details = json!({
        "source": id.source,
        "subject": leaf.subject.rfc4514,
        "issuer": leaf.issuer.rfc4514,
        "version": leaf.version,
        "not_before": leaf.not_before,
        "not_after": leaf.not_after,
        "key": id.key_text(),
        "extended_key_usage": leaf.extended_key_usage,
        "chain_sent": id.details.iter().map(|d| d.as_ref().map(|d| d.subject.rfc4514.clone())).collect::<Vec<_>>(),
        "checks": findings.iter().map(|f| json!({"check": f.check, "ok": f.ok, "detail": f.text})).collect::<Vec<_>>(),
    });
    let lines = findings
        .iter()
        .map(|f| format!("{} {}", mark(f.ok), f.text))
        .collect();
    let mut step = if problems.is_empty() {
        Step::new(
            "client_certificate",
            true,
            format!("{who}, {}, from {}", id.key_text(), id.source),
        )
    } else {
        Step::failed(
            "client_certificate",
            format!(
                "{who} from {}: {} problem{}",
                id.source,
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            ),
            problems
                .iter()
                .map(|f| f.text.clone())
                .collect::<Vec<_>>()
                .join("; "),
            problems
                .iter()
                .filter_map(|f| f.fix.clone())
                .collect::<Vec<_>>()
                .join("; "),
        )
    };
    step.lines = lines;
    step.details(details)
}

/// What the chain in the certificate file looks like.
fn chain_finding(id: &ClientIdentity) -> Finding {
    let names: Vec<String> = id
        .details
        .iter()
        .map(|d| {
            d.as_ref()
                .map(|d| d.subject.rfc4514.clone())
                .unwrap_or_else(|| "(undecodable)".to_owned())
        })
        .collect();
    for (position, pair) in id.details.windows(2).enumerate() {
        if let [Some(child), Some(parent)] = pair
            && child.issuer.rfc4514 != parent.subject.rfc4514
        {
            return Finding::bad(
                "chain",
                format!(
                    "the certificates in {} are out of order: #{} ({}) was not issued by #{} ({})",
                    id.source,
                    position + 1,
                    child.subject.rfc4514,
                    position + 2,
                    parent.subject.rfc4514
                ),
                "put the leaf first, then its issuer, then that one's issuer".to_owned(),
            );
        }
    }
    for d in id.details.iter().skip(1).flatten() {
        if !d.valid_now {
            return Finding::bad(
                "chain",
                format!(
                    "the intermediate {} sent along is not valid now (valid {} to {})",
                    d.subject.rfc4514, d.not_before, d.not_after
                ),
                "replace the intermediate with its current certificate from the CA".to_owned(),
            );
        }
    }
    let text = if names.len() == 1 {
        "chain sent: the leaf only".to_owned()
    } else {
        format!(
            "chain sent: the leaf and {} more: {}",
            names.len() - 1,
            names[1..].join(", ")
        )
    };
    Finding::ok("chain", text)
}

/// Offline: step 4 and, with `--cacert`, the chain as a server checks it.
fn offline(id: &ClientIdentity, trusted: Option<(&[CertificateDer<'static>], &str)>) -> Report {
    let mut steps = vec![client_certificate_step(id, None)];
    if let Some((trusted, what)) = trusted {
        steps.push(client_chain_step(id, trusted, what));
    }
    let ok = steps.iter().all(|s| s.ok);
    let summary = match steps.iter().find(|s| !s.ok) {
        Some(step) => failed_summary(step),
        None if steps.len() == 2 => format!(
            "OK: the client certificate {} is usable and chains to a CA in --cacert",
            id.subject()
        ),
        None => format!(
            "OK: the client certificate {} is usable (pass --cacert FILE to check its chain too)",
            id.subject()
        ),
    };
    Report {
        url: None,
        ok,
        summary,
        steps,
    }
}

/// The client chain verified as `mtls serve` verifies it (purpose client).
fn client_chain_step(id: &ClientIdentity, trusted: &[CertificateDer<'static>], what: &str) -> Step {
    let details = json!({"trusted": what});
    if id.is_v1() {
        return Step::failed(
            "client_chain",
            format!("{} cannot be verified", id.subject()),
            "it is X.509 version 1: rustls-webpki refuses it before looking at its chain",
            "issue a version 3 certificate (`mtls pki client NAME`)",
        )
        .details(details);
    }
    let verification = Verification {
        trusted,
        intermediates: &id.chain[1..],
        crls: &[],
        purpose: Purpose::Client,
        dns_name: None,
        at: UnixTime::now(),
        strict: false,
    };
    match verification.run(&id.chain[0]) {
        Ok(path) => Step::new(
            "client_chain",
            true,
            format!(
                "verified as a server would (clientAuth): {}",
                path.join(" -> ")
            ),
        )
        .details(json!({"trusted": what, "path": path})),
        Err(VerifyError::Invalid(reason)) | Err(VerifyError::Unusable(reason)) => {
            let fix = if !id.leaf().valid_now || id.lacks_client_auth() {
                "see step 4".to_owned()
            } else if id.leaf_only_from_another_ca() {
                format!(
                    "use a certificate issued by a CA in {what}; if {} is an intermediate CA, append its certificate to the certificate file after the leaf",
                    id.top_issuer()
                )
            } else {
                format!("use a certificate issued by a CA in {what}")
            };
            Step::failed(
                "client_chain",
                format!("{} does not verify against {what}", id.subject()),
                reason,
                fix,
            )
            .details(details)
        }
    }
}

// ------------------------------------------------------------------ online

async fn online(
    request: &CheckRequest,
    target: &Target,
    trust: &Trust,
    id: Option<&ClientIdentity>,
) -> Report {
    let client_step = |request: Option<&CertRequest>| match id {
        Some(id) => client_certificate_step(id, request),
        None => Step::new(
            "client_certificate",
            true,
            format!("none given ({HOW_TO_SEND} to send one)"),
        )
        .details(json!({"given": false})),
    };
    let (connect, tcp) = connect_step(target, request.timeout).await;
    let Some(tcp) = tcp else {
        // Step 4 is offline: still worth knowing.
        return finish(target, vec![connect, client_step(None)], false);
    };
    let mut steps = vec![connect];

    let probe = Probe::new(trust, id.and_then(ClientIdentity::certified_key));
    let handshake = probe.handshake(target, tcp, request.timeout).await;
    let sent = handshake.request.as_ref().is_some_and(|r| r.sent);

    if let Some((chain, verdict)) = &handshake.server {
        steps.push(server_certificate_step(target, trust, chain, verdict));
        // A server that accepted our certificate proved step 3's
        // prediction wrong (e.g. `openssl s_server -Verify 1` does not
        // enforce its list).
        let accepted = handshake.result.is_ok() && sent;
        steps.push(certificate_request_step(
            handshake.request.as_ref(),
            id,
            accepted,
        ));
    }
    steps.push(client_step(handshake.request.as_ref()));
    let step = match id.and_then(ClientIdentity::unusable) {
        Some(why) => Step::failed(
            "handshake",
            "not attempted with this client identity",
            why,
            "fix the client identity (see step 4)",
        ),
        None => handshake_step(&handshake, id),
    };
    let handshake_ok = step.ok;
    steps.push(step);
    if handshake_ok {
        steps.push(http_step(request).await);
    }
    finish(target, steps, sent)
}

/// The report; `sent`: our client certificate went to the server.
fn finish(target: &Target, steps: Vec<Step>, sent: bool) -> Report {
    let failed = steps.iter().find(|s| !s.ok);
    let http = steps.iter().find(|s| s.step == "http");
    let subject = steps
        .iter()
        .find(|s| s.step == "client_certificate")
        .and_then(|s| s.details["subject"].as_str());
    let summary = match (failed, http) {
        (Some(step), _) => failed_summary(step),
        (None, Some(http)) => format!(
            "OK: {} answered {}{}",
            target.url,
            http.summary,
            match subject {
                Some(subject) if sent => format!(" to the client certificate {subject}"),
                _ => " (no client certificate sent)".to_owned(),
            }
        ),
        (None, None) => "FAILED: no request was made".to_owned(),
    };
    Report {
        url: Some(target.url.clone()),
        ok: failed.is_none() && http.is_some(),
        summary,
        steps,
    }
}

fn failed_summary(step: &Step) -> String {
    let (number, name) = step.label();
    format!(
        "FAILED at step {number} ({name}): {}",
        step.cause.as_deref().unwrap_or(&step.summary)
    )
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// Step 1.
async fn connect_step(target: &Target, timeout: Duration) -> (Step, Option<TcpStream>) {
    let authority = format!("{}:{}", target.host, target.port);
    let started = Instant::now();
    let (addrs, how): (Vec<IpAddr>, String) = if let Some(ips) = &target.resolved {
        (ips.clone(), "--resolve".to_owned())
    } else if let Ok(ip) = target.host.parse::<IpAddr>() {
        (vec![ip], "an IP address".to_owned())
    } else {
        let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
        match tokio::time::timeout(timeout, lookup).await {
            Ok(Ok(addrs)) => {
                let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
                ips.dedup();
                (ips, format!("DNS, {}", millis(started.elapsed())))
            }
            Ok(Err(err)) => {
                return (
                    Step::failed(
                        "connect",
                        format!("cannot resolve `{}`", target.host),
                        format!("name resolution of `{}` failed: {err}", target.host),
                        "check the host name in the URL; for a name DNS does not know (yet), pass --resolve HOST:PORT:ADDR",
                    )
                    .details(json!({"host": target.host, "port": target.port})),
                    None,
                );
            }
            Err(_) => {
                return (
                    Step::failed(
                        "connect",
                        format!("cannot resolve `{}`", target.host),
                        format!(
                            "no answer from DNS for `{}` within {timeout:?}",
                            target.host
                        ),
                        "check the DNS configuration, or pass --resolve HOST:PORT:ADDR",
                    )
                    .details(json!({"host": target.host, "port": target.port})),
                    None,
                );
            }
        }
    };
    let addresses: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
    let mut failures = Vec::new();
    let mut refused = false;
    for ip in &addrs {
        let addr = SocketAddr::new(*ip, target.port);
        let started = Instant::now();
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                let took = started.elapsed();
                let step = Step::new(
                    "connect",
                    true,
                    format!(
                        "{authority} is {} ({how}); TCP connected to {addr} in {}",
                        addresses.join(", "),
                        millis(took)
                    ),
                )
                .details(json!({
                    "host": target.host,
                    "port": target.port,
                    "addresses": addresses,
                    "resolved_by": how,
                    "connected_to": addr.to_string(),
                    "connect_ms": (took.as_secs_f64() * 10_000.0).round() / 10.0,
                }));
                return (step, Some(tcp));
            }
            Ok(Err(err)) => {
                refused |= err.kind() == std::io::ErrorKind::ConnectionRefused;
                failures.push((addr, err.to_string()));
            }
            Err(_) => failures.push((addr, format!("no answer within {timeout:?}"))),
        }
    }
    let fix = if refused {
        format!(
            "nothing listens on port {} there: start the server, or check the port in the URL (and --resolve)",
            target.port
        )
    } else {
        "check that the address is right and that no firewall drops the connection".to_owned()
    };
    let cause = match &failures[..] {
        [] => format!("`{}` resolved to no address", target.host),
        [(addr, err)] if addr.to_string() == authority => {
            format!("cannot connect to {authority}: {err}")
        }
        [(addr, err)] => format!("cannot connect to {authority} ({addr}): {err}"),
        many => format!(
            "cannot connect to {authority}: {}",
            many.iter()
                .map(|(addr, err)| format!("{addr}: {err}"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    let failures: Vec<String> = failures
        .iter()
        .map(|(addr, err)| format!("{addr}: {err}"))
        .collect();
    (
        Step::failed("connect", format!("cannot connect to {authority}"), cause, fix).details(
            json!({"host": target.host, "port": target.port, "addresses": addresses, "errors": failures}),
        ),
        None,
    )
}

/// The server's CertificateRequest, as seen by the client.
#[derive(Debug, Clone)]
struct CertRequest {
    /// The CA names it accepts (RFC 4514); empty: it names none.
    acceptable: Vec<String>,
    /// The signature schemes it accepts for our CertificateVerify.
    schemes: Vec<SignatureScheme>,
    /// Whether our certificate was sent.
    sent: bool,
}

/// Offers the identity (if any) and records the server's request.
#[derive(Debug)]
struct CertRequestProbe {
    identity: Option<Arc<CertifiedKey>>,
    seen: Mutex<Option<CertRequest>>,
}

impl ResolvesClientCert for CertRequestProbe {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let sent = self
            .identity
            .as_ref()
            .is_some_and(|id| id.key.choose_scheme(sigschemes).is_some());
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(CertRequest {
                acceptable: root_hint_subjects
                    .iter()
                    .map(|dn| dn_der_to_rfc4514(dn))
                    .collect(),
                schemes: sigschemes.to_vec(),
                sent,
            });
        }
        self.identity.clone()
    }

    fn has_certs(&self) -> bool {
        self.identity.is_some()
    }
}

/// Stores nothing; tells when the server sent a TLS 1.3 session ticket,
/// which servers do once they have accepted the client's Finished (and so
/// its certificate).
#[derive(Debug, Default)]
struct TicketSignal(tokio::sync::Notify);

impl ClientSessionStore for TicketSignal {
    fn set_kx_hint(&self, _: ServerName<'static>, _: NamedGroup) {}

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        None
    }

    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(&self, _: ServerName<'static>, _: Tls13ClientSessionValue) {
        self.0.notify_one();
    }

    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        None
    }
}

struct Probe {
    config: Arc<ClientConfig>,
    server: Arc<ChainRecorder>,
    client: Arc<CertRequestProbe>,
    tickets: Arc<TicketSignal>,
}

/// What the handshake showed.
struct Handshake {
    /// The chain the server presented and our verdict on it.
    server: Option<ServerSeen>,
    request: Option<CertRequest>,
    result: Result<Established, Failure>,
}

struct Established {
    version: &'static str,
    suite: String,
    alpn: Option<String>,
    /// How we know the server accepted the client's certificate.
    accepted: Option<String>,
}

enum Failure {
    /// Our verifier refused the server's chain (step 2 says why).
    ServerRejected,
    /// The server's alert; `true` when it came after the handshake.
    Alert(AlertDescription, bool),
    Tls(rustls::Error),
    Io(std::io::Error),
    /// Closed without an alert right after a TLS 1.3 handshake in which
    /// the server asked for a certificate.
    ClosedAfterHandshake(String),
    Timeout(Duration),
}

/// After the handshake, a server that requested a certificate accepts it
/// (a session ticket, data, or silence for this long) or refuses it (an alert).
const AFTER_HANDSHAKE_WAIT: Duration = Duration::from_secs(3);

impl Probe {
    fn new(trust: &Trust, identity: Option<Arc<CertifiedKey>>) -> Probe {
        let provider = tls::provider();
        let inner =
            WebPkiServerVerifier::builder_with_provider(trust.roots.clone(), provider.clone())
                .build()
                .expect("a non-empty root store builds a verifier");
        let server = Arc::new(ChainRecorder::new(inner));
        let client = Arc::new(CertRequestProbe {
            identity,
            seen: Mutex::new(None),
        });
        let tickets = Arc::new(TicketSignal::default());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .dangerous()
            .with_custom_certificate_verifier(server.clone())
            .with_client_cert_resolver(client.clone());
        config.alpn_protocols = tls::ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        config.resumption = Resumption::store(tickets.clone());
        Probe {
            config: Arc::new(config),
            server,
            client,
            tickets,
        }
    }

    async fn handshake(&self, target: &Target, tcp: TcpStream, timeout: Duration) -> Handshake {
        let connector = TlsConnector::from(self.config.clone());
        let connect = connector.connect(target.server_name.clone(), tcp);
        let result = match tokio::time::timeout(timeout, connect).await {
            Err(_) => Err(Failure::Timeout(timeout)),
            Ok(Err(err)) => Err(self.classify(err)),
            Ok(Ok(mut stream)) => {
                let conn = stream.get_ref().1;
                let version = match conn.protocol_version() {
                    Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                    Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                    _ => "TLS",
                };
                let suite = conn
                    .negotiated_cipher_suite()
                    .and_then(|s| s.suite().as_str())
                    .unwrap_or("unknown")
                    .to_owned();
                let alpn = conn
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                let requested = self.request().is_some();
                let after = if version == "TLSv1.3" && requested {
                    self.after_handshake(&mut stream).await
                } else {
                    Ok(None)
                };
                // Say goodbye properly; the answer does not matter.
                let _ = tokio::time::timeout(Duration::from_millis(500), stream.shutdown()).await;
                after.map(|accepted| Established {
                    version,
                    suite,
                    alpn,
                    accepted,
                })
            }
        };
        Handshake {
            server: self.server.seen(),
            request: self.request(),
            result,
        }
    }

    fn request(&self) -> Option<CertRequest> {
        self.client.seen.lock().ok().and_then(|s| s.clone())
    }

    /// TLS 1.3: the server judges the client certificate after the
    /// client's handshake is done, and says so with an alert or a ticket.
    async fn after_handshake(
        &self,
        stream: &mut tokio_rustls::client::TlsStream<TcpStream>,
    ) -> Result<Option<String>, Failure> {
        let mut buf = [0u8; 2048];
        let waited = tokio::time::timeout(AFTER_HANDSHAKE_WAIT, async {
            tokio::select! {
                read = stream.read(&mut buf) => Some(read),
                _ = self.tickets.0.notified() => None,
            }
        })
        .await;
        match waited {
            Ok(None) => Ok(Some(
                "the server sent a session ticket after the handshake".to_owned(),
            )),
            Ok(Some(Ok(0))) => Err(Failure::ClosedAfterHandshake(
                "it closed the connection".to_owned(),
            )),
            Ok(Some(Ok(_))) => Ok(Some("the server sent data after the handshake".to_owned())),
            Ok(Some(Err(err))) => match rustls_error(&err) {
                Some(rustls::Error::AlertReceived(alert)) => Err(Failure::Alert(*alert, true)),
                Some(other) => Err(Failure::Tls(other.clone())),
                None => Err(Failure::ClosedAfterHandshake(err.to_string())),
            },
            Err(_) => Ok(Some(format!(
                "no alert within {} s after the handshake",
                AFTER_HANDSHAKE_WAIT.as_secs()
            ))),
        }
    }

    fn classify(&self, err: std::io::Error) -> Failure {
        let server_rejected = matches!(self.server.seen(), Some((_, Err(_))));
        if server_rejected {
            return Failure::ServerRejected;
        }
        match rustls_error(&err) {
            Some(rustls::Error::AlertReceived(alert)) => Failure::Alert(*alert, false),
            Some(other) => Failure::Tls(other.clone()),
            None => Failure::Io(err),
        }
    }
}

fn rustls_error(err: &std::io::Error) -> Option<&rustls::Error> {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Step 2.
fn server_certificate_step(
    target: &Target,
    trust: &Trust,
    chain: &[CertificateDer<'static>],
    verdict: &Result<(), rustls::Error>,
) -> Step {
    let name = target.server_name_text();
    let presented: Vec<Option<CertDetails>> = chain
        .iter()
        .map(|der| CertDetails::from_der(der).ok())
        .collect();
    let lines: Vec<String> = presented
        .iter()
        .enumerate()
        .map(|(depth, d)| match d {
            Some(d) => format!(
                "{depth}: {} (issuer {}, {} {})",
                d.subject.rfc4514,
                d.issuer.rfc4514,
                if d.expires_in_days < 0 {
                    "expired"
                } else {
                    "expires"
                },
                d.not_after
            ),
            None => format!("{depth}: (undecodable)"),
        })
        .collect();
    let leaf = presented.first().and_then(Option::as_ref);
    let names: Vec<String> = leaf
        .map(|d| {
            let sans = &d.subject_alt_names;
            sans.dns.iter().chain(&sans.ip).cloned().collect()
        })
        .unwrap_or_default();
    let mut details = json!({
        "trusted": trust.what,
        "server_name": name,
        "names": names,
        "presented": presented.iter().map(|d| d.as_ref().map(|d| json!({
            "subject": d.subject.rfc4514,
            "issuer": d.issuer.rfc4514,
            "not_before": d.not_before,
            "not_after": d.not_after,
            "expires_in_days": d.expires_in_days,
        }))).collect::<Vec<_>>(),
    });
    let err = match verdict {
        Ok(()) => {
            let leaf_text = leaf
                .map(|d| {
                    format!(
                        "{}, issued by {}, valid until {} ({} days left)",
                        d.subject.rfc4514, d.issuer.rfc4514, d.not_after, d.expires_in_days
                    )
                })
                .unwrap_or_default();
            details["problems"] = json!([]);
            let mut step = Step::new(
                "server_certificate",
                true,
                format!(
                    "{leaf_text}; trusted via {}; valid for `{name}`",
                    trust.what
                ),
            )
            .details(details);
            step.lines = lines;
            return step;
        }
        Err(err) => err,
    };

    let mut problems: Vec<(&'static str, String, String)> = Vec::new();
    let primary = match chain.first() {
        Some(leaf_der) => verify::reason(err, leaf_der),
        None => err.to_string(),
    };
    // Validity of everything presented (rustls stops at its first error).
    for d in presented.iter().flatten() {
        if !d.valid_now {
            let (kind, text) = if d.expires_in_days < 0 {
                (
                    "expired",
                    format!("{} expired at {}", d.subject.rfc4514, d.not_after),
                )
            } else {
                (
                    "not_yet_valid",
                    format!("{} is not valid before {}", d.subject.rfc4514, d.not_before),
                )
            };
            problems.push((
                kind,
                text,
                "the server operator must renew the certificate (or check this machine's clock)"
                    .to_owned(),
            ));
        }
    }
    if matches!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    ) {
        problems.push(unknown_issuer(&presented, trust));
    }
    // The name, checked by webpki itself, also when the chain failed first.
    let name_ok = chain.first().and_then(|der| {
        webpki::EndEntityCert::try_from(der).ok().map(|ee| {
            ee.verify_is_valid_for_subject_name(&target.server_name)
                .is_ok()
        })
    });
    if name_ok == Some(false) {
        problems.push((
            "wrong_name",
            format!(
                "the certificate is not valid for `{name}`; its names are: {}",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
            format!(
                "connect with a name the certificate lists (https://NAME:PORT/ with --resolve NAME:PORT:ADDR, or --servername NAME), or re-issue the server certificate with `{name}` in its subjectAltName"
            ),
        ));
    }
    // Anything rustls refused for that the kinds above do not cover.
    let classified = matches!(
        err,
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
                | CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. }
                | CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. }
        )
    );
    if !classified || problems.is_empty() {
        problems.insert(
            0,
            (
                "invalid",
                primary.clone(),
                "the server operator must fix its certificate".to_owned(),
            ),
        );
    }
    details["problems"] = json!(problems.iter().map(|p| p.0).collect::<Vec<_>>());
    details["rustls"] = json!(primary);
    if problems
        .iter()
        .any(|p| p.0 == "unknown_issuer" || p.0 == "incomplete_chain")
    {
        let top = presented.iter().rev().flatten().next();
        details["missing_issuer"] = json!(top.map(|d| d.issuer.rfc4514.clone()));
    }
    let causes: Vec<String> = problems
        .iter()
        .map(|p| p.1.clone())
        .filter(|text| !text.is_empty())
        .collect();
    let mut step = Step::failed(
        "server_certificate",
        format!(
            "rejected: {}",
            problems
                .iter()
                .map(|p| p.0.replace('_', " "))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        causes.join("; "),
        problems
            .iter()
            .map(|p| p.2.clone())
            .collect::<Vec<_>>()
            .join("; "),
    )
    .details(details);
    step.lines = lines;
    step
}

/// Which issuer is missing, and whether the server or the client should
/// supply it.
fn unknown_issuer(
    presented: &[Option<CertDetails>],
    trust: &Trust,
) -> (&'static str, String, String) {
    let Some(top) = presented.iter().rev().flatten().next() else {
        return (
            "unknown_issuer",
            String::new(),
            "trust the server's CA with --cacert FILE".to_owned(),
        );
    };
    let trust_fix = if trust.from_cacert {
        format!(
            "pass the CA certificate of `{}` with --cacert (the current {} does not hold it)",
            top.issuer.rfc4514, trust.what
        )
    } else {
        format!(
            "this system does not trust `{}`: pass its CA certificate with --cacert FILE",
            top.issuer.rfc4514
        )
    };
    if top.self_signed {
        return (
            "unknown_issuer",
            format!(
                "the server's chain ends in the self-signed {}, which is not a trusted CA",
                top.subject.rfc4514
            ),
            trust_fix,
        );
    }
    let has_ca_issuers = top
        .authority_info_access
        .iter()
        .any(|a| a.method == "caIssuers");
    if presented.len() == 1 && has_ca_issuers && !trust.from_cacert {
        return (
            "incomplete_chain",
            format!(
                "the server sent its certificate without the intermediate `{}` (the certificate names where to fetch it, but TLS clients do not); the chain is incomplete",
                top.issuer.rfc4514
            ),
            "the server operator must send the intermediate certificate(s) after its own (configure the full chain file)".to_owned(),
        );
    }
    (
        "unknown_issuer",
        format!(
            "unknown issuer: `{}`, the issuer of {} (the last certificate the server sent), is not a CA in {}; if it is an intermediate CA, the server's chain is incomplete",
            top.issuer.rfc4514, top.subject.rfc4514, trust.what
        ),
        format!(
            "{trust_fix}; or, if `{}` is an intermediate CA, the server must send it after its own certificate",
            top.issuer.rfc4514
        ),
    )
}

/// Step 3.
fn certificate_request_step(
    request: Option<&CertRequest>,
    id: Option<&ClientIdentity>,
    accepted: bool,
) -> Step {
    let Some(request) = request else {
        let summary = match id {
            Some(_) => {
                "the server does not ask for a client certificate, so ours is not sent (the server cannot authenticate us by certificate; `mtls serve` asks with --client-auth optional or required)"
            }
            None => "the server does not ask for a client certificate",
        };
        return Step::new("certificate_request", true, summary)
            .details(json!({"requested": false}));
    };
    let details = json!({
        "requested": true,
        "acceptable_cas": request.acceptable,
        "signature_schemes": request.schemes.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>(),
    });
    if request.acceptable.is_empty() {
        return Step::new(
            "certificate_request",
            true,
            "the server asks for a client certificate; it names no acceptable CAs",
        )
        .details(details);
    }
    let list = request.acceptable.join("; ");
    let Some(id) = id else {
        return Step::new(
            "certificate_request",
            true,
            format!("the server asks for a client certificate issued by: {list}"),
        )
        .details(details);
    };
    let issuers = id.issuers();
    if let Some(found) = issuers.iter().find(|i| request.acceptable.contains(i)) {
        return Step::new(
            "certificate_request",
            true,
            format!(
                "the server asks for a client certificate issued by: {list}; ours chains to {found}, which is among them"
            ),
        )
        .details(details);
    }
    let issuer = id.top_issuer();
    if accepted {
        return Step::new(
            "certificate_request",
            true,
            format!(
                "the server asks for a client certificate issued by: {list}; ours chains to `{issuer}`, which is not among them, yet the server accepted it (it does not enforce its list)"
            ),
        )
        .details(details);
    }
    let fix = if id.leaf_only_from_another_ca() {
        format!(
            "use a client certificate issued by one of them; if `{issuer}` is an intermediate CA below one of them, send its certificate too (append it to the certificate file after the leaf)"
        )
    } else {
        "use a client certificate issued by one of them, or ask the server operator to trust your CA".to_owned()
    };
    Step::failed(
        "certificate_request",
        format!("the server asks for a client certificate issued by: {list}"),
        format!(
            "our certificate is issued by `{issuer}`, which is not among the CAs the server accepts{}",
            if id.leaf_only_from_another_ca() {
                " (and we send the leaf only)"
            } else {
                ""
            }
        ),
        fix,
    )
    .details(details)
}

/// Step 5.
fn handshake_step(handshake: &Handshake, id: Option<&ClientIdentity>) -> Step {
    let request = handshake.request.as_ref();
    match &handshake.result {
        Ok(done) => {
            let mut summary = format!(
                "{}, {}, ALPN {}",
                done.version,
                done.suite,
                done.alpn.as_deref().unwrap_or("none (HTTP/1.1)")
            );
            let client = match (request, id) {
                (None, _) => "no client certificate was asked for".to_owned(),
                (Some(r), Some(id)) if r.sent => format!(
                    "client certificate {} accepted ({})",
                    id.subject(),
                    done.accepted.as_deref().unwrap_or("TLS 1.2: within the handshake")
                ),
                (Some(_), Some(_)) => {
                    "our client certificate was not sent; the server accepted the handshake without one".to_owned()
                }
                (Some(_), None) => {
                    "no client certificate sent; the server accepted the handshake without one"
                        .to_owned()
                }
            };
            let _ = write!(summary, "; {client}");
            Step::new("handshake", true, summary).details(json!({
                "version": done.version,
                "cipher_suite": done.suite,
                "alpn": done.alpn,
                "client_certificate_sent": request.is_some_and(|r| r.sent),
            }))
        }
        Err(Failure::ServerRejected) => Step::failed(
            "handshake",
            "ended by us: the server's certificate was rejected",
            "we refused the server's certificate (step 2), so the handshake stopped and nothing was sent",
            "see step 2",
        )
        .details(json!({"ended_by": "client"})),
        Err(Failure::Alert(alert, after)) => {
            let name = alert_name(*alert);
            let (cause, fix) = explain_alert(*alert, request, id);
            Step::failed(
                "handshake",
                format!(
                    "the server sent the alert {name}{}",
                    if *after { " after the handshake" } else { "" }
                ),
                cause,
                fix,
            )
            .details(json!({"alert": name, "after_handshake": after}))
        }
        Err(Failure::Tls(err)) => {
            let (cause, fix) = match err {
                rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => (
                    format!("the server does not answer with TLS ({err})"),
                    "check the port: it may be plain HTTP or another protocol".to_owned(),
                ),
                rustls::Error::NoApplicationProtocol => (
                    "the server speaks neither h2 nor http/1.1 (ALPN)".to_owned(),
                    "this is not an HTTPS server for HTTP/1.1 or HTTP/2".to_owned(),
                ),
                other => (
                    format!("TLS failed: {other}"),
                    "compare the server's TLS settings with ours (TLS 1.2 and 1.3)".to_owned(),
                ),
            };
            Step::failed("handshake", "TLS failed", cause, fix)
                .details(json!({"error": err.to_string()}))
        }
        Err(Failure::Io(err)) => Step::failed(
            "handshake",
            "the connection broke",
            format!("the server closed or reset the connection during the handshake without an alert ({err})"),
            "look at the server's log; it may not speak TLS on this port, or it may refuse clients silently (some servers do so when a required client certificate is missing)",
        )
        .details(json!({"error": err.to_string()})),
        Err(Failure::ClosedAfterHandshake(how)) => Step::failed(
            "handshake",
            "the server hung up right after the handshake",
            format!(
                "right after the handshake, without an alert, the server ended the connection ({how}); a server that asked for a client certificate does this when it refuses the certificate silently"
            ),
            "look at the server's log for why it refused the client certificate (step 4 lists what is wrong with it, if anything)",
        ),
        Err(Failure::Timeout(limit)) => Step::failed(
            "handshake",
            "no answer",
            format!("the TLS handshake did not complete within {limit:?}"),
            "check that the port speaks TLS, or allow more time with --timeout",
        ),
    }
}

/// The names TLS specifications use (`certificate_required`, `unknown_ca`).
pub fn alert_name(alert: AlertDescription) -> String {
    let name = match alert {
        AlertDescription::CloseNotify => "close_notify",
        AlertDescription::UnexpectedMessage => "unexpected_message",
        AlertDescription::BadRecordMac => "bad_record_mac",
        AlertDescription::HandshakeFailure => "handshake_failure",
        AlertDescription::BadCertificate => "bad_certificate",
        AlertDescription::UnsupportedCertificate => "unsupported_certificate",
        AlertDescription::CertificateRevoked => "certificate_revoked",
        AlertDescription::CertificateExpired => "certificate_expired",
        AlertDescription::CertificateUnknown => "certificate_unknown",
        AlertDescription::IllegalParameter => "illegal_parameter",
        AlertDescription::UnknownCA => "unknown_ca",
        AlertDescription::AccessDenied => "access_denied",
        AlertDescription::DecodeError => "decode_error",
        AlertDescription::DecryptError => "decrypt_error",
        AlertDescription::ProtocolVersion => "protocol_version",
        AlertDescription::InsufficientSecurity => "insufficient_security",
        AlertDescription::InternalError => "internal_error",
        AlertDescription::UserCanceled => "user_canceled",
        AlertDescription::MissingExtension => "missing_extension",
        AlertDescription::UnsupportedExtension => "unsupported_extension",
        AlertDescription::UnrecognisedName => "unrecognized_name",
        AlertDescription::CertificateRequired => "certificate_required",
        AlertDescription::NoApplicationProtocol => "no_application_protocol",
        other => return format!("{other:?} ({})", u8::from(other)),
    };
    name.to_owned()
}

/// The alert in a sentence, with what we know about our certificate.
fn explain_alert(
    alert: AlertDescription,
    request: Option<&CertRequest>,
    id: Option<&ClientIdentity>,
) -> (String, String) {
    let name = alert_name(alert);
    let sent = request.is_some_and(|r| r.sent);
    let accepted = request
        .filter(|r| !r.acceptable.is_empty())
        .map(|r| {
            format!(
                "; it accepts certificates issued by: {}",
                r.acceptable.join("; ")
            )
        })
        .unwrap_or_default();
    let ours = id
        .map(|id| format!("our client certificate {}", id.subject()))
        .unwrap_or_else(|| "our client certificate".to_owned());
    match alert {
        AlertDescription::CertificateRequired if id.is_some() && request.is_some() && !sent => (
            format!(
                "the server requires a client certificate and ours was not sent: its key cannot sign with any signature scheme the server accepts (TLS alert {name})"
            ),
            "use a client key of a type the server accepts (see step 4)".to_owned(),
        ),
        AlertDescription::CertificateRequired => (
            format!(
                "the server requires a client certificate and none was sent (TLS alert {name})"
            ),
            HOW_TO_SEND.to_owned(),
        ),
        AlertDescription::HandshakeFailure if request.is_some() && !sent => (
            format!(
                "the server ended the handshake (TLS alert {name}) after asking for a client certificate that was not sent: it probably requires one"
            ),
            HOW_TO_SEND.to_owned(),
        ),
        AlertDescription::HandshakeFailure => (
            format!(
                "the server found no acceptable parameters (TLS alert {name}): TLS version, cipher suite, key exchange group or signature scheme"
            ),
            "compare the server's TLS settings with ours: TLS 1.2/1.3, AES-GCM or ChaCha20-Poly1305, X25519/P-256/P-384, ECDSA/Ed25519/RSA-PSS".to_owned(),
        ),
        AlertDescription::UnknownCA => {
            let issuer = id.map(|id| id.top_issuer()).unwrap_or_default();
            let leaf_only = id.is_some_and(ClientIdentity::leaf_only_from_another_ca);
            let mut cause = format!(
                "the server does not trust the issuer `{issuer}` of {ours} (TLS alert {name}){accepted}"
            );
            let fix = if leaf_only {
                cause.push_str(&format!(
                    "; we sent the leaf only: if `{issuer}` is an intermediate CA, the server cannot build the chain to its root without it (incomplete chain)"
                ));
                format!(
                    "if `{issuer}` is an intermediate CA, send it: append its certificate to the certificate file after the leaf (or put it in the .p12); otherwise use a client certificate from a CA the server trusts"
                )
            } else {
                "use a client certificate issued by a CA the server trusts, or ask the server operator to trust your CA".to_owned()
            };
            (cause, fix)
        }
        AlertDescription::CertificateExpired => {
            let when = id
                .map(|id| id.leaf())
                .filter(|leaf| !leaf.valid_now)
                .map(|leaf| {
                    if leaf.expires_in_days < 0 {
                        format!(": it expired at {}", leaf.not_after)
                    } else {
                        format!(": it is not valid before {}", leaf.not_before)
                    }
                })
                .unwrap_or_else(|| " (check the server's clock, and the validity of the intermediates)".to_owned());
            (
                format!(
                    "the server refused {ours} as expired or not yet valid (TLS alert {name}){when}"
                ),
                "renew the certificate (with the dev PKI: `mtls pki client NAME --force`)".to_owned(),
            )
        }
        AlertDescription::CertificateRevoked => (
            format!("the server refused {ours}: it is revoked (TLS alert {name})"),
            "this certificate can no longer be used; ask for a new one".to_owned(),
        ),
        AlertDescription::UnsupportedCertificate => {
            let why = match id {
                Some(id) if id.lacks_client_auth() => format!(
                    ": it lacks the clientAuth extended key usage (it has: {})",
                    id.leaf().extended_key_usage.join(", ")
                ),
                _ => "; it probably lacks the clientAuth extended key usage".to_owned(),
            };
            (
                format!(
                    "the server refused {ours} as unsuitable for client authentication (TLS alert {name}){why}"
                ),
                "issue a certificate with extendedKeyUsage = clientAuth (`mtls pki client NAME` does)"
                    .to_owned(),
            )
        }
        AlertDescription::BadCertificate | AlertDescription::CertificateUnknown => {
            let known = id.map(|id| {
                let mut found = Vec::new();
                if id.is_v1() {
                    found.push("it is X.509 version 1".to_owned());
                }
                if id.lacks_client_auth() {
                    found.push("it lacks the clientAuth extended key usage".to_owned());
                }
                if !id.leaf().valid_now {
                    found.push("it is outside its validity period".to_owned());
                }
                found
            });
            let why = match known {
                Some(found) if !found.is_empty() => format!("; step 4 found: {}", found.join(", ")),
                _ => String::new(),
            };
            (
                format!(
                    "the server could not accept {ours} (TLS alert {name}: a certificate it cannot verify or use; OpenSSL-based servers send it for many reasons, e.g. a wrong key usage, a missing intermediate or a bad signature){why}"
                ),
                "check the certificate offline against the server's CA: `mtls check --cert FILE --key FILE --cacert CA`; issue a new one with `mtls pki client NAME`".to_owned(),
            )
        }
        AlertDescription::DecryptError => (
            format!(
                "the server could not verify our handshake signature (TLS alert {name}): the private key does not belong to the certificate, or the signature is broken"
            ),
            "use the private key that was generated with the certificate".to_owned(),
        ),
        AlertDescription::AccessDenied => (
            format!(
                "the server verified {ours} but its policy does not admit it (TLS alert {name})"
            ),
            "ask the server operator to allow this certificate (by CN, thumbprint, SAN, ...)".to_owned(),
        ),
        AlertDescription::ProtocolVersion => (
            format!(
                "the server has no TLS version in common with us (TLS alert {name}); we speak TLS 1.2 and 1.3"
            ),
            "the server must enable TLS 1.2 or 1.3".to_owned(),
        ),
        AlertDescription::InsufficientSecurity => (
            format!("the server wants stronger parameters than we offered (TLS alert {name})"),
            "compare the server's cipher suite and key exchange settings with ours".to_owned(),
        ),
        AlertDescription::NoApplicationProtocol => (
            format!("the server speaks neither h2 nor http/1.1 (TLS alert {name})"),
            "this is not an HTTPS server for HTTP/1.1 or HTTP/2".to_owned(),
        ),
        AlertDescription::UnrecognisedName => (
            format!("the server does not serve the name we sent in SNI (TLS alert {name})"),
            "check the host in the URL, or --servername".to_owned(),
        ),
        _ => (
            format!("the server ended the connection with the TLS alert {name}"),
            "look at the server's log for the reason".to_owned(),
        ),
    }
}

/// Step 6: the request, made by `mtls client`'s code.
async fn http_step(request: &CheckRequest) -> Step {
    let url = request.url.clone().unwrap_or_default();
    let client_request = ClientRequest {
        url,
        cacert: request.cacert.clone(),
        identity: request.identity.clone(),
        method: None,
        data: None,
        headers: Vec::new(),
        insecure: false,
        servername: request.servername.clone(),
        resolve: request.resolve.clone(),
        timeout: request.timeout,
    };
    let response = match client::send(&client_request, &mut |_| {}).await {
        Ok(response) => response,
        Err(err) => {
            return Step::failed(
                "http",
                "the request failed",
                err.to_string(),
                "run the check again; if it persists, look at the server's log",
            );
        }
    };
    let status = response.status_line();
    let body = String::from_utf8_lossy(&response.body).into_owned();
    let json: Option<Value> = serde_json::from_str(&body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let preview: String = body.trim().chars().take(160).collect();
    let mut details = json!({
        "status": response.status.as_u16(),
        "version": format!("{:?}", response.version),
        "content_type": response.headers.get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
        "body": preview,
    });
    if response.succeeded() {
        return Step::new("http", true, status).details(details);
    }
    let (cause, fix) = match field("reason") {
        Some(reason) => {
            details["reason"] = json!(reason);
            details["detail"] = json!(field("detail"));
            details["hint"] = json!(field("hint"));
            (
                format!(
                    "the server refused the request: reason `{reason}`{}",
                    field("detail")
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                ),
                field("hint").unwrap_or_else(|| "see the reason".to_owned()),
            )
        }
        None => (
            format!(
                "the server answered {status}{}",
                if preview.is_empty() {
                    String::new()
                } else {
                    format!(": {preview}")
                }
            ),
            match response.status.as_u16() {
                401 | 403 => {
                    "the server refused this client at the HTTP level: look at its log or policy"
                        .to_owned()
                }
                404 => "the path does not exist on this server: check the URL".to_owned(),
                500.. => "the server failed: look at its log".to_owned(),
                _ => "check the request".to_owned(),
            },
        ),
    };
    Step::failed("http", status, cause, fix).details(details)
}

// ------------------------------------------------------------------ output

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

/// The text form: one line per step, the cause and the fix under every
/// failed one, and the summary line last.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    if let Some(url) = &report.url {
        let _ = writeln!(out, "mtls check {url}");
    }
    for step in &report.steps {
        let (number, name) = step.label();
        let _ = writeln!(out, "{} {number}. {name}: {}", mark(step.ok), step.summary);
        for line in &step.lines {
            let _ = writeln!(out, "      {line}");
        }
        if let Some(cause) = &step.cause {
            let _ = writeln!(out, "      cause: {cause}");
        }
        if let Some(fix) = &step.fix {
            let _ = writeln!(out, "      fix:   {fix}");
        }
    }
    let _ = writeln!(out, "{}", report.summary);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_names_are_the_specification_names() {
        assert_eq!(
            alert_name(AlertDescription::CertificateRequired),
            "certificate_required"
        );
        assert_eq!(alert_name(AlertDescription::UnknownCA), "unknown_ca");
        assert_eq!(alert_name(AlertDescription::DecryptError), "decrypt_error");
    }

    #[test]
    fn urls_and_resolve_entries_are_checked() {
        let request = CheckRequest {
            url: None,
            cacert: None,
            identity: None,
            servername: None,
            resolve: vec!["api.example:5001:127.0.0.1".to_owned()],
            timeout: Duration::from_secs(1),
        };
        let target = Target::parse("https://api.example:5001/x", &request).unwrap();
        assert_eq!((target.host.as_str(), target.port), ("api.example", 5001));
        assert_eq!(
            target.resolved,
            Some(vec!["127.0.0.1".parse::<IpAddr>().unwrap()])
        );
        let target = Target::parse("https://[::1]/", &request).unwrap();
        assert_eq!((target.host.as_str(), target.port), ("::1", 443));
        assert!(target.resolved.is_none());
        for bad in ["http://x/", "x:5001", "https:///"] {
            assert!(Target::parse(bad, &request).is_err(), "{bad}");
        }
    }
}
