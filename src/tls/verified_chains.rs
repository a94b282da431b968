//! Chains a `ClientTrust` verified recently, so that a returning client (a
//! resumed session, a new connection with the same certificate, or a proxy
//! forwarding the same certificate on every request) is neither verified
//! nor decoded again.
//!
//! Only success is remembered, for the exact chain (every certificate, in
//! order), and only while verifying again would still succeed:
//! - trust anchors and CRLs cannot change under an entry, because a reload
//!   builds a new `ClientTrust` and with it an empty cache;
//! - time can: an entry ends at the earliest notAfter in the chain and, with
//!   CRLs, at the earliest CRL nextUpdate (an expired CRL fails closed);
//! - an entry also ends after `MAX_AGE`, so decoded details such as
//!   "expires in N days" never go stale for long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::VerifiedClient;

/// Bounded memory: when full, the cache starts over.
const CAPACITY: usize = 4096;
const MAX_AGE: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct VerifiedChains {
    /// By the leaf's DER; the entry's chain must match the rest.
    entries: Mutex<HashMap<Box<[u8]>, Entry>>,
    /// The earliest nextUpdate of the configured CRLs (Unix seconds).
    crls_valid_until: Option<u64>,
}

#[derive(Debug)]
struct Entry {
    client: Arc<VerifiedClient>,
    /// Unix seconds after which the chain (or a CRL) has expired.
    valid_until: u64,
    cached_at: Instant,
}

impl VerifiedChains {
    pub fn new(crls_valid_until: Option<u64>) -> Self {
        VerifiedChains {
            entries: Mutex::new(HashMap::new()),
            crls_valid_until,
        }
    }

    /// The identity of `chain`, if this trust verified it and verifying it
    /// again at `now` would still succeed.
    pub fn get(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> Option<Arc<VerifiedClient>> {
        let leaf: &[u8] = chain.first()?;
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.get(leaf)?;
        if !same_chain(&entry.client.chain, chain) {
            return None;
        }
        if now.as_secs() < entry.valid_until && entry.cached_at.elapsed() < MAX_AGE {
            return Some(entry.client.clone());
        }
        entries.remove(leaf);
        None
    }

    /// Remembers a chain that was just verified, and returns its identity.
    pub fn insert(&self, chain: &[CertificateDer<'_>]) -> Arc<VerifiedClient> {
        let client = Arc::new(VerifiedClient::new(chain));
        let Some(chain_valid_until) = earliest_not_after(chain) else {
            // Undecodable here although webpki accepted it: do not cache.
            return client;
        };
        let valid_until = match self.crls_valid_until {
            Some(crls) => crls.min(chain_valid_until),
            None => chain_valid_until,
        };
        if let (Some(leaf), Ok(mut entries)) = (chain.first(), self.entries.lock()) {
            if entries.len() >= CAPACITY {
                entries.clear();
            }
            entries.insert(
                leaf.as_ref().into(),
                Entry {
                    client: client.clone(),
                    valid_until,
                    cached_at: Instant::now(),
                },
            );
        }
        client
    }
}

fn same_chain(cached: &[CertificateDer<'_>], presented: &[CertificateDer<'_>]) -> bool {
    cached.len() == presented.len()
        && cached
            .iter()
            .zip(presented)
            .all(|(a, b)| a.as_ref() == b.as_ref())
}

/// The earliest notAfter in the chain, in Unix seconds.
fn earliest_not_after(chain: &[CertificateDer<'_>]) -> Option<u64> {
    chain
        .iter()
        .map(|der| {
            let (_, cert) = X509Certificate::from_der(der).ok()?;
            u64::try_from(cert.validity().not_after.timestamp()).ok()
        })
        .try_fold(u64::MAX, |earliest, not_after| {
            Some(earliest.min(not_after?))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};
    use time::OffsetDateTime;

    fn cert_expiring_at(unix: i64) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec!["client".to_owned()]).unwrap();
        params.not_before = OffsetDateTime::from_unix_timestamp(unix - 86_400).unwrap();
        params.not_after = OffsetDateTime::from_unix_timestamp(unix).unwrap();
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn at(unix: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(unix))
    }

    #[test]
    fn a_cached_chain_ends_at_its_earliest_not_after() {
        let chain = [
            cert_expiring_at(2_000_000_000),
            cert_expiring_at(1_900_000_000),
        ];
        let cache = VerifiedChains::new(None);
        assert!(cache.get(&chain, at(1_800_000_000)).is_none());
        let inserted = cache.insert(&chain);
        let found = cache.get(&chain, at(1_800_000_000)).expect("cached");
        assert!(Arc::ptr_eq(&inserted, &found));
        assert!(cache.get(&chain, at(1_900_000_000)).is_none());
        // Expired entries are dropped, not kept.
        assert!(cache.get(&chain, at(1_800_000_000)).is_none());
    }

    #[test]
    fn a_cached_chain_ends_when_a_crl_expires() {
        let chain = [cert_expiring_at(2_000_000_000)];
        let cache = VerifiedChains::new(Some(1_850_000_000));
        cache.insert(&chain);
        assert!(cache.get(&chain, at(1_849_999_999)).is_some());
        assert!(cache.get(&chain, at(1_850_000_000)).is_none());
    }

    #[test]
    fn chains_differ_by_every_certificate_and_their_order() {
        let a = cert_expiring_at(2_000_000_000);
        let b = cert_expiring_at(2_000_000_000);
        let cache = VerifiedChains::new(None);
        cache.insert(&[a.clone(), b.clone()]);
        let now = at(1_800_000_000);
        assert!(cache.get(&[a.clone(), b.clone()], now).is_some());
        assert!(cache.get(&[b.clone(), a.clone()], now).is_none());
        assert!(cache.get(std::slice::from_ref(&a), now).is_none());
        assert!(cache.get(&[b], now).is_none());
    }
}
