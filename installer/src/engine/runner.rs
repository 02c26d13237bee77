//! Running a playbook: plays in order; within a play, hosts in parallel (up to `forks`, or in
//! `serial` batches) and each host's tasks in order; handlers once at the end of the play for
//! the hosts that notified them. A failed host stops; the play stops everywhere when more
//! hosts failed than its `max_fail_percentage` tolerates (by default, at the first failure).
//! One connection per host serves the whole run; facts are gathered once per host.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Mutex as AsyncMutex, Semaphore};

use super::events::{Event, EventKind, EventSink, Status};
use super::facts::Facts;
use super::inventory::{Connection, Host, Inventory};
use super::journal::{HostProgress, Journal};
use super::modules::{self, ModuleContext, ModuleError};
use super::playbook::{Items, Module, Play, Playbook, ServiceState, Task};
use super::templates::Templates;
use super::transport::local::LocalTransport;
use super::transport::ssh::{SshOptions, SshTransport};
use super::transport::{Privilege, Secret, Session, Stdin, Transport, TransportError};

/// How a run behaves.
#[derive(Clone)]
pub struct RunOptions {
    pub dry_run: bool,
    /// Continue from the journal of a previous run.
    pub resume: bool,
    /// Hosts worked on at once.
    pub forks: usize,
    /// Restrict the run to hosts matching this pattern.
    pub limit: Option<String>,
    /// Where relative local paths of tasks are found.
    pub files: PathBuf,
    /// The journal file; `None` runs without one.
    pub journal: Option<PathBuf>,
    /// Variables every template sees, overriding play variables.
    pub extra_vars: BTreeMap<String, Value>,
    pub ssh: SshOptions,
    /// The sudo password for hosts whose user needs one.
    pub sudo_password: Option<Secret>,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            dry_run: false,
            resume: false,
            forks: 32,
            limit: None,
            files: PathBuf::from("."),
            journal: None,
            extra_vars: BTreeMap::new(),
            ssh: SshOptions::default(),
            sudo_password: None,
        }
    }
}

/// A task that failed on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub host: String,
    pub play: String,
    pub task: String,
    pub message: String,
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "host {}, task {:?} (play {:?}): {}",
            self.host, self.task, self.play, self.message
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostStats {
    pub ok: usize,
    pub changed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub duration: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub hosts: BTreeMap<String, HostStats>,
    pub failures: Vec<TaskFailure>,
    pub duration: Duration,
}

