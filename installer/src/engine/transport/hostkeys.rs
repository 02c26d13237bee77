//! SSH host key verification against OpenSSH known_hosts files: kinit's own
//! (`~/.kinit/known_hosts`), the user's (`~/.ssh/known_hosts`) and any the configuration names.
//! An unknown key is refused with its fingerprint and how to trust it, unless the operator
//! asked to pin keys on first use; a changed key is always refused.

use std::path::{Path, PathBuf};

use russh::keys::{HashAlg, PublicKey};

/// What the known_hosts files say of a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Known,
    Unknown,
    /// A file records a different key of the same type for the host.
    Changed {
        file: PathBuf,
        line: usize,
    },
}

/// Where kinit's own known_hosts lives.
pub fn kinit_known_hosts() -> PathBuf {
    crate::state::kinit_home().join("known_hosts")
}

/// The user's OpenSSH known_hosts.
pub fn user_known_hosts() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".ssh/known_hosts"))
}

/// Checks `key` for `host:port` against `files` (missing files are skipped).
pub fn verify(host: &str, port: u16, key: &PublicKey, files: &[PathBuf]) -> Verdict {
    let mut known = false;
    for file in files.iter().filter(|f| f.is_file()) {
        match russh::keys::check_known_hosts_path(host, port, key, file) {
            Ok(true) => known = true,
            Ok(false) => {}
            Err(russh::keys::Error::KeyChanged { line }) => {
                return Verdict::Changed {
                    file: file.clone(),
                    line,
                };
            }
            Err(_) => {}
        }
    }
    if known {
        Verdict::Known
    } else {
        Verdict::Unknown
    }
}

/// `ED25519 SHA256:…`, as OpenSSH shows keys.
pub fn fingerprint(key: &PublicKey) -> String {
    format!(
        "{} {}",
        key.algorithm().as_str().to_uppercase(),
        key.fingerprint(HashAlg::Sha256)
    )
}

/// Records `key` for `host:port` in `file` (trust on first use).
pub fn learn(host: &str, port: u16, key: &PublicKey, file: &Path) -> Result<(), String> {
    russh::keys::known_hosts::learn_known_hosts_path(host, port, key, file)
        .map_err(|e| format!("{}: {e}", file.display()))
}

pub fn unknown_message(host: &str, port: u16, key: &PublicKey) -> String {
    let target = if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    };
    format!(
        "the host key of {host}:{port} is not known ({}); verify it out of band (e.g. `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the host), \
         then trust it with --accept-new-host-keys (recorded in {}) or add it to ~/.ssh/known_hosts (`ssh-keyscan -p {port} {host}`; entry `{target}`)",
        fingerprint(key),
        kinit_known_hosts().display()
    )
}

pub fn changed_message(host: &str, port: u16, key: &PublicKey, file: &Path, line: usize) -> String {
    format!(
        "REFUSED: the host key of {host}:{port} changed: it now presents {}, but {}:{line} records a different key. \
         Someone may be intercepting the connection. If the host was reinstalled, remove that line \
         (`ssh-keygen -R {host} -f {}`) and connect again",
        fingerprint(key),
        file.display(),
        file.display()
    )
}
