//! `kinit upgrade plan|apply`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use kinit::config::KubernetesVersion;
use kinit::ops::cluster::ClusterRun;
use kinit::ops::upgrade::{self, ApplyOptions};
use kinit::state::StateDir;

use super::cluster::{RunArgs, summarize};
use super::{AccessArgs, ConfigArg};
use crate::progress::Progress;

#[derive(Debug, Subcommand)]
pub enum UpgradeCommand {
    /// Show the versions the bundles on this machine offer, whether the skew rules allow
    /// them, and what `apply` would do, node by node.
    Plan {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Another bundle to consider besides kinit's cache.
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Upgrade the cluster to VERSION: a backup first, then one node at a time, control planes
    /// first (cordon, drain, upgrade, health gates, uncordon). --resume continues after a
    /// failure or an interruption.
    Apply {
        /// The version to upgrade to (`kinit upgrade plan` lists them).
        #[arg(value_name = "VERSION")]
        target: KubernetesVersion,
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// How long a drain may wait for evictions (PodDisruptionBudgets), in seconds.
        #[arg(long, default_value_t = 300)]
        drain_timeout: u64,
        /// Encrypt the backup taken first with the key in FILE.
        #[arg(long, value_name = "FILE", env = "KINIT_BACKUP_KEY_FILE")]
        backup_key_file: Option<PathBuf>,
        #[command(flatten)]
        run: RunArgs,
    },
}

pub fn run(command: UpgradeCommand) -> anyhow::Result<ExitCode> {
    match command {
        UpgradeCommand::Plan {
            config,
            state_dir,
            bundle,
            access,
        } => {
            let loaded = config.load()?;
            let cluster = &loaded.cluster;
            let state = state_dir
                .map(StateDir::new)
                .unwrap_or_else(|| super::state_dir(&loaded));
            let run = kinit::engine::runner::RunOptions {
                ssh: access.ssh_options()?,
                sudo_password: access.sudo_password(cluster)?,
                ..Default::default()
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let plan = runtime.block_on(upgrade::plan(cluster, &state, &run, bundle.as_deref()))?;
            println!(
                "cluster {} runs Kubernetes {}",
                cluster.name(),
                plan.current
            );
            for (node, version) in &plan.nodes {
                println!("  {node:<12} kubelet {version}");
            }
            println!("\navailable:");
            if plan.candidates.is_empty() {
                println!("  nothing else: build or fetch a bundle (`kinit bundle create`)");
            }
            for candidate in &plan.candidates {
                match &candidate.refused {
                    None => println!(
                        "  {}  ok  (kinit upgrade apply {} -c {})",
                        candidate.version,
                        candidate.version,
                        loaded.path.display()
                    ),
                    Some(reason) => println!("  {}  refused: {reason}", candidate.version),
                }
            }
            println!("\napply does, in order:");
            for (index, step) in plan.steps.iter().enumerate() {
                println!("  {}. {step}", index + 1);
            }
        }
        UpgradeCommand::Apply {
            target: version,
            config,
            state_dir,
            drain_timeout,
            backup_key_file,
            run,
        } => {
            let loaded = config.load()?;
            let cluster = &loaded.cluster;
            let state = state_dir
                .map(StateDir::new)
                .unwrap_or_else(|| super::state_dir(&loaded));
            let progress = Arc::new(Progress::new(run.output));
            let apply = ApplyOptions {
                target: version,
                bundle: run.bundle.clone(),
                drain_timeout: Duration::from_secs(drain_timeout),
                backup_dir: kinit::ops::backup::default_dir(&state),
                backup_key: backup_key_file
                    .as_deref()
                    .map(kinit::ops::sealed::Key::read)
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
            };
            let options = ClusterRun {
                state: state.clone(),
                bundle: run.bundle.clone(),
                assets: run.assets.assets(),
                run: run.options(
                    state.root().join("journal").join("upgrade.json"),
                    Some(cluster),
                )?,
                ignore_preflight: Vec::new(),
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let reports =
                runtime.block_on(upgrade::apply(cluster, options, apply, progress.clone()))?;
            let again = format!("kinit upgrade apply {version} -c {}", loaded.path.display());
            for (_, report) in &reports {
                if !summarize(&progress, report, &again) {
                    return Ok(ExitCode::FAILURE);
                }
            }
            eprintln!(
                "\ncluster {} runs Kubernetes {version} on every node. Set kubernetesVersion: {version} in {}.",
                cluster.name(),
                loaded.path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