impl RunReport {
    pub fn success(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn changed(&self) -> usize {
        self.hosts.values().map(|s| s.changed).sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Setup(String),
}

/// Connects to a host and works out how it runs privileged steps: root, sudo without a
/// password, or sudo with `sudo_password`. Returns the SSH transport too, to close it later.
pub async fn connect(
    host: &Host,
    ssh: &SshOptions,
    sudo_password: Option<&Secret>,
) -> Result<(Session, Facts, Option<Arc<SshTransport>>), TransportError> {
    let (transport, kept): (Arc<dyn Transport>, Option<Arc<SshTransport>>) = match &host.connection
    {
        Connection::Local => (Arc::new(LocalTransport), None),
        connection @ Connection::Ssh { .. } => {
            let transport = Arc::new(SshTransport::connect(connection, ssh).await?);
            (transport.clone(), Some(transport))
        }
    };
    // Facts come first: they name the login user, which decides how to escalate.
    let probe = Session::new(transport.clone(), Privilege::Root);
    let facts = Facts::gather(&probe).await?;
    if facts.user == "root" || !host.sudo {
        return Ok((Session::new(transport, Privilege::Root), facts, kept));
    }
    let nopasswd = probe.exec("sudo -n true", Stdin::none(), false).await?;
    if nopasswd.success() {
        return Ok((Session::new(transport, Privilege::Sudo), facts, kept));
    }
    let Some(password) = sudo_password else {
        return Err(TransportError::Authentication {
            user: host.describe(),
            target: host.name.clone(),
            reason: "sudo asks for a password: give it with --ask-become-pass (prompt) or --become-password-stdin".into(),
        });
    };
    let session = Session::new(transport, Privilege::SudoPassword(password.clone()));
    let check = session.exec("true", Stdin::none(), true).await?;
    if !check.success() {
        return Err(TransportError::Authentication {
            user: host.describe(),
            target: host.name.clone(),
            reason: "sudo refused the password".into(),
        });
    }
    Ok((session, facts, kept))
}

/// A task made ready for a batch.
enum Prepared {
    /// Its condition is false for every item.
    Skipped,
    /// One step per item.
    Steps(Vec<modules::Step>),
}

/// A host's connection and facts, made once per run.
struct Connected {
    session: Session,
    facts: Facts,
}

pub struct Runner {
    inventory: Inventory,
    templates: Arc<Templates>,
    options: RunOptions,
    sink: Arc<dyn EventSink>,
    connections: AsyncMutex<HashMap<String, Arc<AsyncMutex<Option<Connected>>>>>,
    transports: Mutex<Vec<Arc<SshTransport>>>,
    /// Units `systemd` tasks started in the current play, by host: they run their current
    /// configuration already, so restart handlers leave them alone.
    started_units: Mutex<HashMap<String, BTreeSet<String>>>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Runner {
    pub fn new(
        inventory: Inventory,
        templates: Templates,
        options: RunOptions,
        sink: Arc<dyn EventSink>,
    ) -> Runner {
        Runner {
            inventory,
            templates: Arc::new(templates),
            options,
            sink,
            connections: AsyncMutex::new(HashMap::new()),
            transports: Mutex::new(Vec::new()),
            started_units: Mutex::new(HashMap::new()),
        }
    }

    pub fn dry_run(&self) -> bool {
        self.options.dry_run
    }

    fn emit(&self, kind: EventKind) {
        self.sink.emit(&Event::now(kind));
    }

    /// Connects to a host and works out how it runs privileged steps.
    async fn connect(&self, host: &Host) -> Result<(Session, Facts), TransportError> {
        let (session, facts, ssh) =
            connect(host, &self.options.ssh, self.options.sudo_password.as_ref()).await?;
        if let Some(ssh) = ssh {
            self.transports.lock().expect("not poisoned").push(ssh);
        }
        Ok((session, facts))
    }

    /// The host's connection, made on first use; facts gathered when `facts` is asked for.
    async fn session(
        &self,
        host: &Host,
        facts: bool,
    ) -> Result<(Session, Option<Facts>), TransportError> {
        let slot = {
            let mut connections = self.connections.lock().await;
            connections.entry(host.name.clone()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if slot.is_none() {
            let (session, gathered) = self.connect(host).await?;
            *slot = Some(Connected {
                session,
                facts: gathered,
            });
        }
        let connected = slot.as_ref().expect("just set");
        Ok((
            connected.session.clone(),
            facts.then(|| connected.facts.clone()),
        ))
    }

    /// Forgets a host's connection, so that the next use reconnects (after a failure).
    async fn forget(&self, host: &str) {
        self.connections.lock().await.remove(host);
    }

    /// Every variable a template sees, as JSON.
    fn variables(
        &self,
        host: &Host,
        play: &Play,
        facts: Option<&Facts>,
        item: Option<&Value>,
    ) -> serde_json::Map<String, Value> {
        let mut vars = serde_json::Map::new();
        for (key, value) in self
            .inventory
            .vars
            .iter()
            .chain(&play.vars)
            .chain(&self.options.extra_vars)
        {
            vars.insert(key.clone(), value.clone());
        }
        vars.insert(
            "host".into(),
            json!({"name": host.name, "address": host.address(), "groups": host.groups, "vars": host.vars}),
        );
        let hosts: serde_json::Map<String, Value> = self
            .inventory
            .hosts
            .iter()
            .map(|h| (h.name.clone(), json!({"name": h.name, "address": h.address(), "groups": h.groups, "vars": h.vars})))
            .collect();
        vars.insert("hosts".into(), Value::Object(hosts));
        vars.insert("groups".into(), json!(self.inventory.groups()));
        vars.insert("facts".into(), json!(facts.cloned().unwrap_or_default()));
        if let Some(item) = item {
            vars.insert("item".into(), item.clone());
        }
        vars
    }

    fn context(
        &self,
        host: &Host,
        play: &Play,
        facts: Option<&Facts>,
        item: Option<&Value>,
    ) -> tera::Context {
        tera::Context::from_serialize(&self.variables(host, play, facts, item))
            .expect("a JSON object is a context")
    }

    /// Runs a read-only script on each host (in parallel) and gathers its facts: what checks
    /// such as preflight judge. Returns, per host, the facts and the script's output, or why
    /// the host could not be reached.
    pub async fn probe(
        &self,
        hosts: &[String],
        script: &str,
    ) -> BTreeMap<String, Result<(Facts, String), String>> {
        let runs = hosts
            .iter()
            .filter_map(|name| self.inventory.host(name))
            .map(|host| async move {
                let result = async {
                    let (session, facts) = self
                        .session(host, true)
                        .await
                        .map_err(|e| format!("unreachable at {}: {e}", host.describe()))?;
                    let output = session
                        .exec(script, Stdin::none(), true)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok((facts.unwrap_or_default(), output.stdout_text()))
                }
                .await;
                (host.name.clone(), result)
            });
        futures::future::join_all(runs).await.into_iter().collect()
    }

    /// Runs every play of the playbook.
    pub async fn run(&self, playbook: &Playbook) -> Result<RunReport, RunError> {
        let started = Instant::now();
        let journal = match (&self.options.journal, self.options.resume) {
            (Some(path), true) => {
                Journal::resume(path, &playbook.checksum).map_err(RunError::Setup)?
            }
            (path, _) => Journal::new(
                if self.options.dry_run {
                    None
                } else {
                    path.clone()
                },
                &playbook.checksum,
            ),
        };
        let journal = Arc::new(Mutex::new(journal));
        let limit: Option<Vec<String>> = self.options.limit.as_ref().map(|l| {
            self.inventory
                .select(l)
                .iter()
                .map(|h| h.name.clone())
                .collect()
        });
        if let Some(limit) = &limit
            && limit.is_empty()
        {
            return Err(RunError::Setup(format!(
                "--limit {} matches no host of the inventory",
                self.options.limit.clone().unwrap_or_default()
            )));
        }
        let all: Vec<String> = self
            .inventory
            .hosts
            .iter()
            .map(|h| h.name.clone())
            .filter(|n| limit.as_ref().is_none_or(|l| l.contains(n)))
            .collect();
        self.emit(EventKind::RunStart {
            playbook: playbook.name.clone(),
            hosts: all.clone(),
            dry_run: self.options.dry_run,
        });

        let stats: Arc<Mutex<BTreeMap<String, HostStats>>> = Arc::new(Mutex::new(BTreeMap::new()));
        let host_errors: Arc<Mutex<BTreeMap<String, String>>> =
            Arc::new(Mutex::new(BTreeMap::new()));
        let mut failures: Vec<TaskFailure> = Vec::new();
        let mut failed_hosts: BTreeSet<String> = BTreeSet::new();

        for (p, play) in playbook.plays.iter().enumerate() {
            let hosts: Vec<Host> = self
                .inventory
                .select(&play.hosts)
                .into_iter()
                .filter(|h| all.contains(&h.name) && !failed_hosts.contains(&h.name))
                .cloned()
                .collect();
            if hosts.is_empty() {
                continue;
            }
            self.emit(EventKind::PlayStart {
                play: play.name.clone(),
                hosts: hosts.iter().map(|h| h.name.clone()).collect(),
            });
            let total = hosts.len();
            let failed = Arc::new(AtomicUsize::new(0));
            let abort = Arc::new(AtomicBool::new(false));
            let batch = play.serial.unwrap_or(total).max(1);
            let semaphore = Arc::new(Semaphore::new(self.options.forks.max(1)));
            let play_failures: Arc<Mutex<Vec<TaskFailure>>> = Arc::new(Mutex::new(Vec::new()));
            for chunk in hosts.chunks(batch) {
                if abort.load(Ordering::SeqCst) {
                    break;
                }
                let runs = chunk.iter().map(|host| {
                    let semaphore = semaphore.clone();
                    let (failed, abort, journal, stats) = (
                        failed.clone(),
                        abort.clone(),
                        journal.clone(),
                        stats.clone(),
                    );
                    let (play_failures, host_errors) = (play_failures.clone(), host_errors.clone());
                    async move {
                        let _permit = semaphore.acquire().await.expect("never closed");
                        let host_started = Instant::now();
                        let result = self
                            .run_host_play(host, p, play, &abort, &journal, &stats)
                            .await;
                        stats
                            .lock()
                            .expect("not poisoned")
                            .entry(host.name.clone())
                            .or_default()
                            .duration += host_started.elapsed();
                        if let Err(failure) = result {
                            host_errors
                                .lock()
                                .expect("not poisoned")
                                .insert(host.name.clone(), failure.message.clone());
                            play_failures.lock().expect("not poisoned").push(failure);
                            let now_failed = failed.fetch_add(1, Ordering::SeqCst) + 1;
                            if now_failed * 100 > usize::from(play.max_fail_percentage) * total {
                                abort.store(true, Ordering::SeqCst);
                            }
                        }
                    }
                });
                futures::future::join_all(runs).await;
            }
            let play_failures = std::mem::take(&mut *play_failures.lock().expect("not poisoned"));
            failed_hosts.extend(play_failures.iter().map(|f| f.host.clone()));
            failures.extend(play_failures);
            if abort.load(Ordering::SeqCst) {
                break;
            }
        }

        let stats = stats.lock().expect("not poisoned").clone();
        let host_errors = host_errors.lock().expect("not poisoned").clone();
        for host in &all {
            let s = stats.get(host).cloned().unwrap_or_default();
            self.emit(EventKind::HostSummary {
                host: host.clone(),
                ok: s.ok,
                changed: s.changed,
                failed: s.failed,
                skipped: s.skipped,
                duration_ms: millis(s.duration),
                error: host_errors.get(host).cloned(),
            });
        }
        let duration = started.elapsed();
        self.emit(EventKind::RunEnd {
            duration_ms: millis(duration),
            success: failures.is_empty(),
        });
        if let Err(e) = journal.lock().expect("not poisoned").flush() {
            tracing::warn!("journal: {e}");
        }
        let transports: Vec<Arc<SshTransport>> = self
            .transports
            .lock()
            .expect("not poisoned")
            .drain(..)
            .collect();
        for transport in transports {
            transport.close().await;
        }
        Ok(RunReport {
            hosts: stats,
            failures,
            duration,
        })
    }

    async fn run_host_play(
        &self,
        host: &Host,
        play_index: usize,
        play: &Play,
        abort: &AtomicBool,
        journal: &Mutex<Journal>,
        stats: &Mutex<BTreeMap<String, HostStats>>,
    ) -> Result<(), TaskFailure> {
        let fail = |task: &str, message: String| TaskFailure {
            host: host.name.clone(),
            play: play.name.clone(),
            task: task.to_owned(),
            message,
        };
        self.started_units
            .lock()
            .expect("not poisoned")
            .remove(&host.name);
        // Where a resumed run picks up on this host.
        let progress = journal.lock().expect("not poisoned").progress(&host.name);
        let (start, mut notified) = if self.options.resume {
            if progress.play > play_index {
                return Ok(());
            }
            if progress.play == play_index {
                (progress.task, progress.notified.clone())
            } else {
                (0, BTreeSet::new())
            }
        } else {
            (0, BTreeSet::new())
        };
        let (session, facts) = match self.session(host, play.gather_facts).await {
            Ok(connected) => connected,
            Err(e) => {
                self.forget(&host.name).await;
                let task = play
                    .tasks
                    .get(start)
                    .map_or("connecting", |t| t.name.as_str());
                return Err(fail(
                    task,
                    format!("unreachable at {}: {e}", host.describe()),
                ));
            }
        };
        let count = |status: Status| {
            let mut stats = stats.lock().expect("not poisoned");
            let entry = stats.entry(host.name.clone()).or_default();
            match status {
                Status::Ok => entry.ok += 1,
                Status::Changed => entry.changed += 1,
                Status::Failed => entry.failed += 1,
                Status::Skipped => entry.skipped += 1,
            }
        };
        let record_now = |task: usize, notified: &BTreeSet<String>| {
            let mut journal = journal.lock().expect("not poisoned");
            let recorded = journal
                .record(
                    &host.name,
                    HostProgress {
                        play: play_index,
                        task,
                        notified: notified.clone(),
                    },
                )
                .and_then(|()| journal.flush());
            if let Err(e) = recorded {
                tracing::warn!("journal: {e}");
            }
        };
        let record = |task: usize, notified: &BTreeSet<String>| {
            let recorded = journal.lock().expect("not poisoned").record(
                &host.name,
                HostProgress {
                    play: play_index,
                    task,
                    notified: notified.clone(),
                },
            );
            if let Err(e) = recorded {
                tracing::warn!("journal: {e}");
            }
        };
        let mut index = start;
        while index < play.tasks.len() {
            if abort.load(Ordering::SeqCst) {
                return Ok(());
            }
            // Consecutive tasks that are plain scripts share one round trip.
            let mut batch: Vec<(usize, Prepared)> = Vec::new();
            while let Some(task) = play.tasks.get(index + batch.len()) {
                if task.ignore_errors || task.privileged != play.tasks[index].privileged {
                    break;
                }
                match self.prepare(host, play, task, &session, facts.as_ref()) {
                    Some(prepared) => batch.push((index + batch.len(), prepared)),
                    None => break,
                }
            }
            if batch.len() < 2 {
                let task = &play.tasks[index];
                match self
                    .run_task(host, play, task, index, false, &session, facts.as_ref())
                    .await
                {
                    Ok(status) => {
                        count(status);
                        if status == Status::Changed {
                            self.notify(host, &mut notified, task);
                        }
                    }
                    Err(message) => {
                        count(Status::Failed);
                        record_now(index, &notified);
                        if message.contains("connection") || message.contains("unreachable") {
                            self.forget(&host.name).await;
                        }
                        return Err(fail(&task.name, message));
                    }
                }
                index += 1;
                record(index, &notified);
                continue;
            }
            let started = Instant::now();
            for (i, _) in &batch {
                self.emit(EventKind::TaskStart {
                    host: host.name.clone(),
                    play: play.name.clone(),
                    task: play.tasks[*i].name.clone(),
                    index: *i,
                    handler: false,
                });
            }
            let steps: Vec<modules::Step> = batch
                .iter()
                .flat_map(|(_, p)| match p {
                    Prepared::Steps(steps) => steps.clone(),
                    Prepared::Skipped => Vec::new(),
                })
                .collect();
            let outcomes = modules::run_batch(&session, play.tasks[index].privileged, &steps).await;
            let share = millis(started.elapsed()) / batch.len() as u64;
            let mut outcomes = match outcomes {
                Ok(outcomes) => outcomes.into_iter(),
                Err(e) => {
                    self.forget(&host.name).await;
                    let task = &play.tasks[index];
                    let message = format!("connection to {} failed: {e}", host.describe());
                    self.emit(EventKind::TaskResult {
                        host: host.name.clone(),
                        play: play.name.clone(),
                        task: task.name.clone(),
                        index,
                        handler: false,
                        status: Status::Failed,
                        duration_ms: share,
                        message: Some(message.clone()),
                        diff: None,
                    });
                    count(Status::Failed);
                    record_now(index, &notified);
                    return Err(fail(&task.name, message));
                }
            };
            for (i, prepared) in &batch {
                let task = &play.tasks[*i];
                let (status, message) = match prepared {
                    Prepared::Skipped => (Status::Skipped, Ok(None)),
                    Prepared::Steps(steps) => {
                        let mut changed = false;
                        let mut messages = Vec::new();
                        let mut error = None;
                        for _ in steps {
                            match outcomes.next() {
                                Some(Ok(outcome)) => {
                                    changed |= outcome.changed;
                                    self.note_started(host, &outcome);
                                    messages.extend(outcome.message);
                                }
                                Some(Err(ModuleError::Transport(e))) => {
                                    error = Some(format!(
                                        "connection to {} failed: {e}",
                                        host.describe()
                                    ));
                                    break;
                                }
                                Some(Err(e)) => {
                                    error = Some(e.to_string());
                                    break;
                                }
                                None => {
                                    error = Some("did not run: the batch stopped early".into());
                                    break;
                                }
                            }
                        }
                        match error {
                            Some(e) => (Status::Failed, Err(e)),
                            None => (
                                if changed { Status::Changed } else { Status::Ok },
                                Ok(if messages.is_empty() {
                                    None
                                } else {
                                    Some(messages.join("\n"))
                                }),
                            ),
                        }
                    }
                };
                self.emit(EventKind::TaskResult {
                    host: host.name.clone(),
                    play: play.name.clone(),
                    task: task.name.clone(),
                    index: *i,
                    handler: false,
                    status,
                    duration_ms: share,
                    message: match &message {
                        Ok(m) => m.clone(),
                        Err(e) => Some(e.clone()),
                    },
                    diff: None,
                });
                count(status);
                match message {
                    Err(e) => {
                        record_now(*i, &notified);
                        if e.starts_with("connection to") {
                            self.forget(&host.name).await;
                        }
                        return Err(fail(&task.name, e));
                    }
                    Ok(_) => {
                        if status == Status::Changed {
                            self.notify(host, &mut notified, task);
                        }
                        record(*i + 1, &notified);
                    }
                }
            }
            index += batch.len();
        }
        // Handlers, once each, in the order the play defines them.
        for (index, handler) in play.handlers.iter().enumerate() {
            if !notified.contains(&handler.name) || abort.load(Ordering::SeqCst) {
                continue;
            }
            match self
                .run_task(host, play, handler, index, true, &session, facts.as_ref())
                .await
            {
                Ok(status) => count(status),
                Err(message) => {
                    count(Status::Failed);
                    return Err(fail(&handler.name, message));
                }
            }
            notified.remove(&handler.name);
            let _ = journal.lock().expect("not poisoned").record(
                &host.name,
                HostProgress {
                    play: play_index,
                    task: play.tasks.len(),
                    notified: notified.clone(),
                },
            );
        }
        let _ = journal.lock().expect("not poisoned").record(
            &host.name,
            HostProgress {
                play: play_index + 1,
                task: 0,
                notified: BTreeSet::new(),
            },
        );
        Ok(())
    }

    /// A task's loop items (one `None` when it does not loop).
    fn items(
        &self,
        host: &Host,
        play: &Play,
        task: &Task,
        facts: Option<&Facts>,
    ) -> Result<Vec<Option<Value>>, String> {
        let Some(items) = &task.items else {
            return Ok(vec![None]);
        };
        let list = match items {
            Items::List(list) => list.clone(),
            Items::Variable(text) => {
                let path = items.variable().unwrap_or_default();
                let variables = Value::Object(self.variables(host, play, facts, None));
                let mut value = &variables;
                for part in path.split('.') {
                    value = value
                        .get(part)
                        .ok_or_else(|| format!("loop {text:?}: no variable {path}"))?;
                }
                value
                    .as_array()
                    .cloned()
                    .ok_or_else(|| format!("loop {text:?}: {path} is not a list"))?
            }
        };
        Ok(list.into_iter().map(Some).collect())
    }

    /// A task as batch steps: `None` when it cannot be batched (a module needing more than a
    /// script, a dry run, or an error the task's own run will report).
    fn prepare(
        &self,
        host: &Host,
        play: &Play,
        task: &Task,
        session: &Session,
        facts: Option<&Facts>,
    ) -> Option<Prepared> {
        if self.options.dry_run {
            return None;
        }
        let items = self.items(host, play, task, facts).ok()?;
        let mut steps = Vec::new();
        for item in items {
            let item = match item {
                Some(mut value) => {
                    self.templates
                        .render_value(&mut value, &self.context(host, play, facts, None))
                        .ok()?;
                    Some(value)
                }
                None => None,
            };
            let context = self.context(host, play, facts, item.as_ref());
            if let Some(condition) = &task.when
                && !self.templates.condition(condition, &context).ok()?
            {
                continue;
            }
            let mut args = serde_json::to_value(&task.module).ok()?;
            self.templates.render_value(&mut args, &context).ok()?;
            let module: Module = serde_json::from_value(args).ok()?;
            let ctx = ModuleContext {
                session,
                templates: &self.templates,
                context: &context,
                files: &self.options.files,
                privileged: task.privileged,
                dry_run: false,
            };
            steps.push(modules::step(&module, &ctx).ok()??);
        }
        Some(if steps.is_empty() {
            Prepared::Skipped
        } else {
            Prepared::Steps(steps)
        })
    }

    /// Records a changed task's notifications. A change after a unit started makes its
    /// restart needed again.
    fn notify(&self, host: &Host, notified: &mut BTreeSet<String>, task: &Task) {
        if !task.notify.is_empty() {
            notified.extend(task.notify.iter().cloned());
            self.started_units
                .lock()
                .expect("not poisoned")
                .remove(&host.name);
        }
    }

    fn note_started(&self, host: &Host, outcome: &modules::Outcome) {
        if let Some(unit) = &outcome.started {
            self.started_units
                .lock()
                .expect("not poisoned")
                .entry(host.name.clone())
                .or_default()
                .insert(unit.clone());
        }
    }

    /// The unit a restart would restart for nothing: this play started it after the change.
    fn restart_needless(&self, host: &Host, module: &Module) -> Option<String> {
        let Module::Systemd(args) = module else {
            return None;
        };
        if !matches!(
            args.state,
            Some(ServiceState::Restarted | ServiceState::RestartedIfRunning)
        ) {
            return None;
        }
        let unit = args.name.as_ref()?;
        let started = self.started_units.lock().expect("not poisoned");
        started
            .get(&host.name)
            .is_some_and(|units| units.contains(unit))
            .then(|| unit.clone())
    }

    /// Runs one task (every item of its loop); returns its status or the failure message.
    #[allow(clippy::too_many_arguments)]
    async fn run_task(
        &self,
        host: &Host,
        play: &Play,
        task: &Task,
        index: usize,
        handler: bool,
        session: &Session,
        facts: Option<&Facts>,
    ) -> Result<Status, String> {
        let started = Instant::now();
        self.emit(EventKind::TaskStart {
            host: host.name.clone(),
            play: play.name.clone(),
            task: task.name.clone(),
            index,
            handler,
        });
        let result = self.task_outcome(host, play, task, session, facts).await;
        let (status, message, diff) = match &result {
            Ok((status, message, diff)) => (*status, message.clone(), diff.clone()),
            Err(message) => (Status::Failed, Some(message.clone()), None),
        };
        self.emit(EventKind::TaskResult {
            host: host.name.clone(),
            play: play.name.clone(),
            task: task.name.clone(),
            index,
            handler,
            status,
            duration_ms: millis(started.elapsed()),
            message,
            diff,
        });
        match result {
            Ok((status, _, _)) => Ok(status),
            Err(_) if task.ignore_errors => Ok(Status::Failed),
            Err(message) => Err(message),
        }
    }

    async fn task_outcome(
        &self,
        host: &Host,
        play: &Play,
        task: &Task,
        session: &Session,
        facts: Option<&Facts>,
    ) -> Result<(Status, Option<String>, Option<String>), String> {
        let items = self.items(host, play, task, facts)?;
        let mut changed = false;
        let mut ran = false;
        let mut messages = Vec::new();
        let mut diffs = Vec::new();
        for item in items {
            let item = match item {
                Some(mut value) => {
                    let context = self.context(host, play, facts, None);
                    self.templates
                        .render_value(&mut value, &context)
                        .map_err(|e| e.to_string())?;
                    Some(value)
                }
                None => None,
            };
            let context = self.context(host, play, facts, item.as_ref());
            if let Some(condition) = &task.when
                && !self
                    .templates
                    .condition(condition, &context)
                    .map_err(|e| e.to_string())?
            {
                continue;
            }
            ran = true;
            let mut args = serde_json::to_value(&task.module).map_err(|e| e.to_string())?;
            self.templates
                .render_value(&mut args, &context)
                .map_err(|e| e.to_string())?;
            let module: Module = serde_json::from_value(args)
                .map_err(|e| format!("arguments after templating: {e}"))?;
            let ctx = ModuleContext {
                session,
                templates: &self.templates,
                context: &context,
                files: &self.options.files,
                privileged: task.privileged,
                dry_run: self.options.dry_run,
            };
            if let Some(unit) = self.restart_needless(host, &module) {
                messages.push(format!(
                    "{unit} was started by this play with its new configuration: no restart"
                ));
                continue;
            }
            match modules::run(&module, &ctx).await {
                Ok(outcome) => {
                    changed |= outcome.changed;
                    self.note_started(host, &outcome);
                    messages.extend(outcome.message);
                    diffs.extend(outcome.diff);
                }
                Err(ModuleError::Transport(e)) => {
                    return Err(format!("connection to {} failed: {e}", host.describe()));
                }
                Err(ModuleError::Failed(message)) => return Err(message),
            }
        }
        let status = match (ran, changed) {
            (false, _) => Status::Skipped,
            (true, true) => Status::Changed,
            (true, false) => Status::Ok,
        };
        let join = |v: Vec<String>| {
            if v.is_empty() {
                None
            } else {
                Some(v.join("\n"))
            }
        };
        Ok((status, join(messages), join(diffs)))
    }
}
