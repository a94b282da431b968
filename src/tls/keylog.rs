//! `--keylog FILE`: the TLS session secrets in the NSS key log format, for
//! decrypting a capture with Wireshark while debugging. Anyone with the file
//! can read the traffic, so it exists only when asked for on the command
//! line, is created 0600, and the server warns about it at start-up.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustls::KeyLog;

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open the key log file `{path}` (--keylog): {cause}; pick a writable path you own",
    path = .path.display()
)]
pub struct KeyLogError {
    pub path: PathBuf,
    pub cause: std::io::Error,
}

/// Appends one `LABEL CLIENT_RANDOM SECRET` line (hex) per secret.
pub struct KeyLogFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl std::fmt::Debug for KeyLogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyLogFile({})", self.path.display())
    }
}

impl KeyLogFile {
    /// Opens `path` for appending, created 0600; an existing file is made
    /// 0600 too, so the secrets never land in a file others can read.
    pub fn open(path: &Path) -> Result<Self, KeyLogError> {
        let wrap = |cause| KeyLogError {
            path: path.to_owned(),
            cause,
        };
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(wrap)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(wrap)?;
        Ok(KeyLogFile {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }
}

impl KeyLog for KeyLogFile {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let line = format!(
            "{label} {} {}\n",
            hex::encode(client_random),
            hex::encode(secret)
        );
        // One write per line under the lock, so concurrent handshakes never
        // interleave; a failed write loses a debugging aid, nothing more.
        if let Ok(mut file) = self.file.lock() {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_in_the_nss_format_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.log");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let log = KeyLogFile::open(&path).unwrap();
        log.log("CLIENT_RANDOM", &[0xab, 0x01], &[0xff]);
        log.log("EXPORTER_SECRET", &[0x02], &[0x10, 0x20]);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "CLIENT_RANDOM ab01 ff\nEXPORTER_SECRET 02 1020\n"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn an_unwritable_path_names_the_flag() {
        let err = KeyLogFile::open(Path::new("/nonexistent-dir/keys.log")).unwrap_err();
        assert!(err.to_string().contains("--keylog"), "{err}");
    }
}
