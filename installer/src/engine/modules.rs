//! What tasks do on a host. Each module checks the host's state and changes only what
//! differs, in as few round trips as it can (one for most; two for files too large to send
//! just in case), and reports whether it changed anything. In a dry run it reports what it
//! would change, with a unified diff for files, and changes nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::playbook::{
    CommandArgs, CopyArgs, DirectoryArgs, FetchArgs, FileArgs, FileState, ModprobeArgs, Module,
    ServiceState, SysctlArgs, SystemdArgs, TemplateArgs, UnarchiveArgs, WaitForArgs,
};
use super::probe::{self, TlsFiles, Url};
use super::templates::Templates;
use super::transport::{Output, Session, Stdin, TransportError, quote};

/// Files up to this size travel with the check that decides whether they are needed.
const INLINE_LIMIT: u64 = 256 * 1024;
/// Files up to this size are diffed in dry runs.
const DIFF_LIMIT: usize = 128 * 1024;

/// What a module needs besides its arguments.
pub struct ModuleContext<'a> {
    pub session: &'a Session,
    pub templates: &'a Templates,
    pub context: &'a tera::Context,
    /// Where relative local paths (`copy.src`, `unarchive.src`) are found.
    pub files: &'a Path,
    pub privileged: bool,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub changed: bool,
    pub message: Option<String>,
    /// A unified diff, in dry runs.
    pub diff: Option<String>,
    /// The unit a `systemd` task started (it was not running): it runs its current
    /// configuration, so a restart handler in the same play has nothing to do for it.
    pub started: Option<String>,
}

impl Outcome {
    fn ok() -> Outcome {
        Outcome::default()
    }

    fn changed(message: impl Into<Option<String>>) -> Outcome {
        Outcome {
            changed: true,
            message: message.into(),
            diff: None,
            started: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("{0}")]
    Failed(String),
}

impl ModuleContext<'_> {
    async fn exec(&self, script: &str, stdin: Stdin) -> Result<Output, ModuleError> {
        Ok(self.session.exec(script, stdin, self.privileged).await?)
    }

    /// Runs a script that must succeed; returns its standard output.
    async fn exec_ok(&self, what: &str, script: &str, stdin: Stdin) -> Result<String, ModuleError> {
        let output = self.exec(script, stdin).await?;
        if output.success() {
            Ok(output.stdout_text())
        } else {
            Err(failure(what, &output))
        }
    }

    fn local(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.files.join(path)
        }
    }
}

/// A module's work as one shell script, so that consecutive tasks can share one round trip
/// (see [`run_batch`]). The script reads its input with `kinit_in`.
#[derive(Debug, Clone)]
pub struct Step {
    /// What the step does, for failure messages.
    pub what: String,
    pub script: String,
    pub input: Vec<u8>,
    pub reader: Reader,
}

/// How a step's output says what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// `kinit:changed` somewhere in the output means a change.
    Marker,
    /// `kinit:<changes>`: the changes systemctl made, empty for none.
    Systemd,
    /// `kinit:skip` when a guard held; otherwise the command's own output.
    Command,
}

impl Step {
    pub fn outcome(&self, output: &Output) -> Result<Outcome, ModuleError> {
        let stdout = output.stdout_text();
        if self.reader == Reader::Command {
            if stdout.starts_with("kinit:skip") {
                return Ok(Outcome::ok());
            }
            if stdout.starts_with("kinit:would") {
                return Ok(Outcome::changed(format!("would run: {}", self.what)));
            }
        }
        if !output.success() {
            return Err(failure(&self.what, output));
        }
        Ok(match self.reader {
            Reader::Marker if stdout.contains("kinit:changed") => Outcome::changed(None),
            Reader::Marker => Outcome::ok(),
            Reader::Systemd => {
                let started = stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("kinit:started:"))
                    .map(str::to_owned);
                let last = stdout
                    .lines()
                    .rev()
                    .find(|l| !l.starts_with("kinit:started:"))
                    .unwrap_or_default();
                let changes = last
                    .trim()
                    .strip_prefix("kinit:")
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                let mut outcome = if changes.is_empty() {
                    Outcome::ok()
                } else {
                    Outcome::changed(changes)
                };
                outcome.started = started;
                outcome
            }
            Reader::Command => {
                let printed = stdout
                    .strip_prefix("kinit:run\n")
                    .unwrap_or(&stdout)
                    .trim()
                    .to_owned();
                Outcome::changed(if printed.is_empty() {
                    None
                } else {
                    Some(printed)
                })
            }
        })
    }
}

async fn run_step(step: Step, ctx: &ModuleContext<'_>) -> Result<Outcome, ModuleError> {
    let script = format!("kinit_in() {{ cat; }}\n{}", step.script);
    let output = ctx.exec(&script, Stdin::bytes(step.input.clone())).await?;
    step.outcome(&output)
}

