//! What a completed handshake proved about the client, captured once per
//! connection and shared by every request on it.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use rustls::{HandshakeKind, ServerConnection};
use rustls_pki_types::CertificateDer;
use serde::Serialize;

use crate::cert::{self, CertDetails};
use crate::rejection::Rejection;
use crate::tls::client_auth::ClientTrust;

/// The client's certificate identity.
#[derive(Debug, Clone)]
pub enum PeerIdentity {
    /// No certificate was presented (client auth off, or optional and none sent).
    None,
    /// A chain that the client verifier accepted, leaf first; shared by the
    /// connections that present the same chain (see `ClientTrust::identify`).
    Verified(Arc<VerifiedClient>),
    /// A certificate was presented but failed verification (optional mode).
    /// It is never an identity: only the reason is kept.
    Rejected(Box<Rejection>),
}

#[derive(Debug, Clone)]
pub struct VerifiedClient {
    /// Leaf first, as the client sent it.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's subject CN, RFC 4514 escaped.
    pub common_name: Option<String>,
    /// Decoded on first use: most requests never need more than the CN.
    details: OnceLock<Option<CertDetails>>,
}

impl VerifiedClient {
    /// From a presented chain (leaf first), copied.
    pub fn new(chain: &[CertificateDer<'_>]) -> Self {
        VerifiedClient {
            common_name: chain.first().and_then(|leaf| cert::common_name(leaf)),
            chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
            details: OnceLock::new(),
        }
    }

    /// The decoded leaf; `None` only if x509-parser cannot read a
    /// certificate that webpki accepted.
    pub fn details(&self) -> Option<&CertDetails> {
        self.details
            .get_or_init(|| {
                self.chain
                    .first()
                    .and_then(|leaf| CertDetails::from_der(leaf).ok())
            })
            .as_ref()
    }
}

impl PeerIdentity {
    /// `verified`, `none`, or `rejected:REASON`, for the access log.
    pub fn log_state(&self) -> Cow<'static, str> {
        match self {
            PeerIdentity::Verified(_) => Cow::Borrowed("verified"),
            PeerIdentity::None => Cow::Borrowed("none"),
            PeerIdentity::Rejected(rejection) => {
                Cow::Owned(format!("rejected:{}", rejection.reason))
            }
        }
    }

    /// The client certificate's common name, for logs; `-` when there is none.
    pub fn log_name(&self) -> &str {
        match self {
            PeerIdentity::Verified(client) => client.common_name.as_deref().unwrap_or("-"),
            PeerIdentity::None | PeerIdentity::Rejected(_) => "-",
        }
    }
}

/// Facts about the negotiated TLS session.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TlsFacts {
    /// Static names, so a connection allocates nothing for them.
    pub version: &'static str,
    pub cipher_suite: &'static str,
    pub alpn: Option<String>,
    pub sni: Option<String>,
}

/// Everything a request handler may know about its connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub remote_addr: SocketAddr,
    /// `remote_addr` formatted once per connection, for the access log.
    pub remote_label: Arc<str>,
    pub tls: TlsFacts,
    pub peer: PeerIdentity,
}

impl ConnectionInfo {
    /// A TLS 1.3 connection from `remote_addr`, for unit tests.
    #[cfg(test)]
    pub fn for_tests(remote_addr: SocketAddr, peer: PeerIdentity) -> Self {
        ConnectionInfo {
            remote_addr,
            remote_label: peer_label(remote_addr),
            tls: TlsFacts {
                version: "TLSv1.3",
                cipher_suite: "TLS13_AES_128_GCM_SHA256",
                alpn: None,
                sni: None,
            },
            peer,
        }
    }

    /// Reads the facts from a connection whose handshake has completed.
    ///
    /// A presented chain becomes an identity only once verified: by the
    /// handshake itself in `required` mode, or here by `trust` when the
    /// handshake deferred it (`optional`) or when the session was resumed
    /// (so revocation and validity are checked again, not restored; a
    /// result this trust already holds for the same chain counts, see
    /// `tls::verified_chains`).
    pub fn from_handshake(
        remote_addr: SocketAddr,
        conn: &ServerConnection,
        trust: Option<&ClientTrust>,
        deferred: bool,
    ) -> Self {
        let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
        let peer = match (conn.peer_certificates(), trust) {
            (Some(chain), Some(trust)) if !chain.is_empty() => {
                let verified_in_handshake = !(deferred || resumed);
                match trust.identify(chain, verified_in_handshake) {
                    Ok(client) => PeerIdentity::Verified(client),
                    Err(rejection) => PeerIdentity::Rejected(Box::new(rejection)),
                }
            }
            _ => PeerIdentity::None,
        };
        let tls = TlsFacts {
            version: conn.protocol_version().map_or("", protocol_name),
            cipher_suite: conn
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or(""),
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            sni: conn.server_name().map(str::to_owned),
        };
        ConnectionInfo {
            remote_addr,
            remote_label: peer_label(remote_addr),
            tls,
            peer,
        }
    }
}

/// `addr` as `Display` writes it; IPv4 without the formatting machinery,
/// which costs thousands of instructions per connection.
pub fn peer_label(addr: SocketAddr) -> Arc<str> {
    let SocketAddr::V4(v4) = addr else {
        return addr.to_string().into();
    };
    let mut label = String::with_capacity(21);
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            label.push('.');
        }
        label.push_str(itoa::Buffer::new().format(octet));
    }
    label.push(':');
    label.push_str(itoa::Buffer::new().format(v4.port()));
    label.into()
}

fn protocol_name(version: rustls::ProtocolVersion) -> &'static str {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_label_reads_as_display_writes_it() {
        for addr in [
            "0.0.0.0:0",
            "127.0.0.1:5001",
            "10.20.30.40:443",
            "255.255.255.255:65535",
            "[::1]:443",
            "[2001:db8::7]:8443",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(&*peer_label(addr), addr.to_string());
        }
    }
}
