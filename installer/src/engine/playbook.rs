//! Playbooks: YAML files of plays, each play a list of tasks run on a group of hosts, in the
//! spirit of Ansible so that operators can read and adapt them. A task names one module and
//! its arguments; string arguments are Tera templates.
//!
//! ```yaml
//! - name: container runtime
//!   hosts: all
//!   tasks:
//!     - name: containerd configuration
//!       template: { src: containerd/config.toml, dest: /etc/containerd/config.toml }
//!       notify: restart containerd
//!   handlers:
//!     - name: restart containerd
//!       systemd: { name: containerd, state: restarted }
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::yaml::{self, LocatedError, Positions, Source};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateArgs {
    /// Template name under the templates directory.
    pub src: String,
    pub dest: String,
    pub mode: Option<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyArgs {
    /// A local file (absolute, or relative to the run's files directory).
    pub src: Option<String>,
    /// Literal content, instead of `src`.
    pub content: Option<String>,
    pub dest: String,
    pub mode: Option<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    /// The file exists, with the given mode and owner.
    Present,
    /// The file or directory is gone.
    Absent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileArgs {
    pub path: String,
    pub state: Option<FileState>,
    pub mode: Option<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryArgs {
    pub path: String,
    pub mode: Option<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandArgs {
    /// A shell command line.
    pub cmd: String,
    /// Skip when this path exists.
    pub creates: Option<String>,
    /// Skip when this command succeeds.
    pub unless: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    Started,
    Stopped,
    Restarted,
    /// Restarted when it runs; left alone when stopped or not installed yet.
    #[serde(rename = "restarted-if-running")]
    RestartedIfRunning,
    Reloaded,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemdArgs {
    pub name: Option<String>,
    #[serde(default)]
    pub daemon_reload: bool,
    pub enabled: Option<bool>,
    pub state: Option<ServiceState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysctlArgs {
    pub name: String,
    pub value: String,
    /// The file the setting persists in [default: /etc/sysctl.d/99-kinit.conf].
    pub file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModprobeArgs {
    pub name: String,
    /// Load it at boot too (/etc/modules-load.d/kinit.conf) [default: true].
    pub persist: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForArgs {
    /// `host:port` that must accept TCP connections (as seen from the host).
    pub tcp: Option<String>,
    /// An http(s) URL (as seen from the host) that must answer 2xx.
    pub url: Option<String>,
    /// Local PEM file of the CA that signs the URL's server certificate.
    pub ca: Option<String>,
    /// Local PEM client certificate and key for the URL.
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// A command on the host that must succeed.
    pub command: Option<String>,
    /// Seconds before giving up [default: 60].
    pub timeout: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchArgs {
    /// The file on the host.
    pub src: String,
    /// Where to write it locally.
    pub dest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnarchiveArgs {
    /// A local tar archive (absolute, or relative to the run's files directory).
    pub src: String,
    /// The directory on the host to unpack into.
    pub dest: String,
    /// Skip when this path exists on the host.
    pub creates: Option<String>,
}

/// A task as written: common fields and at most one of each module.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    name: String,
    when: Option<String>,
    notify: Option<OneOrMany>,
    #[serde(rename = "loop")]
    items: Option<Items>,
    /// Run as the login user instead of root.
    #[serde(default)]
    unprivileged: bool,
    #[serde(default)]
    ignore_errors: bool,
    template: Option<TemplateArgs>,
    copy: Option<CopyArgs>,
    file: Option<FileArgs>,
    directory: Option<DirectoryArgs>,
    command: Option<CommandArgs>,
    systemd: Option<SystemdArgs>,
    sysctl: Option<SysctlArgs>,
    modprobe: Option<ModprobeArgs>,
    wait_for: Option<WaitForArgs>,
    fetch: Option<FetchArgs>,
    unarchive: Option<UnarchiveArgs>,
}

/// What a task loops over: a list, or `{{ variable }}` naming a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Items {
    List(Vec<serde_json::Value>),
    Variable(String),
}

impl Items {
    /// The dotted path of a `{{ variable }}` loop.
    pub fn variable(&self) -> Option<&str> {
        match self {
            Items::List(_) => None,
            Items::Variable(text) => text
                .trim()
                .strip_prefix("{{")
                .and_then(|t| t.strip_suffix("}}"))
                .map(str::trim),
        }
    }
}

/// What a task does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Module {
    Template(TemplateArgs),
    Copy(CopyArgs),
    File(FileArgs),
    Directory(DirectoryArgs),
    Command(CommandArgs),
    Systemd(SystemdArgs),
    Sysctl(SysctlArgs),
    Modprobe(ModprobeArgs),
    WaitFor(WaitForArgs),
    Fetch(FetchArgs),
    Unarchive(UnarchiveArgs),
}

impl Module {
    pub fn kind(&self) -> &'static str {
        match self {
            Module::Template(_) => "template",
            Module::Copy(_) => "copy",
            Module::File(_) => "file",
            Module::Directory(_) => "directory",
            Module::Command(_) => "command",
            Module::Systemd(_) => "systemd",
            Module::Sysctl(_) => "sysctl",
            Module::Modprobe(_) => "modprobe",
            Module::WaitFor(_) => "wait_for",
            Module::Fetch(_) => "fetch",
            Module::Unarchive(_) => "unarchive",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    pub name: String,
    /// A Tera expression; the task is skipped unless it is true.
    pub when: Option<String>,
    /// Handlers to run at the end of the play if this task changed something.
    pub notify: Vec<String>,
    /// Run once per item, each visible as `item`.
    pub items: Option<Items>,
    pub privileged: bool,
    pub ignore_errors: bool,
    pub module: Module,
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlay {
    name: String,
    hosts: String,
    serial: Option<usize>,
    max_fail_percentage: Option<u8>,
    #[serde(default = "yes")]
    gather_facts: bool,
    #[serde(default)]
    vars: BTreeMap<String, serde_json::Value>,
    tasks: Vec<RawTask>,
    #[serde(default)]
    handlers: Vec<RawTask>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Play {
    pub name: String,
    /// Host pattern: `all`, a group, host names, joined by `,`.
    pub hosts: String,
    /// Hosts per batch; all at once when unset.
    pub serial: Option<usize>,
    /// Failed hosts tolerated, in percent of the play's hosts, before the play stops
    /// everywhere; 0 (the default) stops at the first failure.
    pub max_fail_percentage: u8,
    pub gather_facts: bool,
    pub vars: BTreeMap<String, serde_json::Value>,
    pub tasks: Vec<Task>,
    pub handlers: Vec<Task>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Playbook {
    pub name: String,
    pub plays: Vec<Play>,
    /// SHA-256 of the text, so a journal from another version is not resumed.
    pub checksum: String,
}

fn task(
    raw: RawTask,
    path: &str,
    positions: &Positions,
    source: &Source,
) -> Result<Task, LocatedError> {
    let mut modules = Vec::new();
    macro_rules! take {
        ($field:ident, $variant:ident) => {
            if let Some(args) = raw.$field {
                modules.push(Module::$variant(args));
            }
        };
    }
    take!(template, Template);
    take!(copy, Copy);
    take!(file, File);
    take!(directory, Directory);
    take!(command, Command);
    take!(systemd, Systemd);
    take!(sysctl, Sysctl);
    take!(modprobe, Modprobe);
    take!(wait_for, WaitFor);
    take!(fetch, Fetch);
    take!(unarchive, Unarchive);
    let module = match modules.len() {
        1 => modules.pop().expect("one"),
        0 => {
            return Err(positions.error_at(
                source,
                path,
                format!(
                    "task {:?} names no module; use one of template, copy, file, directory, command, systemd, sysctl, modprobe, wait_for, fetch, unarchive",
                    raw.name
                ),
            ));
        }
        _ => {
            let kinds: Vec<&str> = modules.iter().map(Module::kind).collect();
            return Err(positions.error_at(
                source,
                path,
                format!(
                    "task {:?} names {} modules ({}); split it into one task each",
                    raw.name,
                    kinds.len(),
                    kinds.join(", ")
                ),
            ));
        }
    };
    let check = |ok: bool, field: &str, message: &str| {
        if ok {
            Ok(())
        } else {
            Err(positions.error_at(source, &format!("{path}.{}", field), message))
        }
    };
    match &module {
        Module::Copy(args) => check(
            args.src.is_some() != args.content.is_some(),
            "copy",
            "copy needs exactly one of src and content",
        )?,
        Module::WaitFor(args) => check(
            [
                args.tcp.is_some(),
                args.url.is_some(),
                args.command.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count()
                == 1,
            "wait_for",
            "wait_for needs exactly one of tcp, url and command",
        )?,
        Module::Systemd(args) => check(
            args.name.is_some() || args.daemon_reload,
            "systemd",
            "systemd needs a unit name, or daemon_reload alone",
        )?,
        _ => {}
    }
    if let Some(items @ Items::Variable(text)) = &raw.items
        && items
            .variable()
            .is_none_or(|v| v.is_empty() || v.contains(' '))
    {
        return Err(positions.error_at(
            source,
            &format!("{path}.loop"),
            format!("loop {text:?} is neither a list nor \"{{{{ variable }}}}\" naming one"),
        ));
    }
    Ok(Task {
        name: raw.name,
        when: raw.when,
        notify: raw.notify.map(|n| n.to_vec()).unwrap_or_default(),
        items: raw.items,
        privileged: !raw.unprivileged,
        ignore_errors: raw.ignore_errors,
        module,
    })
}

/// Parses a playbook: a YAML list of plays.
pub fn parse(name: &str, source: &Source) -> Result<Playbook, LocatedError> {
    let raw: Vec<RawPlay> = yaml::parse(source)?;
    let positions = Positions::index(&source.text);
    let mut plays = Vec::new();
    for (p, play) in raw.into_iter().enumerate() {
        let mut tasks = Vec::new();
        for (t, raw_task) in play.tasks.into_iter().enumerate() {
            tasks.push(task(
                raw_task,
                &format!("[{p}].tasks[{t}]"),
                &positions,
                source,
            )?);
        }
        let mut handlers = Vec::new();
        for (h, raw_task) in play.handlers.into_iter().enumerate() {
            handlers.push(task(
                raw_task,
                &format!("[{p}].handlers[{h}]"),
                &positions,
                source,
            )?);
        }
        for (t, task) in tasks.iter().enumerate() {
            for handler in &task.notify {
                if !handlers.iter().any(|h| &h.name == handler) {
                    return Err(positions.error_at(
                        source,
                        &format!("[{p}].tasks[{t}].notify"),
                        format!("no handler named {handler:?} in this play"),
                    ));
                }
            }
        }
        if play.max_fail_percentage.is_some_and(|p| p > 100) {
            return Err(positions.error_at(
                source,
                &format!("[{p}].max_fail_percentage"),
                "a percentage is at most 100",
            ));
        }
        if play.serial == Some(0) {
            return Err(positions.error_at(
                source,
                &format!("[{p}].serial"),
                "serial is a batch size of at least 1; leave it out to run all hosts at once",
            ));
        }
        plays.push(Play {
            name: play.name,
            hosts: play.hosts,
            serial: play.serial,
            max_fail_percentage: play.max_fail_percentage.unwrap_or(0),
            gather_facts: play.gather_facts,
            vars: play.vars,
            tasks,
            handlers,
        });
    }
    use sha2::Digest;
    Ok(Playbook {
        name: name.to_owned(),
        plays,
        checksum: hex::encode(sha2::Sha256::digest(source.text.as_bytes())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Playbook, LocatedError> {
        parse("test", &Source::new("test.yaml", text))
    }

    #[test]
    fn a_playbook_with_handlers() {
        let playbook = parse_text(
            "- name: base
  hosts: all
  serial: 2
  tasks:
    - name: config
      template: {src: a.conf, dest: /etc/a.conf}
      notify: restart a
    - name: run
      command: {cmd: echo hi, creates: /tmp/x}
      when: \"'worker' in host.groups\"
  handlers:
    - name: restart a
      systemd: {name: a, state: restarted}
",
        )
        .unwrap();
        let play = &playbook.plays[0];
        assert_eq!(play.serial, Some(2));
        assert_eq!(play.tasks[0].notify, ["restart a"]);
        assert_eq!(play.tasks[1].module.kind(), "command");
        assert!(play.tasks[1].privileged);
        assert_eq!(play.handlers[0].module.kind(), "systemd");
    }

    #[test]
    fn mistakes_are_located() {
        let err = parse_text(
            "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      copy: {dest: /x}\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("exactly one of src and content"),
            "{err}"
        );
        let err = parse_text("- name: p\n  hosts: all\n  tasks:\n    - name: t\n").unwrap_err();
        assert!(err.to_string().contains("names no module"), "{err}");
        assert_eq!(err.position.map(|p| p.line), Some(4));
        let err = parse_text("- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command: {cmd: x}\n      notify: nobody\n").unwrap_err();
        assert!(
            err.to_string().contains("no handler named \"nobody\""),
            "{err}"
        );
        let err = parse_text(
            "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      comand: {cmd: x}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `comand`"), "{err}");
        let err =
            parse_text("- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command: {cmd: x}\n      file: {path: /x}\n").unwrap_err();
        assert!(
            err.to_string().contains("2 modules (file, command)")
                || err.to_string().contains("2 modules"),
            "{err}"
        );
    }
}
