//! One mutating operation per cluster at a time: a lock file in the cluster's state directory,
//! created exclusively, naming its holder. A lock whose holder died on this machine is taken
//! over at once; one held from another machine (or by a live process) expires after
//! [`EXPIRES_AFTER`] and can be broken explicitly (`kinit lock break`), which shows the holder.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::StateDir;

/// Longer than any operation kinit runs (an upgrade of a large cluster takes hours).
pub const EXPIRES_AFTER: i64 = 12 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The operation, as the operator would type it (`backup restore`).
    pub operation: String,
    pub pid: u32,
    pub host: String,
    pub user: String,
    /// Unix seconds.
    pub since: i64,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = time::OffsetDateTime::from_unix_timestamp(self.since)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| self.since.to_string());
        write!(
            f,
            "`kinit {}` (pid {} on {}, user {}, since {since})",
            self.operation, self.pid, self.host, self.user
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the cluster is busy: {holder} is running on it. Wait for it to finish; if it crashed, \
         `kinit lock break -c <config>` releases the lock (it expires by itself after 12 hours)"
    )]
    Held { holder: Holder },
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// The lock, released when dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock_path(state: &StateDir) -> PathBuf {
    state.root().join("lock.json")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn read_holder(path: &Path) -> Option<Holder> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Whether the lock can be taken over without asking: its holder is gone.
fn is_stale(holder: &Holder, now: i64) -> bool {
    let dead_here =
        holder.host == hostname() && !Path::new(&format!("/proc/{}", holder.pid)).exists();
    dead_here || now - holder.since > EXPIRES_AFTER
}

/// Takes the cluster's lock for `operation`, or says who holds it.
pub fn acquire(state: &StateDir, operation: &str) -> Result<Lock, LockError> {
    let path = lock_path(state);
    let io = |e: std::io::Error| LockError::Io {
        path: path.clone(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(state.root()).map_err(io)?;
    let holder = Holder {
        operation: operation.to_owned(),
        pid: std::process::id(),
        host: hostname(),
        user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
        since: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    // Twice at most: once more after clearing a stale lock.
    for _ in 0..2 {
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                file.write_all(&serde_json::to_vec_pretty(&holder).expect("serialisable"))
                    .map_err(io)?;
                return Ok(Lock { path });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                match read_holder(&path) {
                    Some(current) if !is_stale(&current, holder.since) => {
                        return Err(LockError::Held { holder: current });
                    }
                    // Stale, or unreadable (a holder that died while writing it).
                    _ => {
                        tracing::warn!("taking over a stale lock at {}", path.display());
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            Err(e) => return Err(io(e)),
        }
    }
    match read_holder(&path) {
        Some(holder) => Err(LockError::Held { holder }),
        None => Err(io(std::io::Error::other(
            "the lock changed hands while taking it",
        ))),
    }
}

/// Who holds the cluster's lock, if anyone.
pub fn holder(state: &StateDir) -> Option<Holder> {
    read_holder(&lock_path(state))
}

/// Removes the lock whoever holds it; returns the holder it had.
pub fn break_lock(state: &StateDir) -> Result<Option<Holder>, LockError> {
    let path = lock_path(state);
    let holder = read_holder(&path);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(holder),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LockError::Io {
            path,
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let lock = acquire(&state, "backup create").unwrap();
        let refused = acquire(&state, "upgrade apply").unwrap_err();
        let message = refused.to_string();
        assert!(message.contains("`kinit backup create`"), "{message}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(lock);
        let again = acquire(&state, "upgrade apply").unwrap();
        assert_eq!(holder(&state).unwrap().operation, "upgrade apply");
        drop(again);
        assert!(holder(&state).is_none(), "released on drop");
    }

    #[test]
    fn a_dead_holder_here_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        // A process that has exited: its pid names no process any more.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = Holder {
            operation: "init".into(),
            pid,
            host: hostname(),
            user: "root".into(),
            since: time::OffsetDateTime::now_utc().unix_timestamp(),
        };
        std::fs::write(lock_path(&state), serde_json::to_vec(&dead).unwrap()).unwrap();
        let lock = acquire(&state, "backup create").unwrap();
        assert_eq!(holder(&state).unwrap().pid, std::process::id());
        drop(lock);
    }

    #[test]
    fn another_machines_lock_holds_until_it_expires_or_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let elsewhere = Holder {
            operation: "upgrade apply".into(),
            pid: 1,
            host: "another-machine".into(),
            user: "ops".into(),
            since: now - 60,
        };
        std::fs::write(lock_path(&state), serde_json::to_vec(&elsewhere).unwrap()).unwrap();
        assert!(matches!(
            acquire(&state, "backup create"),
            Err(LockError::Held { .. })
        ));
        assert_eq!(break_lock(&state).unwrap(), Some(elsewhere.clone()));
        drop(acquire(&state, "backup create").unwrap());

        let expired = Holder {
            since: now - EXPIRES_AFTER - 1,
            ..elsewhere
        };
        std::fs::write(lock_path(&state), serde_json::to_vec(&expired).unwrap()).unwrap();
        drop(acquire(&state, "backup create").unwrap());
    }
}