/// Runs steps in order in one round trip, each with exactly its own input, stopping at the
/// first that fails. Returns the outcome of each step that ran.
pub async fn run_batch(
    session: &Session,
    privileged: bool,
    steps: &[Step],
) -> Result<Vec<Result<Outcome, ModuleError>>, TransportError> {
    // Each step's output is framed by marker lines, and it runs in a subshell, so that its
    // `exit` ends the step, not the batch: one fork per step.
    let mut script = String::from("kinit_err=$(mktemp)\ntrap 'rm -f \"$kinit_err\"' EXIT\n");
    let mut input = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        // `head -c` reads exactly its step's bytes from the shared input, never more.
        script.push_str(&format!(
            "kinit_s{i}() {{\nkinit_in() {{ head -c {len}; }}\n{body}\n}}\n\
             echo kinit:begin:{i}; ( kinit_s{i} ) 2>\"$kinit_err\"; kinit_rc=$?; echo; echo kinit:end:{i}:$kinit_rc\n\
             if [ \"$kinit_rc\" -ne 0 ]; then cat \"$kinit_err\" >&2; exit 0; fi\n",
            len = step.input.len(),
            body = step.script
        ));
        input.extend_from_slice(&step.input);
    }
    let output = session
        .exec_partial(&script, Stdin::bytes(input), privileged)
        .await?;
    let mut outcomes = Vec::new();
    let text = output.stdout_text();
    let mut rest = text.as_str();
    for (i, step) in steps.iter().enumerate() {
        let begin = format!("kinit:begin:{i}\n");
        let end = format!("\nkinit:end:{i}:");
        let (Some(start), Some(stop)) = (rest.find(&begin), rest.find(&end)) else {
            break;
        };
        let body = &rest[start + begin.len()..stop];
        let after = &rest[stop + end.len()..];
        let rc = after.lines().next().unwrap_or_default().to_owned();
        rest = after;
        let failed = rc != "0";
        let step_output = Output {
            status: rc.parse().ok(),
            stdout: body.as_bytes().to_vec(),
            stderr: if failed {
                output.stderr.clone()
            } else {
                Vec::new()
            },
            lost: None,
        };
        outcomes.push(step.outcome(&step_output));
        if failed {
            break;
        }
    }
    if let Some(reason) = &output.lost {
        // The steps reported so far are done; the next one was running when the connection dropped.
        if outcomes.len() < steps.len() && outcomes.last().is_none_or(|o| o.is_ok()) {
            outcomes.push(Err(ModuleError::Transport(TransportError::Lost {
                target: session.transport().target(),
                reason: reason.clone(),
            })));
        }
        return Ok(outcomes);
    }
    if outcomes.len() < steps.len() && outcomes.last().is_none_or(|o| o.is_ok()) {
        // The batch stopped without a step reporting failure: the shell itself failed.
        return Ok(vec![Err(failure("running the tasks' script", &output))]);
    }
    Ok(outcomes)
}

/// The task as a step for a batch, when it can be one: not in dry runs (they read the host's
/// files for diffs), and not for modules that need local work or two round trips.
pub fn step(module: &Module, ctx: &ModuleContext<'_>) -> Result<Option<Step>, ModuleError> {
    if ctx.dry_run {
        return Ok(None);
    }
    Ok(match module {
        Module::Template(args) => {
            let text = ctx
                .templates
                .render(&args.src, ctx.context)
                .map_err(|e| ModuleError::Failed(e.to_string()))?;
            let attributes = Attributes::new(
                args.mode.as_deref(),
                "0644",
                args.owner.as_deref(),
                args.group.as_deref(),
                ctx.privileged,
            )?;
            Some(put_step(&args.dest, text.into_bytes(), &attributes)?)
        }
        Module::Copy(args) => {
            let attributes = Attributes::new(
                args.mode.as_deref(),
                "0644",
                args.owner.as_deref(),
                args.group.as_deref(),
                ctx.privileged,
            )?;
            match copy_content(args, ctx)? {
                Content::Bytes(bytes) => Some(put_step(&args.dest, bytes, &attributes)?),
                Content::File(path)
                    if std::fs::metadata(&path)
                        .map(|m| m.len())
                        .unwrap_or(u64::MAX)
                        <= INLINE_LIMIT =>
                {
                    let bytes = std::fs::read(&path)
                        .map_err(|e| ModuleError::Failed(format!("{}: {e}", path.display())))?;
                    Some(put_step(&args.dest, bytes, &attributes)?)
                }
                Content::File(_) => None,
            }
        }
        Module::File(args) => Some(file_step(args, ctx)?),
        Module::Directory(args) => Some(directory_step(args, ctx)?),
        Module::Command(args) => Some(command_step(args, ctx)),
        Module::Systemd(args) => Some(systemd_step(args, ctx)),
        Module::Sysctl(args) => Some(sysctl_step(args, ctx)),
        Module::Modprobe(args) => Some(modprobe_step(args, ctx)),
        Module::WaitFor(_) | Module::Fetch(_) | Module::Unarchive(_) => None,
    })
}

/// A failed command: its exit code and the last lines of its standard error.
pub fn failure(what: &str, output: &Output) -> ModuleError {
    let status = match output.status {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".into(),
    };
    let tail = output.stderr_tail(6);
    let tail = if tail.is_empty() {
        output
            .stdout_text()
            .lines()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        tail
    };
    if tail.is_empty() {
        ModuleError::Failed(format!("{what} failed ({status})"))
    } else {
        ModuleError::Failed(format!("{what} failed ({status}):\n{tail}"))
    }
}

