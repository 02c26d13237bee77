//! Long operations started from the browser: one mutating operation at a time, each with a
//! log that is written to the database line by line and fanned out to live viewers, so a
//! viewer that reloads the page (or arrives late) reads what it missed and then follows.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio::sync::broadcast;

use crate::db::{Db, DbError, Line};

/// Unix seconds; tests move it forward to expire sessions without waiting.
#[derive(Clone, Default)]
pub struct Clock {
    skew: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp() + self.skew.load(Ordering::Relaxed)
    }

    pub fn advance(&self, seconds: i64) {
        self.skew.fetch_add(seconds, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("operation {0} is running; one mutating operation at a time")]
    Busy(i64),
    #[error(transparent)]
    Db(#[from] DbError),
}

pub struct Operations {
    db: Arc<Db>,
    clock: Clock,
    running: Mutex<Option<i64>>,
    live: Mutex<HashMap<i64, broadcast::Sender<Line>>>,
}

/// An operation's log.
#[derive(Clone)]
pub struct Log {
    operations: Arc<Operations>,
    id: i64,
}

impl Log {
    pub fn line(&self, text: impl Into<String>) {
        let text = text.into();
        let at = self.operations.clock.now();
        match self.operations.db.append_line(self.id, at, &text) {
            Ok(seq) => {
                let live = self
                    .operations
                    .live
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if let Some(sender) = live.get(&self.id) {
                    // No receiver is fine: nobody is watching.
                    let _ = sender.send(Line {
                        seq,
                        at,
                        line: text,
                    });
                }
            }
            Err(e) => tracing::error!(operation = self.id, "losing a log line: {e}"),
        }
    }
}

impl Operations {
    pub fn new(db: Arc<Db>, clock: Clock) -> Arc<Operations> {
        Arc::new(Operations {
            db,
            clock,
            running: Mutex::new(None),
            live: Mutex::new(HashMap::new()),
        })
    }

    pub fn running(&self) -> Option<i64> {
        *self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `work` in the background unless another operation runs; its id.
    pub fn start<F, Fut>(
        self: &Arc<Self>,
        kind: &str,
        target: &str,
        user: &str,
        work: F,
    ) -> Result<i64, StartError>
    where
        F: FnOnce(Log) -> Fut + Send + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        let id = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(id) = *running {
                return Err(StartError::Busy(id));
            }
            let id = self
                .db
                .start_operation(kind, target, user, self.clock.now())?;
            *running = Some(id);
            id
        };
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, broadcast::channel(1024).0);
        let operations = self.clone();
        tokio::spawn(async move {
            let log = Log {
                operations: operations.clone(),
                id,
            };
            let outcome = std::panic::AssertUnwindSafe(work(log.clone()))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err("the operation crashed (a bug in kinit)".into()));
            let succeeded = match outcome {
                Ok(summary) => {
                    log.line(summary);
                    true
                }
                Err(error) => {
                    log.line(format!("failed: {error}"));
                    false
                }
            };
            if let Err(e) = operations
                .db
                .finish_operation(id, succeeded, operations.clock.now())
            {
                tracing::error!(operation = id, "recording the end: {e}");
            }
            *operations.running.lock().unwrap_or_else(|e| e.into_inner()) = None;
            // Dropping the sender ends every live stream of this operation.
            operations
                .live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        });
        Ok(id)
    }

    /// Live lines of a running operation; `None` once it has finished.
    pub fn subscribe(&self, id: i64) -> Option<broadcast::Receiver<Line>> {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .map(broadcast::Sender::subscribe)
    }
}

/// The engine's progress events as lines of an operation's log: each play, each task's result
/// on each host, each host's summary. What the command line draws as progress bars.
pub struct LogSink(pub Log);

impl kinit::engine::events::EventSink for LogSink {
    fn emit(&self, event: &kinit::engine::events::Event) {
        use kinit::engine::events::{EventKind, Status};
        let line = match &event.kind {
            EventKind::RunStart {
                playbook, hosts, ..
            } => {
                format!("playbook {playbook} on {}", hosts.join(", "))
            }
            EventKind::PlayStart { play, hosts } => format!("play {play} ({})", hosts.join(", ")),
            EventKind::TaskStart { .. } => return,
            EventKind::TaskResult {
                host,
                task,
                status,
                duration_ms,
                message,
                ..
            } => {
                if *status == Status::Skipped {
                    return;
                }
                let word = status.word();
                match message {
                    Some(message) if *status == Status::Failed => {
                        format!("{host}: {task}: {word} ({duration_ms} ms): {message}")
                    }
                    _ => format!("{host}: {task}: {word} ({duration_ms} ms)"),
                }
            }
            EventKind::HostSummary {
                host,
                ok,
                changed,
                failed,
                error,
                ..
            } => match error {
                Some(error) => format!("{host}: stopped: {error}"),
                None => format!("{host}: done, {ok} ok, {changed} changed, {failed} failed"),
            },
            EventKind::RunEnd {
                duration_ms,
                success,
            } => format!(
                "run {} after {:.1} s",
                if *success { "succeeded" } else { "failed" },
                *duration_ms as f64 / 1000.0
            ),
        };
        self.0.line(line);
    }
}
