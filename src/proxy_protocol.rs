//! PROXY protocol (v1 text and v2 binary, parsed by the `ppp` crate) in
//! front of the TLS handshake: a TCP load balancer tells us the client's
//! real address. Read exactly the header's bytes, never more, so the TLS
//! ClientHello that follows stays in the socket for rustls.

use std::net::{IpAddr, SocketAddr};

use ppp::{HeaderResult, v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12-byte signature that starts every v2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 header is at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("the connection ended before a complete PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
    #[error("no PROXY protocol header (expected `PROXY ...` or the v2 signature)")]
    Missing,
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(String),
}

/// Reads one PROXY protocol header from `stream` and returns the client
/// address it announces, or `None` for `UNKNOWN`/`LOCAL` (health checks
/// from the balancer itself), when the socket's own peer address applies.
/// Generic over the reader so that the fuzzer can feed it bytes in memory.
pub async fn read_header<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    // 12 bytes: the v2 signature, and shorter than any v1 header (15+).
    let mut header = vec![0u8; 12];
    stream.read_exact(&mut header).await?;
    if header.as_slice() == V2_SIGNATURE {
        let mut fixed = [0u8; 4];
        stream.read_exact(&mut fixed).await?;
        header.extend_from_slice(&fixed);
        let length = u16::from_be_bytes([fixed[2], fixed[3]]) as usize;
        let mut rest = vec![0u8; length];
        stream.read_exact(&mut rest).await?;
        header.extend_from_slice(&rest);
    } else if header.starts_with(b"PROXY ") {
        while !header.ends_with(b"\r\n") {
            if header.len() >= V1_MAX {
                return Err(ProxyHeaderError::Invalid(
                    "v1 header longer than 107 bytes".to_owned(),
                ));
            }
            header.push(stream.read_u8().await?);
        }
    } else {
        return Err(ProxyHeaderError::Missing);
    }
    source_address(HeaderResult::parse(&header))
}

fn source_address(result: HeaderResult<'_>) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let invalid = |err: &dyn std::fmt::Debug| ProxyHeaderError::Invalid(format!("{err:?}"));
    match result {
        HeaderResult::V1(Ok(header)) => Ok(match header.addresses {
            v1::Addresses::Tcp4(ip) => Some(SocketAddr::new(
                IpAddr::V4(ip.source_address),
                ip.source_port,
            )),
            v1::Addresses::Tcp6(ip) => Some(SocketAddr::new(
                IpAddr::V6(ip.source_address),
                ip.source_port,
            )),
            v1::Addresses::Unknown => None,
        }),
        HeaderResult::V2(Ok(header)) => Ok(match (header.command, header.addresses) {
            (v2::Command::Local, _) => None,
            (_, v2::Addresses::IPv4(ip)) => Some(SocketAddr::new(
                IpAddr::V4(ip.source_address),
                ip.source_port,
            )),
            (_, v2::Addresses::IPv6(ip)) => Some(SocketAddr::new(
                IpAddr::V6(ip.source_address),
                ip.source_port,
            )),
            _ => None,
        }),
        HeaderResult::V1(Err(err)) => Err(invalid(&err)),
        HeaderResult::V2(Err(err)) => Err(invalid(&err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_give_the_source_address() {
        let v1 = HeaderResult::parse(b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n");
        assert_eq!(
            source_address(v1).unwrap(),
            Some("203.0.113.7:51234".parse().unwrap())
        );
        let unknown = HeaderResult::parse(b"PROXY UNKNOWN\r\n");
        assert_eq!(source_address(unknown).unwrap(), None);
        let v6 = HeaderResult::parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n");
        assert_eq!(
            source_address(v6).unwrap(),
            Some("[2001:db8::1]:4000".parse().unwrap())
        );
        let bad = HeaderResult::parse(b"PROXY TCP4 999.0.0.1 192.0.2.1 1 2\r\n");
        assert!(source_address(bad).is_err());
    }
}