/// The owner, group and mode a file should have; `stat -c '%a %U %G'` of the target.
struct Attributes {
    mode: String,
    owner: String,
    group: String,
}

impl Attributes {
    fn new(
        mode: Option<&str>,
        default_mode: &str,
        owner: Option<&str>,
        group: Option<&str>,
        privileged: bool,
    ) -> Result<Attributes, ModuleError> {
        let mode = mode.unwrap_or(default_mode);
        let digits = mode.trim_start_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        if digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(ModuleError::Failed(format!(
                "mode {mode:?} is not an octal mode such as 0644"
            )));
        }
        // An unprivileged task cannot give files away; it keeps the login user's ownership.
        let default_owner = if privileged { "root" } else { "" };
        Ok(Attributes {
            mode: digits.to_owned(),
            owner: owner.unwrap_or(default_owner).to_owned(),
            group: group.or(owner).unwrap_or(default_owner).to_owned(),
        })
    }

    /// Shell that compares `$meta` (from stat) and sets `ok_meta=1` when it matches.
    fn compare(&self) -> String {
        if self.owner.is_empty() {
            format!("case \"$meta\" in '{} '*) ok_meta=1;; esac", self.mode)
        } else {
            format!(
                "[ \"$meta\" = '{} {} {}' ] && ok_meta=1",
                self.mode, self.owner, self.group
            )
        }
    }

    /// Shell that applies mode and owner to `$1`.
    fn apply(&self, target: &str) -> String {
        let mut script = format!("chmod {} {target}", self.mode);
        if !self.owner.is_empty() {
            script.push_str(&format!(
                " && chown {}:{} {target}",
                quote(&self.owner),
                quote(&self.group)
            ));
        }
        script
    }
}

pub async fn run(module: &Module, ctx: &ModuleContext<'_>) -> Result<Outcome, ModuleError> {
    match module {
        Module::Template(args) => template(args, ctx).await,
        Module::Copy(args) => copy(args, ctx).await,
        Module::File(args) => run_step(file_step(args, ctx)?, ctx).await,
        Module::Directory(args) => run_step(directory_step(args, ctx)?, ctx).await,
        Module::Command(args) => run_step(command_step(args, ctx), ctx).await,
        Module::Systemd(args) => run_step(systemd_step(args, ctx), ctx).await,
        Module::Sysctl(args) => run_step(sysctl_step(args, ctx), ctx).await,
        Module::Modprobe(args) => run_step(modprobe_step(args, ctx), ctx).await,
        Module::WaitFor(args) => wait_for(args, ctx).await,
        Module::Fetch(args) => fetch(args, ctx).await,
        Module::Unarchive(args) => unarchive(args, ctx).await,
    }
}

/// Where a file's content comes from.
enum Content {
    Bytes(Vec<u8>),
    File(PathBuf),
}

async fn template(args: &TemplateArgs, ctx: &ModuleContext<'_>) -> Result<Outcome, ModuleError> {
    let text = ctx
        .templates
        .render(&args.src, ctx.context)
        .map_err(|e| ModuleError::Failed(e.to_string()))?;
    let attributes = Attributes::new(
        args.mode.as_deref(),
        "0644",
        args.owner.as_deref(),
        args.group.as_deref(),
        ctx.privileged,
    )?;
    put(
        ctx,
        &args.dest,
        Content::Bytes(text.into_bytes()),
        &attributes,
    )
    .await
}

fn copy_content(args: &CopyArgs, ctx: &ModuleContext<'_>) -> Result<Content, ModuleError> {
    Ok(match (&args.src, &args.content) {
        (Some(src), None) => {
            let path = ctx.local(src);
            if !path.is_file() {
                return Err(ModuleError::Failed(format!(
                    "copy: {} does not exist here",
                    path.display()
                )));
            }
            Content::File(path)
        }
        (None, Some(content)) => Content::Bytes(content.clone().into_bytes()),
        _ => {
            return Err(ModuleError::Failed(
                "copy needs exactly one of src and content".into(),
            ));
        }
    })
}

async fn copy(args: &CopyArgs, ctx: &ModuleContext<'_>) -> Result<Outcome, ModuleError> {
    let content = copy_content(args, ctx)?;
    let attributes = Attributes::new(
        args.mode.as_deref(),
        "0644",
        args.owner.as_deref(),
        args.group.as_deref(),
        ctx.privileged,
    )?;
    put(ctx, &args.dest, content, &attributes).await
}

type FileKey = (PathBuf, u64, std::time::SystemTime);

/// Checksums of local files, by path, size and modification time: a binary copied to many
/// hosts is read and hashed once per run, not once per host, and off the async workers.
static LOCAL_SUMS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<FileKey, Arc<tokio::sync::OnceCell<String>>>>,
> = std::sync::LazyLock::new(Default::default);

