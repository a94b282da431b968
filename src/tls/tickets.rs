//! TLS session tickets sealed with a key shared by every replica
//! (`--session-ticket-key-file`), so a client resumes on any of them.
//! Resumption never skips checks: the restored client certificate is
//! verified again after the handshake (see `identity.rs`).

use std::path::{Path, PathBuf};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

/// How long a ticket may be used, in seconds.
const TICKET_LIFETIME: u32 = 6 * 60 * 60;
/// Shorter key material is refused.
const MIN_KEY_BYTES: usize = 32;
/// The ticket starts with this many bytes of the key's fingerprint, so a
/// ticket sealed under another key is recognised at once.
const KEY_ID_LEN: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum TicketKeyError {
    #[error(
        "cannot read the session ticket key `{path}` (--session-ticket-key-file / SESSION_TICKET_KEY_FILE): {cause}",
        path = .path.display()
    )]
    Unreadable {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "the session ticket key `{path}` has {len} bytes; use at least 32 random bytes, the same file on every replica (`(umask 077; head -c 32 /dev/urandom > {path})`)",
        path = .path.display()
    )]
    TooShort { path: PathBuf, len: usize },
}

/// ChaCha20-Poly1305 tickets. The first key seals new tickets; every key
/// opens them, so keys rotate without a burst of full handshakes: put the
/// new key first, keep the old one after it until its tickets expire.
pub struct SharedKeyTicketer {
    keys: Vec<TicketKey>,
    random: SystemRandom,
}

struct TicketKey {
    key: LessSafeKey,
    id: [u8; KEY_ID_LEN],
}

impl std::fmt::Debug for SharedKeyTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        let ids: Vec<String> = self.keys.iter().map(|k| hex::encode(k.id)).collect();
        write!(f, "SharedKeyTicketer(key ids {})", ids.join(", "))
    }
}

impl SharedKeyTicketer {
    /// One key per file, the first file's key sealing new tickets.
    pub fn from_files(paths: &[PathBuf]) -> Result<Self, TicketKeyError> {
        let keys = paths
            .iter()
            .map(|path| TicketKey::from_file(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SharedKeyTicketer {
            keys,
            random: SystemRandom::new(),
        })
    }
}

impl TicketKey {
    fn from_file(path: &Path) -> Result<Self, TicketKeyError> {
        let material = std::fs::read(path).map_err(|cause| TicketKeyError::Unreadable {
            path: path.to_owned(),
            cause,
        })?;
        if material.len() < MIN_KEY_BYTES {
            return Err(TicketKeyError::TooShort {
                path: path.to_owned(),
                len: material.len(),
            });
        }
        // Any length of file becomes one 256-bit key; its own hash names it.
        let key_bytes = digest(&SHA256, &material);
        let id_hash = digest(&SHA256, key_bytes.as_ref());
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&id_hash.as_ref()[..KEY_ID_LEN]);
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key_bytes.as_ref()).map_err(|_| {
            TicketKeyError::TooShort {
                path: path.to_owned(),
                len: material.len(),
            }
        })?;
        Ok(TicketKey {
            key: LessSafeKey::new(unbound),
            id: key_id,
        })
    }
}

impl ProducesTickets for SharedKeyTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_LIFETIME
    }

    /// `key id || nonce || ciphertext+tag`, the key id authenticated too.
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let current = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        let mut sealed = plain.to_vec();
        current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(current.id),
                &mut sealed,
            )
            .ok()?;
        let mut ticket = Vec::with_capacity(KEY_ID_LEN + NONCE_LEN + sealed.len());
        ticket.extend_from_slice(&current.id);
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let (key_id, rest) = ticket.split_at_checked(KEY_ID_LEN)?;
        let key = self.keys.iter().find(|k| k.id == key_id)?;
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(key.id), &mut buffer)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticketer(bytes: &[u8]) -> SharedKeyTicketer {
        rotating(&[bytes])
    }

    fn rotating(keys: &[&[u8]]) -> SharedKeyTicketer {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = keys
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                let path = dir.path().join(format!("k{i}"));
                std::fs::write(&path, bytes).unwrap();
                path
            })
            .collect();
        SharedKeyTicketer::from_files(&paths).unwrap()
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let old = ticketer(&[1u8; 32]);
        let rotated = rotating(&[&[2u8; 32], &[1u8; 32]]);
        let new_only = ticketer(&[2u8; 32]);
        let from_old = old.encrypt(b"old session").unwrap();
        assert_eq!(rotated.decrypt(&from_old).unwrap(), b"old session");
        let from_rotated = rotated.encrypt(b"new session").unwrap();
        assert_eq!(new_only.decrypt(&from_rotated).unwrap(), b"new session");
        assert_eq!(old.decrypt(&from_rotated), None);
    }

    #[test]
    fn tickets_round_trip_only_under_the_same_key() {
        let a = ticketer(&[7u8; 32]);
        let b = ticketer(&[7u8; 32]);
        let other = ticketer(&[8u8; 32]);
        let ticket = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&ticket).unwrap(), b"session state");
        assert_eq!(other.decrypt(&ticket), None);
        let mut tampered = ticket.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(a.decrypt(&tampered), None);
        assert_eq!(a.decrypt(&ticket[..10]), None);
        assert_ne!(
            a.encrypt(b"x").unwrap(),
            a.encrypt(b"x").unwrap(),
            "fresh nonces"
        );
    }
}
