//! Permissions of the secret files `mtls serve` loads: private keys, the
//! upstream PKCS#12 bundle, the identity signing key and the session ticket
//! keys. A secret that every user of the machine can read (or replace) is
//! refused at start-up and on reload, unless the operator says otherwise.
//!
//! Group access is allowed: in containers and Kubernetes (`fsGroup`) the
//! group is how a non-root server reads a mounted secret, and whoever set the
//! group chose who is in it. "Other" is everyone, and never a choice.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tracing::warn;

/// Permission bits that give every user of the machine access.
const OTHER_READ: u32 = 0o004;
const OTHER_WRITE: u32 = 0o002;
/// Group write lets the group replace the key: allowed, with a warning.
const GROUP_WRITE: u32 = 0o020;

/// Which secret a file is, for messages that name its flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretRole {
    ServerKey,
    UpstreamKey,
    UpstreamP12,
    IdentitySigningKey,
    SessionTicketKey,
}

impl SecretRole {
    pub fn what(self) -> &'static str {
        match self {
            SecretRole::ServerKey => "server private key",
            SecretRole::UpstreamKey => "upstream client key",
            SecretRole::UpstreamP12 => "upstream PKCS#12 bundle",
            SecretRole::IdentitySigningKey => "identity signing key",
            SecretRole::SessionTicketKey => "session ticket key",
        }
    }

    pub fn flag(self) -> &'static str {
        match self {
            SecretRole::ServerKey => "--key / SERVER_KEY",
            SecretRole::UpstreamKey => "--upstream-key / UPSTREAM_KEY",
            SecretRole::UpstreamP12 => "--upstream-p12 / UPSTREAM_P12",
            SecretRole::IdentitySigningKey => {
                "--identity-signing-key-file / IDENTITY_SIGNING_KEY_FILE"
            }
            SecretRole::SessionTicketKey => "--session-ticket-key-file / SESSION_TICKET_KEY_FILE",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "{what} `{path}` ({flag}) is {access} by every user of this machine (mode {mode:04o}); run `chmod 600 {path}` (in Kubernetes: defaultMode: 0400, or 0440 with fsGroup), or start with --allow-insecure-key-permissions / ALLOW_INSECURE_KEY_PERMISSIONS=true to accept it",
    what = .role.what(), flag = .role.flag(), path = .path.display()
)]
pub struct InsecurePermissions {
    pub role: SecretRole,
    pub path: PathBuf,
    pub mode: u32,
    access: &'static str,
}

/// Refuses `path` when others may read or write it, unless `allow_insecure`
/// (then it only warns). A file that cannot be examined passes: reading it
/// next reports the real problem (missing, unreadable) with its own fix.
pub fn check(
    path: &Path,
    role: SecretRole,
    allow_insecure: bool,
) -> Result<(), InsecurePermissions> {
    // `metadata` follows symbolic links: the target's mode is what counts
    // (Kubernetes mounts secrets as links into a hidden directory).
    let Ok(metadata) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = metadata.permissions().mode() & 0o7777;
    let access = match (mode & OTHER_READ != 0, mode & OTHER_WRITE != 0) {
        (true, true) => "readable and writable",
        (true, false) => "readable",
        (false, true) => "writable",
        (false, false) => {
            if mode & GROUP_WRITE != 0 {
                warn!(
                    "{} `{}` ({}) is writable by its group (mode {mode:04o}): any member can replace it; run `chmod 640 {}`",
                    role.what(),
                    path.display(),
                    role.flag(),
                    path.display()
                );
            }
            return Ok(());
        }
    };
    let insecure = InsecurePermissions {
        role,
        path: path.to_owned(),
        mode,
        access,
    };
    if allow_insecure {
        warn!("{insecure} [accepted: --allow-insecure-key-permissions is set]");
        return Ok(());
    }
    Err(insecure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with_mode(dir: &Path, mode: u32) -> PathBuf {
        let path = dir.join(format!("key-{mode:o}"));
        std::fs::write(&path, b"secret").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn owner_and_group_access_pass_other_access_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o400, 0o640, 0o440, 0o660] {
            let path = file_with_mode(dir.path(), mode);
            assert!(
                check(&path, SecretRole::ServerKey, false).is_ok(),
                "{mode:o}"
            );
        }
        for (mode, access) in [
            (0o644, "readable"),
            (0o604, "readable"),
            (0o602, "writable"),
            (0o666, "readable and writable"),
        ] {
            let path = file_with_mode(dir.path(), mode);
            let err = check(&path, SecretRole::ServerKey, false).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(&format!("is {access} by every user")),
                "{text}"
            );
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
            assert!(text.contains("--key / SERVER_KEY"), "{text}");
            assert!(text.contains(&format!("mode {mode:04o}")), "{text}");
            assert!(!text.contains('\n'));
        }
    }

    #[test]
    fn the_override_accepts_and_missing_files_are_left_to_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with_mode(dir.path(), 0o644);
        assert!(check(&path, SecretRole::SessionTicketKey, true).is_ok());
        assert!(check(&dir.path().join("absent"), SecretRole::ServerKey, false).is_ok());
    }

    #[test]
    fn a_symbolic_link_is_judged_by_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = file_with_mode(dir.path(), 0o644);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(check(&link, SecretRole::UpstreamKey, false).is_err());
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check(&link, SecretRole::UpstreamKey, false).is_ok());
    }
}