/// The checksum of a local file, remembered across runs in kinit's cache (by path, size and
/// modification time): a bundle's binaries are hashed once, not at every run.
fn remembered_sha256(path: &Path) -> Result<String, ModuleError> {
    static REMEMBERED: std::sync::Mutex<Option<std::collections::BTreeMap<String, String>>> =
        std::sync::Mutex::new(None);
    let failed = |e: String| ModuleError::Failed(format!("{}: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| failed(e.to_string()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    let key = format!(
        "{}\t{}\t{}.{:09}",
        path.display(),
        meta.len(),
        mtime.as_secs(),
        mtime.subsec_nanos()
    );
    let file = crate::state::cache_dir().join("file-sums.json");
    let mut remembered = REMEMBERED.lock().expect("not poisoned");
    let map = remembered.get_or_insert_with(|| {
        std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    });
    if let Some(sum) = map.get(&key) {
        return Ok(sum.clone());
    }
    let (sum, _) = crate::bundle::sha256_file(path).map_err(|e| failed(e.to_string()))?;
    map.insert(key, sum.clone());
    let text = serde_json::to_vec(&*map).expect("serialisable");
    // A cache: failing to write it costs time later, not correctness.
    let _ = std::fs::create_dir_all(file.parent().unwrap_or(Path::new("."))).and_then(|()| {
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &file))
    });
    Ok(sum)
}

async fn sha256_of(content: &Content) -> Result<(String, u64), ModuleError> {
    match content {
        Content::Bytes(bytes) => Ok((hex::encode(Sha256::digest(bytes)), bytes.len() as u64)),
        Content::File(path) => {
            let meta = std::fs::metadata(path)
                .map_err(|e| ModuleError::Failed(format!("{}: {e}", path.display())))?;
            let key = (
                path.clone(),
                meta.len(),
                meta.modified().unwrap_or(std::time::UNIX_EPOCH),
            );
            let cell = LOCAL_SUMS
                .lock()
                .expect("not poisoned")
                .entry(key)
                .or_default()
                .clone();
            let sum = cell
                .get_or_try_init(|| async {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || remembered_sha256(&path))
                        .await
                        .map_err(|e| ModuleError::Failed(e.to_string()))?
                })
                .await?;
            Ok((sum.clone(), meta.len()))
        }
    }
}

/// Makes `dest` hold `content` with `attributes`: skipped when the host's copy already has
/// the same SHA-256; otherwise streamed into a temporary file beside it, checked and renamed.
/// The shell of a file write: `check` sets `$cur` (the host's SHA-256) and `$ok_meta`; `write`
/// streams the input into a temporary file beside the target, checks it and renames it; `fix`
/// corrects mode and owner alone.
fn put_scripts(
    dest: &str,
    want: &str,
    size: u64,
    attributes: &Attributes,
) -> (String, String, String) {
    let q = quote(dest);
    let check = format!(
        "cur=$(sha256sum {q} 2>/dev/null | cut -d' ' -f1); meta=$(stat -c '%a %U %G' {q} 2>/dev/null); ok_meta=; {compare}\n",
        compare = attributes.compare()
    );
    let write = format!(
        "set -e\ndir=$(dirname {q}); mkdir -p \"$dir\"\ntmp=$(mktemp \"$dir/.kinit.XXXXXX\")\ntrap 'rm -f \"$tmp\"' EXIT\n\
         got=$(kinit_in | tee \"$tmp\" | sha256sum | cut -d' ' -f1)\n\
         [ \"$got\" = {want} ] || {{ echo \"the copy arrived damaged: sha256 $got, expected {want}\" >&2; exit 3; }}\n\
         [ \"$(stat -c %s \"$tmp\")\" = {size} ] || {{ echo \"writing {dest} failed (disk full?)\" >&2; exit 3; }}\n\
         {apply}\nmv -f \"$tmp\" {q}\ntrap - EXIT\necho kinit:changed\n",
        apply = attributes.apply("\"$tmp\"")
    );
    let fix = format!("{}; echo kinit:changed:attributes", attributes.apply(&q));
    (check, write, fix)
}

/// A small file's write as one step: the content travels with the check.
fn put_step(dest: &str, bytes: Vec<u8>, attributes: &Attributes) -> Result<Step, ModuleError> {
    if !dest.starts_with('/') {
        return Err(ModuleError::Failed(format!(
            "dest {dest:?} must be an absolute path"
        )));
    }
    let want = hex::encode(Sha256::digest(&bytes));
    let (check, write, fix) = put_scripts(dest, &want, bytes.len() as u64, attributes);
    Ok(Step {
        what: format!("writing {dest}"),
        script: format!(
            "{check}if [ \"$cur\" = {want} ]; then kinit_in >/dev/null; if [ -n \"$ok_meta\" ]; then echo kinit:ok; else {fix}; fi; exit 0; fi\n{write}"
        ),
        input: bytes,
        reader: Reader::Marker,
    })
}

