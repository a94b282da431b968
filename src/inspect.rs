//! `mtls inspect`: certificates from files or from a live server, as aligned
//! text or as `CertDetails` JSON.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::cert::CertDetails;
use crate::tls::{self, danger::DangerAcceptAnyServerChain};

/// The text form: a header line, then one aligned `label  value` line per field.
pub fn render_text(source: &str, index: usize, total: usize, details: &CertDetails) -> String {
    let mut out = format!("{source}: certificate {} of {total}\n", index + 1);
    for (label, value) in details.rows() {
        out.push_str(&format!("  {label:<20} {value}\n"));
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("`{0}` is not HOST:PORT")]
    BadAddress(String),
    #[error("cannot connect to {target}: {cause}")]
    Connect { target: String, cause: String },
    #[error("`{0}` is not a valid server name for SNI (--servername)")]
    BadServerName(String),
    #[error("TLS handshake with {target} failed: {cause}")]
    Handshake { target: String, cause: String },
    #[error("{target} presented no certificate")]
    NoCertificate { target: String },
    #[error("no answer from {target} within {secs}s")]
    Timeout { target: String, secs: u64 },
}

/// The chain a server presents, fetched without verifying it.
pub async fn fetch_chain(
    target: &str,
    servername: Option<&str>,
    timeout: Duration,
) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    let fetch = async {
        let (host, _port) = target
            .rsplit_once(':')
            .ok_or_else(|| ConnectError::BadAddress(target.to_owned()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = servername.unwrap_or(host);
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|_| ConnectError::BadServerName(name.to_owned()))?;

        let provider = tls::provider();
        let mut config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|err| ConnectError::Handshake {
                target: target.to_owned(),
                cause: err.to_string(),
            })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(DangerAcceptAnyServerChain::new(provider)))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let tcp = TcpStream::connect(target)
            .await
            .map_err(|err| ConnectError::Connect {
                target: target.to_owned(),
                cause: err.to_string(),
            })?;
        let stream = TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|err| ConnectError::Handshake {
                target: target.to_owned(),
                cause: err.to_string(),
            })?;
        let chain: Vec<CertificateDer<'static>> = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        if chain.is_empty() {
            return Err(ConnectError::NoCertificate {
                target: target.to_owned(),
            });
        }
        Ok(chain)
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .unwrap_or(Err(ConnectError::Timeout {
            target: target.to_owned(),
            secs: timeout.as_secs(),
        }))
}
