//! What operators ask first, kept in memory and served on the admin port:
//! the last refusals (`/failures`) and the client identities seen
//! (`/clients`). Both are bounded, so a flood cannot grow them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cert::CertDetails;
use crate::rejection::Rejection;

/// Refusals kept for `/failures`.
const FAILURES_KEPT: usize = 100;
/// Distinct client certificates kept for `/clients`.
const CLIENTS_KEPT: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub time: String,
    pub peer: String,
    /// `handshake` or `request`.
    pub stage: &'static str,
    pub reason: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClientSeen {
    pub subject: String,
    pub issuer: String,
    pub sha256_fingerprint: String,
    pub not_after: String,
    pub expires_in_days: i64,
    pub first_seen: String,
    pub last_seen: String,
    pub connections: u64,
}

#[derive(Debug, Default)]
pub struct Audit {
    failures: Mutex<VecDeque<Failure>>,
    /// By SHA-256 fingerprint. Updated on every connection, so times stay
    /// unformatted until `/clients` asks.
    clients: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug)]
struct Seen {
    subject: String,
    issuer: String,
    not_after: String,
    expires_in_days: i64,
    first_seen: OffsetDateTime,
    last_seen: OffsetDateTime,
    connections: u64,
}

fn now() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

impl Audit {
    pub fn refused(&self, peer: &str, stage: &'static str, rejection: &Rejection) {
        if let Ok(mut failures) = self.failures.lock() {
            if failures.len() == FAILURES_KEPT {
                failures.pop_front();
            }
            failures.push_back(Failure {
                time: now(),
                peer: peer.to_owned(),
                stage,
                reason: rejection.reason.as_str().to_owned(),
                detail: rejection.detail.clone(),
            });
        }
    }

    /// Records a verified client certificate (once per connection).
    pub fn seen(&self, details: &CertDetails) {
        let Ok(mut clients) = self.clients.lock() else {
            return;
        };
        let time = OffsetDateTime::now_utc();
        let key = &details.fingerprints.sha256;
        if let Some(client) = clients.get_mut(key) {
            client.last_seen = time;
            client.expires_in_days = details.expires_in_days;
            client.connections += 1;
            return;
        }
        if clients.len() >= CLIENTS_KEPT {
            // Forget the client seen least recently.
            if let Some(oldest) = clients
                .iter()
                .min_by_key(|(_, client)| client.last_seen)
                .map(|(k, _)| k.clone())
            {
                clients.remove(&oldest);
            }
        }
        clients.insert(
            key.clone(),
            Seen {
                subject: details.subject.rfc4514.clone(),
                issuer: details.issuer.rfc4514.clone(),
                not_after: details.not_after.clone(),
                expires_in_days: details.expires_in_days,
                first_seen: time,
                last_seen: time,
                connections: 1,
            },
        );
    }

    /// Newest first.
    pub fn failures(&self) -> Vec<Failure> {
        self.failures
            .lock()
            .map(|f| f.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Soonest to expire first, for rotation planning.
    pub fn clients(&self) -> Vec<ClientSeen> {
        let mut clients: Vec<ClientSeen> = self
            .clients
            .lock()
            .map(|c| {
                c.iter()
                    .map(|(fingerprint, seen)| ClientSeen {
                        subject: seen.subject.clone(),
                        issuer: seen.issuer.clone(),
                        sha256_fingerprint: fingerprint.clone(),
                        not_after: seen.not_after.clone(),
                        expires_in_days: seen.expires_in_days,
                        first_seen: rfc3339(seen.first_seen),
                        last_seen: rfc3339(seen.last_seen),
                        connections: seen.connections,
                    })
                    .collect()
            })
            .unwrap_or_default();
        clients.sort_by(|a, b| {
            a.not_after
                .cmp(&b.not_after)
                .then(a.subject.cmp(&b.subject))
        });
        clients
    }
}