/// Makes `dest` hold `content` with `attributes`: skipped when the host's copy already has
/// the same SHA-256; otherwise streamed into a temporary file beside it, checked and renamed.
async fn put(
    ctx: &ModuleContext<'_>,
    dest: &str,
    content: Content,
    attributes: &Attributes,
) -> Result<Outcome, ModuleError> {
    if !dest.starts_with('/') {
        return Err(ModuleError::Failed(format!(
            "dest {dest:?} must be an absolute path"
        )));
    }
    let (want, size) = sha256_of(&content).await?;
    let q = quote(dest);
    let (check, write, fix) = put_scripts(dest, &want, size, attributes);

    if ctx.dry_run {
        let state = ctx
            .exec_ok(
                "checking the file",
                &format!("{check}echo \"$cur\"; echo \"${{ok_meta:-no}}\""),
                Stdin::none(),
            )
            .await?;
        let mut lines = state.lines();
        let current = lines.next().unwrap_or_default().trim().to_owned();
        let meta_ok = lines.next().unwrap_or_default().trim() == "1";
        if current == want {
            return Ok(if meta_ok {
                Outcome::ok()
            } else {
                Outcome::changed(format!("{dest}: mode or owner would change"))
            });
        }
        let new = match &content {
            Content::Bytes(bytes) => bytes.clone(),
            Content::File(path) if size as usize <= DIFF_LIMIT => {
                std::fs::read(path).map_err(|e| ModuleError::Failed(e.to_string()))?
            }
            Content::File(_) => Vec::new(),
        };
        let old = if current.is_empty() {
            Vec::new()
        } else {
            ctx.exec_ok(
                "reading the file",
                &format!("head -c {} {q}", DIFF_LIMIT + 1),
                Stdin::none(),
            )
            .await?
            .into_bytes()
        };
        let diff = text_diff(dest, &old, &new, current.is_empty(), size as usize);
        return Ok(Outcome {
            started: None,
            changed: true,
            message: Some(if current.is_empty() {
                format!("{dest} would be created")
            } else {
                format!("{dest} would change")
            }),
            diff: Some(diff),
        });
    }

    if size <= INLINE_LIMIT {
        let bytes = match content {
            Content::Bytes(bytes) => bytes,
            Content::File(path) => std::fs::read(&path)
                .map_err(|e| ModuleError::Failed(format!("{}: {e}", path.display())))?,
        };
        return run_step(put_step(dest, bytes, attributes)?, ctx).await;
    }
    // Large: ask first, send only when needed. Hashing a 100 MB binary on every run would
    // dominate a run that changes nothing, so the host keeps a record of each large file's
    // checksum with its size and modification time, trusted while both are unchanged.
    let record = quote(&format!(
        "/var/lib/kinit/sums/{}",
        &hex::encode(Sha256::digest(dest.as_bytes()))[..32]
    ));
    let check_large = format!(
        "st=$(stat -c '%s %Y' {q} 2>/dev/null); cur=\n\
         if [ -n \"$st\" ] && [ -r {record} ]; then read -r rsum rsize rtime < {record}; [ \"$st\" = \"$rsize $rtime\" ] && cur=$rsum; fi\n\
         if [ -n \"$st\" ] && [ -z \"$cur\" ]; then cur=$(sha256sum {q} | cut -d' ' -f1); \
         {{ mkdir -p /var/lib/kinit/sums && echo \"$cur $st\" > {record}; }} 2>/dev/null; fi\n\
         meta=$(stat -c '%a %U %G' {q} 2>/dev/null); ok_meta=; {compare}\n",
        compare = attributes.compare()
    );
    let state = ctx
        .exec_ok(
            "checking the file",
            &format!("{check_large}if [ \"$cur\" = {want} ]; then if [ -n \"$ok_meta\" ]; then echo kinit:ok; else {fix}; fi; else echo kinit:send; fi"),
            Stdin::none(),
        )
        .await?;
    if state.contains("kinit:ok") {
        return Ok(Outcome::ok());
    }
    if state.contains("kinit:changed") {
        return Ok(Outcome::changed(None));
    }
    let stdin = match content {
        Content::Bytes(bytes) => Stdin::bytes(bytes),
        Content::File(path) => Stdin::file(path),
    };
    let remember = format!(
        "{{ mkdir -p /var/lib/kinit/sums && echo \"{want} $(stat -c '%s %Y' {q})\" > {record}; }} 2>/dev/null || true"
    );
    ctx.exec_ok(
        &format!("writing {dest}"),
        &format!("kinit_in() {{ cat; }}\n{write}{remember}\n"),
        stdin,
    )
    .await?;
    Ok(Outcome::changed(None))
}

fn text_diff(dest: &str, old: &[u8], new: &[u8], created: bool, size: usize) -> String {
    let printable = |b: &[u8]| std::str::from_utf8(b).is_ok() && !b.contains(&0);
    if new.is_empty() && size > 0 || !printable(old) || !printable(new) || old.len() > DIFF_LIMIT {
        return format!(
            "Binary or large file {dest} {} ({size} bytes)\n",
            if created {
                "would be created"
            } else {
                "differs"
            }
        );
    }
    let old = String::from_utf8_lossy(old);
    let new = String::from_utf8_lossy(new);
    let from = if created {
        "/dev/null".to_owned()
    } else {
        format!("a{dest}")
    };
    similar::TextDiff::from_lines(old.as_ref(), new.as_ref())
        .unified_diff()
        .context_radius(3)
        .header(&from, &format!("b{dest}"))
        .to_string()
}

