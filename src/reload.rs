//! Hot reload: the server certificate and key, the client CAs, the CRLs and
//! the policy are rebuilt together on SIGHUP or when their files change, and
//! swapped in atomically. New handshakes use the new material; established
//! connections keep the material they started with. A broken file keeps the
//! old material running and is reported once.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;
use tracing::{error, info};

use crate::config::ServeConfig;
use crate::http::Routes;
use crate::metrics::Metrics;
use crate::policy::PolicyError;
use crate::tls::client_auth::ClientTrust;
use crate::tls::{self, TlsConfigError};

/// Everything a connection needs that a reload may replace.
pub struct Material {
    pub acceptor: TlsAcceptor,
    pub client_trust: Option<Arc<ClientTrust>>,
    pub routes: Routes,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl Material {
    /// Loads and validates every file of `config`.
    pub fn load(config: &ServeConfig, metrics: &Arc<Metrics>) -> Result<Self, ReloadError> {
        let setup = tls::server_config(config)?;
        let policy = config.policy_source.load(&config.policy)?;
        metrics.material_loaded(cert_not_after(config), crl_next_update(config));
        Ok(Material {
            acceptor: TlsAcceptor::from(setup.config),
            client_trust: setup.client_trust,
            routes: Routes::new(
                &config.welcome_message,
                config.client_auth,
                policy,
                metrics.clone(),
                config.hsts.as_ref(),
            ),
        })
    }
}

/// Rebuilds the material on demand and publishes it.
pub struct Reloader {
    config: ServeConfig,
    current: Arc<ArcSwap<Material>>,
    metrics: Arc<Metrics>,
    /// The file stamps of the last attempt, good or bad: a broken file is
    /// reported once, not on every poll.
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl Reloader {
    pub fn new(
        config: ServeConfig,
        current: Arc<ArcSwap<Material>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let stamps = Mutex::new(stamps(&watched_files(&config)));
        Reloader {
            config,
            current,
            metrics,
            stamps,
        }
    }

    /// Rebuilds from the files now; on failure the old material stays.
    pub fn reload(&self, why: &str) -> Result<(), ReloadError> {
        if let Ok(mut stamps) = self.stamps.lock() {
            *stamps = crate::reload::stamps(&watched_files(&self.config));
        }
        match Material::load(&self.config, &self.metrics) {
            Ok(material) => {
                self.current.store(Arc::new(material));
                self.metrics.reload("success");
                info!("reloaded certificates, CAs, CRLs and policy ({why})");
                Ok(())
            }
            Err(err) => {
                self.metrics.reload("failure");
                error!("reload failed ({why}); the previous configuration stays in use: {err}");
                Err(err)
            }
        }
    }

    /// Reloads when a watched file changed since the last attempt.
    pub fn reload_if_changed(&self) {
        let now = stamps(&watched_files(&self.config));
        let changed = self.stamps.lock().map(|old| *old != now).unwrap_or(false);
        if changed {
            let _ = self.reload("a watched file changed");
        }
    }

    /// Polls the watched files until the returned task is dropped.
    pub fn watch(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let reloader = self.clone();
                // File reads and PEM parsing are blocking work.
                let _ = tokio::task::spawn_blocking(move || reloader.reload_if_changed()).await;
            }
        })
    }
}

fn watched_files(config: &ServeConfig) -> Vec<PathBuf> {
    let mut files = vec![
        config.cert.clone(),
        config.key.clone(),
        config.client_ca.clone(),
    ];
    files.extend(config.crls.iter().cloned());
    files.extend(config.policy_source.file.iter().cloned());
    files
}

/// Modification time and size of each file (`None` when unreadable).
fn stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|path| {
            std::fs::metadata(path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// The leaf's notAfter (Unix seconds), for the expiry metric.
fn cert_not_after(config: &ServeConfig) -> Option<i64> {
    let chain = tls::pem::load_certificates(tls::pem::FileRole::ServerCert, &config.cert).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(chain.first()?).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The earliest nextUpdate of the configured CRLs (Unix seconds).
fn crl_next_update(config: &ServeConfig) -> Option<i64> {
    let crls: Vec<_> = config
        .crls
        .iter()
        .filter_map(|path| crate::input::crls(path).ok())
        .flatten()
        .collect();
    tls::earliest_next_update(&crls)
}
