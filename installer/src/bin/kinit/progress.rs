//! Showing a run's progress: a line per host with its current task and elapsed time on a
//! terminal (indicatif), plain lines when output is not a terminal or NO_COLOR is set, or one
//! JSON event per line (`--output json`, what the console consumes). A summary table closes
//! text output.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use clap::ValueEnum;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kinit::engine::events::{Event, EventKind, EventSink, Status};
use kinit::engine::runner::RunReport;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Progress bars on a terminal, plain lines otherwise.
    Text,
    /// One JSON event per line on standard output.
    Json,
}

enum Mode {
    Bars {
        multi: MultiProgress,
        bars: Mutex<HashMap<String, ProgressBar>>,
    },
    Lines,
    Json,
}

pub struct Progress {
    mode: Mode,
}

impl Progress {
    pub fn new(format: OutputFormat) -> Progress {
        let mode = match format {
            OutputFormat::Json => Mode::Json,
            OutputFormat::Text
                if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() =>
            {
                Mode::Bars {
                    multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                    bars: Mutex::new(HashMap::new()),
                }
            }
            OutputFormat::Text => Mode::Lines,
        };
        Progress { mode }
    }

    pub fn is_json(&self) -> bool {
        matches!(self.mode, Mode::Json)
    }

    fn print(&self, line: &str) {
        match &self.mode {
            Mode::Bars { multi, .. } => {
                let _ = multi.println(line);
            }
            _ => eprintln!("{line}"),
        }
    }

    /// The closing table: ok/changed/failed/skipped and time per host.
    pub fn summary(&self, report: &RunReport) {
        if self.is_json() {
            return;
        }
        if let Mode::Bars { multi, .. } = &self.mode {
            let _ = multi.clear();
        }
        eprintln!(
            "\n{:<16} {:>5} {:>8} {:>7} {:>8} {:>9}",
            "HOST", "OK", "CHANGED", "FAILED", "SKIPPED", "TIME"
        );
        for (host, s) in &report.hosts {
            eprintln!(
                "{:<16} {:>5} {:>8} {:>7} {:>8} {:>8.1}s",
                host,
                s.ok,
                s.changed,
                s.failed,
                s.skipped,
                s.duration.as_secs_f64()
            );
        }
        eprintln!("run took {:.1} s", report.duration.as_secs_f64());
    }
}

impl EventSink for Progress {
    fn emit(&self, event: &Event) {
        match &self.mode {
            Mode::Json => println!(
                "{}",
                serde_json::to_string(event).expect("events serialise")
            ),
            Mode::Lines => match &event.kind {
                EventKind::PlayStart { play, hosts } => {
                    eprintln!("== {play} ({} hosts)", hosts.len())
                }
                EventKind::TaskResult {
                    host,
                    task,
                    status,
                    duration_ms,
                    message,
                    diff,
                    handler,
                    ..
                } => {
                    let kind = if *handler { "handler " } else { "" };
                    eprintln!(
                        "{host:<16} {:<8} {kind}{task} ({duration_ms} ms)",
                        status.word()
                    );
                    if let (Status::Failed, Some(message)) = (status, message) {
                        for line in message.lines() {
                            eprintln!("{:<16}   | {line}", "");
                        }
                    }
                    if let Some(diff) = diff {
                        eprint!("{diff}");
                    }
                }
                _ => {}
            },
            Mode::Bars { multi, bars } => {
                let mut bars = bars.lock().expect("not poisoned");
                match &event.kind {
                    EventKind::RunStart { hosts, .. } => {
                        let style = ProgressStyle::with_template("{spinner:.cyan} {prefix:<16.bold} {pos:>3} done  {wide_msg} {elapsed:>4}")
                            .expect("valid template");
                        for host in hosts {
                            let bar = multi.add(
                                ProgressBar::new_spinner()
                                    .with_style(style.clone())
                                    .with_prefix(host.clone()),
                            );
                            bar.enable_steady_tick(Duration::from_millis(120));
                            bars.insert(host.clone(), bar);
                        }
                    }
                    EventKind::PlayStart { play, .. } => {
                        let _ = multi.println(format!("== {play}"));
                    }
                    EventKind::TaskStart { host, task, .. } => {
                        if let Some(bar) = bars.get(host) {
                            bar.set_message(task.clone());
                        }
                    }
                    EventKind::TaskResult {
                        host,
                        task,
                        status,
                        message,
                        diff,
                        ..
                    } => {
                        if let Some(bar) = bars.get(host) {
                            bar.inc(1);
                        }
                        if *status == Status::Failed {
                            drop(bars);
                            self.print(&format!(
                                "{host}: {task} FAILED: {}",
                                message.clone().unwrap_or_default()
                            ));
                            return;
                        }
                        if let Some(diff) = diff {
                            drop(bars);
                            self.print(&format!("{host}: {task}\n{diff}"));
                        }
                    }
                    EventKind::HostSummary {
                        host,
                        ok,
                        changed,
                        failed,
                        ..
                    } => {
                        if let Some(bar) = bars.get(host) {
                            let word = if *failed > 0 { "failed" } else { "done" };
                            bar.finish_with_message(format!(
                                "{word}: {ok} ok, {changed} changed, {failed} failed"
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