fn file_step(args: &FileArgs, ctx: &ModuleContext<'_>) -> Result<Step, ModuleError> {
    let q = quote(&args.path);
    let dry = if ctx.dry_run {
        "echo kinit:changed; exit 0\n"
    } else {
        ""
    };
    let script = match args.state.unwrap_or(FileState::Present) {
        FileState::Absent => {
            format!("if [ -e {q} ] || [ -L {q} ]; then\n{dry}rm -rf {q} && echo kinit:changed\nfi")
        }
        FileState::Present => {
            let attributes = Attributes::new(
                args.mode.as_deref(),
                "0644",
                args.owner.as_deref(),
                args.group.as_deref(),
                ctx.privileged,
            )?;
            format!(
                "meta=$(stat -c '%a %U %G' {q} 2>/dev/null); ok_meta=; {compare}\n\
                 if [ -e {q} ] && [ -n \"$ok_meta\" ]; then exit 0; fi\n{dry}\
                 [ -e {q} ] || {{ mkdir -p \"$(dirname {q})\" && : > {q}; }}\n{apply} && echo kinit:changed",
                compare = attributes.compare(),
                apply = attributes.apply(&q)
            )
        }
    };
    Ok(Step {
        what: format!("ensuring {}", args.path),
        script,
        input: Vec::new(),
        reader: Reader::Marker,
    })
}

fn directory_step(args: &DirectoryArgs, ctx: &ModuleContext<'_>) -> Result<Step, ModuleError> {
    let attributes = Attributes::new(
        args.mode.as_deref(),
        "0755",
        args.owner.as_deref(),
        args.group.as_deref(),
        ctx.privileged,
    )?;
    let q = quote(&args.path);
    Ok(Step {
        what: format!("creating {}", args.path),
        script: format!(
            "meta=$(stat -c '%a %U %G' {q} 2>/dev/null); ok_meta=; {compare}\n\
             if [ -d {q} ] && [ -n \"$ok_meta\" ]; then exit 0; fi\n{dry}\
             mkdir -p {q} && {apply} && echo kinit:changed",
            compare = attributes.compare(),
            dry = if ctx.dry_run {
                "echo kinit:changed; exit 0\n"
            } else {
                ""
            },
            apply = attributes.apply(&q)
        ),
        input: Vec::new(),
        reader: Reader::Marker,
    })
}

fn command_step(args: &CommandArgs, ctx: &ModuleContext<'_>) -> Step {
    let mut guards = String::new();
    if let Some(creates) = &args.creates {
        guards.push_str(&format!(
            "if [ -e {} ]; then echo kinit:skip; exit 0; fi\n",
            quote(creates)
        ));
    }
    if let Some(unless) = &args.unless {
        guards.push_str(&format!(
            "if ( {unless} ) >/dev/null 2>&1; then echo kinit:skip; exit 0; fi\n"
        ));
    }
    let run = if ctx.dry_run {
        "echo kinit:would".to_owned()
    } else {
        format!("echo kinit:run\n{}", args.cmd)
    };
    Step {
        what: format!("`{}`", args.cmd),
        script: format!("{guards}{run}"),
        input: Vec::new(),
        reader: Reader::Command,
    }
}

fn systemd_step(args: &SystemdArgs, ctx: &ModuleContext<'_>) -> Step {
    let mut script = String::from("changed=\n");
    // A daemon reload is housekeeping: it does not count as a change.
    if args.daemon_reload && !ctx.dry_run {
        script.push_str("systemctl daemon-reload\n");
    }
    let act = |test: &str, action: &str| {
        let verb = action.split_whitespace().nth(1).unwrap_or(action);
        if ctx.dry_run {
            format!("if {test}; then changed=\"$changed would-{verb}\"; fi\n")
        } else {
            format!("if {test}; then {action} || fail=1; changed=\"$changed {verb}\"; fi\n")
        }
    };
    if let Some(name) = &args.name {
        let unit = quote(name);
        script.push_str("fail=\n");
        match args.enabled {
            Some(true) => script.push_str(&act(
                &format!("! systemctl is-enabled -q {unit} 2>/dev/null"),
                &format!("systemctl enable -q {unit}"),
            )),
            Some(false) => script.push_str(&act(
                &format!("systemctl is-enabled -q {unit} 2>/dev/null"),
                &format!("systemctl disable -q {unit}"),
            )),
            None => {}
        }
        match args.state {
            Some(ServiceState::Started) => script.push_str(&act(
                &format!("! systemctl is-active -q {unit}"),
                &format!("systemctl start {unit}"),
            )),
            Some(ServiceState::Stopped) => script.push_str(&act(
                &format!("systemctl is-active -q {unit}"),
                &format!("systemctl stop {unit}"),
            )),
            Some(ServiceState::Restarted) => {
                script.push_str(&act("true", &format!("systemctl restart {unit}")))
            }
            Some(ServiceState::RestartedIfRunning) => script.push_str(&act(
                &format!("systemctl is-active -q {unit}"),
                &format!("systemctl restart {unit}"),
            )),
            Some(ServiceState::Reloaded) => {
                script.push_str(&act("true", &format!("systemctl reload-or-restart {unit}")))
            }
            None => {}
        }
        if args.state == Some(ServiceState::Started) && !ctx.dry_run {
            script.push_str(&format!(
                "case \"$changed\" in *start*) echo {};; esac\n",
                quote(&format!("kinit:started:{name}"))
            ));
        }
        script.push_str(&format!(
            "if [ -n \"$fail\" ]; then systemctl status --no-pager --lines=15 {unit} >&2; journalctl --no-pager -n 10 -u {unit} >&2; exit 1; fi\n"
        ));
    }
    script.push_str("echo \"kinit:$changed\"\n");
    Step {
        what: match &args.name {
            Some(name) => format!("systemd unit {name}"),
            None => "systemctl daemon-reload".into(),
        },
        script,
        input: Vec::new(),
        reader: Reader::Systemd,
    }
}

