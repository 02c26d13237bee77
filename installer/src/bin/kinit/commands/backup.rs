//! `kinit backup` and `kinit lock`: etcd backups and the cluster's operation lock.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use kinit::ops::backup::{self, BackupInfo, CreateOptions, Retention};
use kinit::ops::cluster::ClusterRun;
use kinit::ops::lock;
use kinit::state::StateDir;

use super::cluster::{RunArgs, confirm, summarize};
use super::{AccessArgs, ConfigArg};
use crate::progress::Progress;

#[derive(Debug, Args)]
pub struct Target {
    #[command(flatten)]
    config: ConfigArg,
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Where backups are kept [default: backups/ in the cluster's state directory].
    #[arg(long, value_name = "DIR", env = "KINIT_BACKUP_DIR")]
    dir: Option<PathBuf>,
    /// Encrypt backups at rest with the key in FILE (`kinit backup keygen FILE` makes one);
    /// needed again to verify and restore them.
    #[arg(long, value_name = "FILE", env = "KINIT_BACKUP_KEY_FILE")]
    encryption_key_file: Option<PathBuf>,
}

struct Resolved {
    loaded: kinit::config::LoadedCluster,
    state: StateDir,
    dir: PathBuf,
    key: Option<kinit::ops::sealed::Key>,
}

impl Target {
    fn resolve(&self) -> anyhow::Result<Resolved> {
        let loaded = self.config.load()?;
        let state = self
            .state_dir
            .clone()
            .map(StateDir::new)
            .unwrap_or_else(|| super::state_dir(&loaded));
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| backup::default_dir(&state));
        let key = self
            .encryption_key_file
            .as_deref()
            .map(kinit::ops::sealed::Key::read)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        Ok(Resolved {
            loaded,
            state,
            dir,
            key,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take a backup now: an etcd snapshot from a healthy member, streamed here and verified,
    /// with the cluster's PKI and kubeconfigs.
    Create {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        access: AccessArgs,
        /// Keep the snapshot on the node too (/var/lib/kinit/backups).
        #[arg(long)]
        keep_on_node: bool,
        /// The bundle whose etcdctl reads the snapshot [default: the cluster's lab bundle].
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        #[arg(short, long, value_enum, default_value_t = Format::Text)]
        output: Format,
    },
    /// Write a new random encryption key for backups to FILE (0600).
    Keygen { file: PathBuf },
    /// List the backups, oldest first.
    List {
        #[command(flatten)]
        target: Target,
        #[arg(short, long, value_enum, default_value_t = Format::Text)]
        output: Format,
    },
    /// Check a backup (the latest by default): sizes, checksums, etcd's reading of the snapshot.
    Verify {
        #[command(flatten)]
        target: Target,
        name: Option<String>,
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
    },
    /// Remove the backups the retention policy does not keep.
    Prune {
        #[command(flatten)]
        target: Target,
        /// Keep the newest N backups.
        #[arg(long, value_name = "N")]
        keep_last: Option<usize>,
        /// Keep backups younger than DAYS days.
        #[arg(long, value_name = "DAYS")]
        keep_days: Option<u32>,
        /// Show what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Take backups on a schedule, on the control-plane nodes themselves (a systemd timer on
    /// each etcd member), kept there with retention; --disable stops them.
    Schedule {
        #[command(flatten)]
        target: Target,
        /// When, as cron: `minute hour day month weekday` (such as "0 3 * * *"), or with a
        /// leading seconds field for short intervals.
        #[arg(long, required_unless_present_any = ["disable", "show"])]
        cron: Option<String>,
        /// Keep the newest N backups on each node.
        #[arg(long, value_name = "N")]
        keep_last: Option<usize>,
        /// Keep backups younger than DAYS days.
        #[arg(long, value_name = "DAYS")]
        keep_days: Option<u32>,
        /// Remove the schedule (backups already taken stay).
        #[arg(long, conflicts_with_all = ["cron", "show"])]
        disable: bool,
        /// Show the schedule installed.
        #[arg(long, conflicts_with = "cron")]
        show: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Restore etcd on every member from a backup (NAME, or --latest).
    ///
    /// Checks the backup first and refuses a damaged one or one of another cluster before
    /// anything changes. Then stops the API servers, restores every member with a new cluster
    /// token (old data moved aside to /var/lib/etcd.before-<id>), starts etcd and the control
    /// plane and checks their health.
    Restore {
        #[command(flatten)]
        target: Target,
        #[arg(required_unless_present = "latest", conflicts_with = "latest")]
        name: Option<String>,
        #[arg(long)]
        latest: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Show who holds the cluster's lock, if anyone.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Release the lock of an operation that crashed (shows the holder it had).
    Break {
        #[command(flatten)]
        target: Target,
    },
}

fn print_backups(backups: &[BackupInfo]) {
    println!(
        "{:<34} {:<21} {:>10} {:>9} {:<8} SHA256",
        "NAME", "CREATED", "SIZE", "REVISION", "MEMBER"
    );
    for b in backups {
        println!(
            "{:<34} {:<21} {:>10} {:>9} {:<8} {}",
            b.name,
            b.created,
            backup::human_size(b.size),
            b.revision,
            b.member,
            &b.sha256[..16.min(b.sha256.len())]
        );
    }
}

fn describe(retention: Retention) -> String {
    match (retention.keep_last, retention.keep_days) {
        (None, None) => "every backup".into(),
        (Some(n), None) => format!("the newest {n}"),
        (None, Some(d)) => format!("those younger than {d} days"),
        (Some(n), Some(d)) => format!("the newest {n} and those younger than {d} days"),
    }
}

pub fn run(command: BackupCommand) -> anyhow::Result<ExitCode> {
    match command {
        BackupCommand::Create {
            target,
            access,
            keep_on_node,
            bundle,
            output,
        } => {
            let Resolved {
                loaded,
                state,
                dir,
                key,
            } = target.resolve()?;
            let run = kinit::engine::runner::RunOptions {
                ssh: access.ssh_options()?,
                sudo_password: access.sudo_password(&loaded.cluster)?,
                ..Default::default()
            };
            let options = CreateOptions {
                dir: dir.clone(),
                keep_on_node,
                bundle,
                encryption: key,
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let info = runtime.block_on(backup::create(&loaded.cluster, &state, &run, &options))?;
            match output {
                Format::Json => println!("{}", serde_json::to_string(&info)?),
                Format::Text => {
                    println!(
                        "backup {} taken from {}: {}, revision {}, {} keys, sha256 {}\n  in {}",
                        info.name,
                        info.member,
                        backup::human_size(info.size),
                        info.revision,
                        info.total_keys,
                        info.sha256,
                        dir.join(&info.name).display()
                    );
                }
            }
        }
        BackupCommand::Keygen { file } => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .map_err(|e| {
                    anyhow::anyhow!("{}: {e} (kinit never overwrites a key)", file.display())
                })?;
            writeln!(out, "{}", kinit::ops::sealed::Key::generate().to_hex())?;
            eprintln!(
                "wrote a new backup key to {}: keep a copy apart from the backups, which cannot be restored without it",
                file.display()
            );
        }
        BackupCommand::List { target, output } => {
            let Resolved { dir, .. } = target.resolve()?;
            let backups = backup::list(&dir)?;
            match output {
                Format::Json => println!("{}", serde_json::to_string(&backups)?),
                Format::Text if backups.is_empty() => {
                    eprintln!("no backups in {} yet", dir.display())
                }
                Format::Text => print_backups(&backups),
            }
        }
        BackupCommand::Verify {
            target,
            name,
            bundle,
        } => {
            let Resolved {
                loaded, dir, key, ..
            } = target.resolve()?;
            let info = backup::verify(
                &loaded.cluster,
                &dir,
                name.as_deref(),
                bundle.as_deref(),
                key.as_ref(),
            )?;
            println!(
                "backup {} is intact: sha256 {}, etcd hash {} at revision {}",
                info.name, info.sha256, info.etcd_hash, info.revision
            );
        }
        BackupCommand::Prune {
            target,
            keep_last,
            keep_days,
            dry_run,
        } => {
            anyhow::ensure!(
                keep_last.is_some() || keep_days.is_some(),
                "give a policy: --keep-last N and/or --keep-days DAYS"
            );
            let Resolved { state, dir, .. } = target.resolve()?;
            let removed = backup::prune(
                &state,
                &dir,
                Retention {
                    keep_last,
                    keep_days,
                },
                dry_run,
            )?;
            let verb = if dry_run { "would remove" } else { "removed" };
            for name in &removed {
                println!("{verb} {name}");
            }
            if removed.is_empty() {
                eprintln!("nothing to remove");
            }
        }
        BackupCommand::Schedule {
            target,
            cron,
            keep_last,
            keep_days,
            disable,
            show,
            run,
        } => {
            let Resolved { loaded, state, .. } = target.resolve()?;
            if show {
                match backup::current_schedule(&state) {
                    Some(schedule) => println!(
                        "cron \"{}\" on every control plane, keeping {}",
                        schedule.cron,
                        describe(schedule.retention)
                    ),
                    None => println!("no schedule"),
                }
                return Ok(ExitCode::SUCCESS);
            }
            let schedule = cron.filter(|_| !disable).map(|cron| backup::Schedule {
                cron,
                retention: Retention {
                    keep_last,
                    keep_days,
                },
            });
            let progress = Arc::new(Progress::new(run.output));
            let options = ClusterRun {
                state: state.clone(),
                bundle: None,
                assets: run.assets.assets(),
                run: run.options(
                    state.root().join("journal").join("backup-schedule.json"),
                    Some(&loaded.cluster),
                )?,
                ignore_preflight: Vec::new(),
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let report = runtime.block_on(backup::schedule(
                &loaded.cluster,
                options,
                schedule.as_ref(),
                progress.clone(),
            ))?;
            if !summarize(&progress, &report, "kinit backup schedule …") {
                return Ok(ExitCode::FAILURE);
            }
            match &schedule {
                Some(schedule) => eprintln!(
                    "\nbackups run on every control plane at \"{}\" into /var/lib/kinit/backups, keeping {}",
                    schedule.cron,
                    describe(schedule.retention)
                ),
                None => eprintln!("\nno more scheduled backups; those taken stay on the nodes"),
            }
        }
        BackupCommand::Restore {
            target,
            name,
            latest: _,
            yes,
            run,
        } => {
            let Resolved {
                loaded,
                state,
                dir,
                key,
            } = target.resolve()?;
            let cluster = &loaded.cluster;
            let info = backup::find(&dir, name.as_deref())?;
            if !yes
                && !run.dry_run
                && !confirm(&format!(
                    "This puts etcd of cluster {} back to backup {} (taken {}, revision {}); \
                     everything written since is lost. The API servers stop meanwhile.",
                    cluster.name(),
                    info.name,
                    info.created,
                    info.revision
                ))?
            {
                eprintln!("nothing changed");
                return Ok(ExitCode::FAILURE);
            }
            let progress = Arc::new(Progress::new(run.output));
            let options = ClusterRun {
                state: state.clone(),
                bundle: run.bundle.clone(),
                assets: run.assets.assets(),
                run: run.options(
                    state.root().join("journal").join("restore.json"),
                    Some(cluster),
                )?,
                ignore_preflight: Vec::new(),
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let (info, report) = runtime.block_on(backup::restore(
                cluster,
                options,
                &dir,
                Some(&info.name),
                key.as_ref(),
                progress.clone(),
            ))?;
            if !summarize(
                &progress,
                &report,
                &format!(
                    "kinit backup restore {} -c {}",
                    info.name,
                    loaded.path.display()
                ),
            ) {
                return Ok(ExitCode::FAILURE);
            }
            eprintln!(
                "\netcd is back at revision {} of backup {}; the previous data of each member is in /var/lib/etcd.before-*",
                info.revision, info.name
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn lock_command(command: LockCommand) -> anyhow::Result<ExitCode> {
    match command {
        LockCommand::Status { target } => {
            let Resolved { state, .. } = target.resolve()?;
            match lock::holder(&state) {
                Some(holder) => println!("locked by {holder}"),
                None => println!("not locked"),
            }
        }
        LockCommand::Break { target } => {
            let Resolved { state, .. } = target.resolve()?;
            match lock::break_lock(&state)? {
                Some(holder) => println!("released the lock of {holder}"),
                None => println!("not locked"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
