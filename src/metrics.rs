//! Prometheus metrics (prometheus-client, OpenMetrics text), served on the
//! admin endpoint at `/metrics`.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
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
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `2xx`, `4xx`, ...
    pub status: &'static str,
    /// A built-in route, `upstream`, or `other` (bounded cardinality).
    pub route: &'static str,
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// An index into `STATUS_CLASSES`.
fn status_class(status: u16) -> usize {
    match status / 100 {
        1 => 0,
        2 => 1,
        3 => 2,
        4 => 3,
        _ => 4,
    }
}

/// Built-in routes are labelled by path; everything else by what answered.
const ROUTES: [&str; 8] = [
    "/", "/healthz", "/cert", "/headers", "/whoami", "/hello", "other", "upstream",
];

/// A `route` label: an index into `ROUTES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route(usize);

impl Route {
    pub const OTHER: Route = Route(6);
    pub const UPSTREAM: Route = Route(7);

    pub fn as_str(self) -> &'static str {
        ROUTES[self.0]
    }
}

pub fn route_label(path: &str, proxied: bool) -> Route {
    if proxied {
        return Route::UPSTREAM;
    }
    ROUTES[..Route::OTHER.0]
        .iter()
        .position(|route| *route == path)
        .map_or(Route::OTHER, Route)
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    refusals: Family<RefusalLabels, Counter>,
    handshakes: Family<HandshakeLabels, Counter>,
    /// `handshakes{result="ok"}`, taken once, as `request_counters` are.
    handshakes_ok: OnceLock<Counter>,
    requests: Family<RequestLabels, Counter>,
    /// The `requests` counters by status class and route, each taken from
    /// the family on its first use: the family's lookup hashes the labels
    /// under a lock on every call (callgrind: ~360 instructions a request).
    request_counters: [[OnceLock<Counter>; ROUTES.len()]; STATUS_CLASSES.len()],
    pub active_connections: Gauge,
    /// HTTP/1.1 connections parked between requests (src/parking.rs).
    pub idle_connections: Gauge,
    refused_connections: Counter,
    reloads: Family<HandshakeLabels, Counter>,
    request_duration: Histogram,
    spoof_attempts: Counter,
    cert_not_after: Gauge,
    crl_next_update: Gauge,
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
        let idle_connections = Gauge::default();
        registry.register(
            "mtls_idle_connections",
            "HTTP/1.1 connections waiting for their next request, with hyper's buffers released",
            idle_connections.clone(),
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
        let request_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "mtls_request_duration_seconds",
            "Time to the response head (includes the upstream's time when proxying)",
            request_duration.clone(),
        );
        let spoof_attempts = Counter::default();
        registry.register(
            "mtls_identity_spoof_attempts",
            "Requests that carried identity headers of their own (removed)",
            spoof_attempts.clone(),
        );
        let cert_not_after = Gauge::default();
        registry.register(
            "mtls_server_certificate_not_after_seconds",
            "The server certificate's notAfter, Unix seconds",
            cert_not_after.clone(),
        );
        let crl_next_update = Gauge::default();
        registry.register(
            "mtls_crl_next_update_seconds",
            "The earliest nextUpdate of the loaded CRLs, Unix seconds",
            crl_next_update.clone(),
        );
        Metrics {
            registry,
            refusals,
            handshakes,
            handshakes_ok: OnceLock::new(),
            requests,
            request_counters: Default::default(),
            active_connections,
            idle_connections,
            refused_connections,
            reloads,
            request_duration,
            spoof_attempts,
            cert_not_after,
            crl_next_update,
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
    pub fn reload(&self, result: &'static str) {
        self.reloads
            .get_or_create(&HandshakeLabels { result })
            .inc();
    }

    pub fn connection_refused(&self) {
        self.refused_connections.inc();
    }

    pub fn handshake(&self, result: &'static str) {
        self.handshakes
            .get_or_create(&HandshakeLabels { result })
            .inc();
    }

    /// `handshake("ok")`, for every connection: without the family's lookup.
    pub fn handshake_ok(&self) {
        self.handshakes_ok
            .get_or_init(|| {
                self.handshakes
                    .get_or_create_owned(&HandshakeLabels { result: "ok" })
            })
            .inc();
    }

    pub fn request(&self, status: u16, route: Route, seconds: f64) {
        let class = status_class(status);
        self.request_counters[class][route.0]
            .get_or_init(|| {
                self.requests.get_or_create_owned(&RequestLabels {
                    status: STATUS_CLASSES[class],
                    route: route.as_str(),
                })
            })
            .inc();
        self.request_duration.observe(seconds);
    }

    pub fn spoof_attempt(&self) {
        self.spoof_attempts.inc();
    }

    /// The server certificate's notAfter and the earliest CRL nextUpdate,
    /// as Unix seconds, after each (re)load.
    pub fn material_loaded(&self, cert_not_after: Option<i64>, crl_next_update: Option<i64>) {
        if let Some(seconds) = cert_not_after {
            self.cert_not_after.set(seconds);
        }
        if let Some(seconds) = crl_next_update {
            self.crl_next_update.set(seconds);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_status_class_and_route() {
        let metrics = Metrics::default();
        metrics.request(200, route_label("/", false), 0.001);
        metrics.request(204, route_label("/", false), 0.001);
        metrics.request(404, route_label("/nowhere", false), 0.001);
        metrics.request(502, route_label("/", true), 0.001);
        metrics.request(999, route_label("/hello", false), 0.001);
        let text = metrics.encode();
        for line in [
            "mtls_requests_total{status=\"2xx\",route=\"/\"} 2",
            "mtls_requests_total{status=\"4xx\",route=\"other\"} 1",
            "mtls_requests_total{status=\"5xx\",route=\"upstream\"} 1",
            "mtls_requests_total{status=\"5xx\",route=\"/hello\"} 1",
            "mtls_request_duration_seconds_count 5",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        // Series appear when first counted, not before.
        assert_eq!(text.matches("mtls_requests_total{").count(), 4, "{text}");
    }

    #[test]
    fn every_built_in_route_is_a_label_of_its_own() {
        for path in ["/", "/healthz", "/cert", "/headers", "/whoami", "/hello"] {
            assert_eq!(route_label(path, false).as_str(), path);
        }
        assert_eq!(route_label("/cert/", false), Route::OTHER);
        assert_eq!(route_label("", false), Route::OTHER);
        assert_eq!(route_label("/hello", true), Route::UPSTREAM);
    }
}