fn sysctl_step(args: &SysctlArgs, ctx: &ModuleContext<'_>) -> Step {
    let file = args
        .file
        .clone()
        .unwrap_or_else(|| "/etc/sysctl.d/99-kinit.conf".into());
    let (f, key, value) = (quote(&file), quote(&args.name), quote(&args.value));
    let line = quote(&format!("{} = {}", args.name, args.value));
    let dry = ctx.dry_run;
    let script = format!(
        "changed=\n\
         if ! grep -qxF {line} {f} 2>/dev/null; then changed=1; {persist}; fi\n\
         cur=$(sysctl -n {key} 2>/dev/null | tr -s ' \\t' ' ')\n\
         if [ \"$cur\" != {value} ]; then changed=1; {apply}; fi\n\
         echo \"kinit:${{changed:+changed}}\"",
        persist = if dry {
            ":".to_owned()
        } else {
            format!(
                "mkdir -p \"$(dirname {f})\" && touch {f} && {{ grep -v \"^{name} *=\" {f} || true; echo {line}; }} > {f}.kinit && mv {f}.kinit {f} || exit 1",
                name = args.name.replace('.', "\\.")
            )
        },
        apply = if dry {
            ":".to_owned()
        } else {
            format!("sysctl -qw {key}={value} >/dev/null || exit 1")
        },
    );
    Step {
        what: format!("sysctl {}", args.name),
        script,
        input: Vec::new(),
        reader: Reader::Marker,
    }
}

fn modprobe_step(args: &ModprobeArgs, ctx: &ModuleContext<'_>) -> Step {
    let name = quote(&args.name);
    let raw = &args.name;
    let dry = ctx.dry_run;
    // Loaded, or built in. A kernel without /proc/modules cannot load modules at all: what it
    // supports is built in, and there is nothing to do.
    let mut script = format!(
        "changed=\n\
         if [ -e /proc/modules ] && ! grep -q \"^{raw} \" /proc/modules && [ ! -d /sys/module/{raw} ] \\\n\
            && ! grep -qs \"/{raw}.ko\" /lib/modules/$(uname -r)/modules.builtin; then\n\
           changed=1; {load}\n\
         fi\n",
        load = if dry {
            ":".to_owned()
        } else {
            format!("modprobe {name} || exit 1")
        }
    );
    if args.persist.unwrap_or(true) {
        script.push_str(&format!(
            "f=/etc/modules-load.d/kinit.conf; if ! grep -qx {name} $f 2>/dev/null; then changed=1; {persist}; fi\n",
            persist = if dry { ":".to_owned() } else { format!("mkdir -p /etc/modules-load.d && echo {name} >> $f || exit 1") }
        ));
    }
    script.push_str("echo \"kinit:${changed:+changed}\"");
    Step {
        what: format!("loading kernel module {}", args.name),
        script,
        input: Vec::new(),
        reader: Reader::Marker,
    }
}

