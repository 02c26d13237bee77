//! The run journal: for each host, how far each play got and which handlers are owed, written
//! after every task so that `--resume` continues where a failed or interrupted run stopped
//! (changes already made stay made, handlers they notified still run).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostProgress {
    /// The play the host is in.
    pub play: usize,
    /// The next task to run in that play.
    pub task: usize,
    /// Handlers notified in that play and not yet run.
    pub notified: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Checksum of the playbook text; a journal of another version is not resumed.
    pub playbook: String,
    pub hosts: BTreeMap<String, HostProgress>,
    #[serde(skip)]
    path: Option<PathBuf>,
    #[serde(skip)]
    written: Option<std::time::Instant>,
}

/// How often the journal reaches the disk during a run. A killed run loses at most this much
/// progress, which it redoes (tasks are idempotent); writing after every task of every host
/// would cost more than the tasks.
const WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

impl Journal {
    pub fn new(path: Option<PathBuf>, playbook_checksum: &str) -> Journal {
        Journal {
            playbook: playbook_checksum.to_owned(),
            hosts: BTreeMap::new(),
            path,
            written: None,
        }
    }

    /// Loads a journal to resume; `None` (with the reason) when there is nothing to resume.
    pub fn resume(path: &Path, playbook_checksum: &str) -> Result<Journal, String> {
        let bytes = std::fs::read(path)
            .map_err(|_| format!("no journal at {} to resume from", path.display()))?;
        let mut journal: Journal = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: unreadable journal: {e}", path.display()))?;
        if journal.playbook != playbook_checksum {
            return Err(format!(
                "{} was written by another version of the playbook; run without --resume",
                path.display()
            ));
        }
        journal.path = Some(path.to_owned());
        Ok(journal)
    }

    pub fn progress(&self, host: &str) -> HostProgress {
        self.hosts.get(host).cloned().unwrap_or_default()
    }

    /// Records a host's progress; written to disk at most every [`WRITE_INTERVAL`].
    pub fn record(&mut self, host: &str, progress: HostProgress) -> Result<(), String> {
        self.hosts.insert(host.to_owned(), progress);
        if self.written.is_none_or(|at| at.elapsed() >= WRITE_INTERVAL) {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the journal now (after a failure, at the end of a run). Atomic, not synced: the
    /// journal must survive a killed process, not a power cut.
    pub fn flush(&mut self) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let text = serde_json::to_vec_pretty(self).expect("serialisable");
        let tmp = path.with_extension("tmp");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        self.written = Some(std::time::Instant::now());
        Ok(())
    }
}
