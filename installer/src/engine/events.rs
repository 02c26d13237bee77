//! Progress events: one per play, task start, task result and host summary. The command line
//! draws them as progress bars or lines, or prints them as JSON (`--output json`); the console
//! streams the same JSON to browsers.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Changed,
    Failed,
    Skipped,
}

impl Status {
    /// As progress lines print it; a failure stands out.
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Failed => "FAILED",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    RunStart {
        playbook: String,
        hosts: Vec<String>,
        dry_run: bool,
    },
    PlayStart {
        play: String,
        hosts: Vec<String>,
    },
    TaskStart {
        host: String,
        play: String,
        task: String,
        index: usize,
        handler: bool,
    },
    TaskResult {
        host: String,
        play: String,
        task: String,
        index: usize,
        handler: bool,
        status: Status,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
    },
    HostSummary {
        host: String,
        ok: usize,
        changed: usize,
        failed: usize,
        skipped: usize,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    RunEnd {
        duration_ms: u64,
        success: bool,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// RFC 3339 time.
    pub time: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    pub fn now(kind: EventKind) -> Event {
        Event {
            time: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            kind,
        }
    }
}

/// Where events go.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: &Event);
}

/// Discards events.
pub struct Silent;

impl EventSink for Silent {
    fn emit(&self, _: &Event) {}
}

/// Collects events, for tests and for the console's operation log.
#[derive(Default)]
pub struct Recorder(pub std::sync::Mutex<Vec<Event>>);

impl EventSink for Recorder {
    fn emit(&self, event: &Event) {
        self.0.lock().expect("not poisoned").push(event.clone());
    }
}