async fn wait_for(args: &WaitForArgs, ctx: &ModuleContext<'_>) -> Result<Outcome, ModuleError> {
    if ctx.dry_run {
        return Ok(Outcome::ok());
    }
    let timeout = Duration::from_secs(args.timeout.unwrap_or(60));
    let deadline = Instant::now() + timeout;
    let mut last_error;
    let started = Instant::now();
    loop {
        let attempt: Result<(), String> = if let Some(target) = &args.tcp {
            let (host, port) = target
                .rsplit_once(':')
                .and_then(|(h, p)| {
                    Some((
                        h.trim_start_matches('[').trim_end_matches(']'),
                        p.parse::<u16>().ok()?,
                    ))
                })
                .ok_or_else(|| {
                    ModuleError::Failed(format!("wait_for.tcp {target:?} is not host:port"))
                })?;
            ctx.session
                .transport()
                .connect_tcp(host, port)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        } else if let Some(url) = &args.url {
            let url = Url::parse(url).map_err(ModuleError::Failed)?;
            let (ca, cert, key) = (
                args.ca.as_ref().map(|p| ctx.local(p)),
                args.client_cert.as_ref().map(|p| ctx.local(p)),
                args.client_key.as_ref().map(|p| ctx.local(p)),
            );
            let tls = TlsFiles {
                ca: ca.as_deref(),
                client_cert: cert.as_deref(),
                client_key: key.as_deref(),
            };
            match probe::http_status(ctx.session.transport().as_ref(), &url, &tls).await {
                Ok(code) if (200..300).contains(&code) => Ok(()),
                Ok(code) => Err(format!("HTTP {code}")),
                Err(e) => Err(e),
            }
        } else if let Some(command) = &args.command {
            let output = ctx.exec(command, Stdin::none()).await?;
            if output.success() {
                Ok(())
            } else {
                Err(match output.stderr_tail(2) {
                    tail if tail.is_empty() => format!("exit code {:?}", output.status),
                    tail => tail,
                })
            }
        } else {
            return Err(ModuleError::Failed(
                "wait_for needs tcp, url or command".into(),
            ));
        };
        match attempt {
            Ok(()) => {
                return Ok(Outcome {
                    message: Some(format!(
                        "ready after {:.1} s",
                        started.elapsed().as_secs_f64()
                    )),
                    ..Outcome::ok()
                });
            }
            Err(e) => last_error = e,
        }
        if Instant::now() >= deadline {
            let target = args
                .tcp
                .clone()
                .or(args.url.clone())
                .or(args.command.clone())
                .unwrap_or_default();
            return Err(ModuleError::Failed(format!(
                "{target} was not ready within {} s; last attempt: {last_error}",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn fetch(args: &FetchArgs, ctx: &ModuleContext<'_>) -> Result<Outcome, ModuleError> {
    let output = ctx
        .exec(&format!("cat {}", quote(&args.src)), Stdin::none())
        .await?;
    if !output.success() {
        return Err(failure(&format!("reading {}", args.src), &output));
    }
    let dest = ctx.local(&args.dest);
    if std::fs::read(&dest).ok().as_deref() == Some(output.stdout.as_slice()) {
        return Ok(Outcome::ok());
    }
    if ctx.dry_run {
        return Ok(Outcome::changed(format!(
            "{} would be written",
            dest.display()
        )));
    }
    // Fetched files are often credentials: private to the operator.
    kinit_pki::write_atomic(&dest, &output.stdout, 0o600)
        .map_err(|e| ModuleError::Failed(e.to_string()))?;
    Ok(Outcome::changed(None))
}

async fn unarchive(args: &UnarchiveArgs, ctx: &ModuleContext<'_>) -> Result<Outcome, ModuleError> {
    let src = ctx.local(&args.src);
    if !src.is_file() {
        return Err(ModuleError::Failed(format!(
            "unarchive: {} does not exist here",
            src.display()
        )));
    }
    let guard = match &args.creates {
        Some(creates) => format!(
            "if [ -e {} ]; then echo kinit:skip; cat >/dev/null; exit 0; fi\n",
            quote(creates)
        ),
        None => String::new(),
    };
    if ctx.dry_run {
        let out = ctx
            .exec_ok(
                "checking",
                &format!("{guard}echo kinit:would"),
                Stdin::none(),
            )
            .await?;
        return Ok(if out.contains("kinit:skip") {
            Outcome::ok()
        } else {
            Outcome::changed(format!("{} would be unpacked", src.display()))
        });
    }
    let dest = quote(&args.dest);
    let script =
        format!("{guard}set -e\nmkdir -p {dest}\ntar -x -C {dest} -f -\necho kinit:changed");
    let out = ctx
        .exec_ok(
            &format!("unpacking into {}", args.dest),
            &script,
            Stdin::file(src),
        )
        .await?;
    Ok(if out.contains("kinit:changed") {
        Outcome::changed(None)
    } else {
        Outcome::ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_owners() {
        let a = Attributes::new(Some("0600"), "0644", None, None, true).unwrap();
        assert_eq!(
            (a.mode.as_str(), a.owner.as_str(), a.group.as_str()),
            ("600", "root", "root")
        );
        assert_eq!(a.compare(), "[ \"$meta\" = '600 root root' ] && ok_meta=1");
        let a = Attributes::new(None, "0755", Some("etcd"), None, true).unwrap();
        assert_eq!((a.owner.as_str(), a.group.as_str()), ("etcd", "etcd"));
        assert!(Attributes::new(Some("0999"), "0644", None, None, true).is_err());
        let unprivileged = Attributes::new(None, "0644", None, None, false).unwrap();
        assert!(!unprivileged.apply("x").contains("chown"));
    }

    #[test]
    fn diffs() {
        let diff = text_diff("/etc/a.conf", b"a\nb\n", b"a\nc\n", false, 4);
        assert!(
            diff.contains("--- a/etc/a.conf") && diff.contains("-b") && diff.contains("+c"),
            "{diff}"
        );
        let created = text_diff("/etc/new", b"", b"x\n", true, 2);
        assert!(created.contains("--- /dev/null"), "{created}");
        assert!(text_diff("/bin/x", b"\x7fELF\0", b"\x7fELF\0\0", false, 6).contains("Binary"));
    }
}
