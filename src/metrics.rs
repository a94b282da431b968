//! Prometheus metrics (prometheus-client, OpenMetrics text), served on the
//! admin endpoint at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::rejection::ReasonCode;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `handshake` (required mode) or `request` (a 403).
    pub stage: String,
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    /// Handshakes: `ok`, `refused` (client certificate), `failed`
    /// (anything else) or `timeout`; reloads: `success` or `failure`.
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `2xx`, `4xx`, ...
    pub status: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    refusals: Family<RefusalLabels, Counter>,
    handshakes: Family<HandshakeLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    pub active_connections: Gauge,
    refused_connections: Counter,
    reloads: Family<HandshakeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "mtls_client_refusals",
            "Clients refused, by stage and reason code",
            refusals.clone(),
        );
        let handshakes = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "mtls_handshakes",
            "TLS handshakes by result",
            handshakes.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "mtls_requests",
            "HTTP requests by status class",
            requests.clone(),
        );
        let active_connections = Gauge::default();
        registry.register(
            "mtls_active_connections",
            "Established TLS connections",
            active_connections.clone(),
        );
        let refused_connections = Counter::default();
        registry.register(
            "mtls_connections_refused",
            "Connections closed at once because --max-connections was reached",
            refused_connections.clone(),
        );
        let reloads = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "mtls_reloads",
            "Reloads of certificates, CAs, CRLs and policy, by result",
            reloads.clone(),
        );
        Metrics {
            registry,
            refusals,
            handshakes,
            requests,
            active_connections,
            refused_connections,
            reloads,
        }
    }
}

impl Metrics {
    pub fn refused(&self, stage: &str, reason: ReasonCode) {
        self.refusals
            .get_or_create(&RefusalLabels {
                stage: stage.to_owned(),
                reason: reason.as_str().to_owned(),
            })
            .inc();
    }

    /// `success` or `failure`.
    pub fn reload(&self, result: &str) {
        self.reloads
            .get_or_create(&HandshakeLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn connection_refused(&self) {
        self.refused_connections.inc();
    }

    pub fn handshake(&self, result: &str) {
        self.handshakes
            .get_or_create(&HandshakeLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn request(&self, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                status: format!("{}xx", status / 100),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
