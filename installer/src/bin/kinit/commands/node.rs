//! `kinit node`: removing nodes, and commands that run on nodes (the node-local API load
//! balancer).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use kinit::ops::cluster::ClusterRun;
use kinit::ops::node::RemoveOptions;
use kinit::state::StateDir;

use super::ConfigArg;
use super::cluster::{RunArgs, confirm, summarize};
use crate::progress::Progress;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Take a node out of the cluster: drain it (respecting PodDisruptionBudgets), delete its
    /// Node object, remove its etcd member (a control plane), and reset the host.
    Remove {
        /// The host, as named in the configuration.
        name: String,
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// How long the drain may wait for evictions (PodDisruptionBudgets), in seconds.
        #[arg(long, default_value_t = 300)]
        drain_timeout: u64,
        /// Do not reset the host (it is gone or will be reinstalled).
        #[arg(long)]
        skip_reset: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// The node-local API load balancer kinit runs on workers (as a systemd unit).
    #[command(hide = true)]
    ApiProxy {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: SocketAddr,
        /// A control plane's API server, host:port; repeat for each.
        #[arg(long = "backend", required = true)]
        backends: Vec<SocketAddr>,
    },
}

pub fn run(command: NodeCommand) -> anyhow::Result<ExitCode> {
    match command {
        NodeCommand::Remove {
            name,
            config,
            state_dir,
            drain_timeout,
            skip_reset,
            yes,
            run,
        } => {
            let loaded = config.load()?;
            let cluster = &loaded.cluster;
            if !yes
                && !run.dry_run
                && !confirm(&format!(
                    "This drains {name}, removes it from cluster {}{} and resets the host.",
                    cluster.name(),
                    if cluster
                        .host(&name)
                        .is_some_and(|h| h.has_role(kinit::config::Role::ControlPlane))
                    {
                        " and from etcd"
                    } else {
                        ""
                    }
                ))?
            {
                eprintln!("nothing changed");
                return Ok(ExitCode::FAILURE);
            }
            let state = state_dir
                .map(StateDir::new)
                .unwrap_or_else(|| super::state_dir(&loaded));
            let progress = Arc::new(Progress::new(run.output));
            let options = ClusterRun {
                state: state.clone(),
                bundle: None,
                assets: run.assets.assets(),
                run: run.options(
                    state.root().join("journal").join("reset.json"),
                    Some(cluster),
                )?,
                ignore_preflight: Vec::new(),
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let again = format!("kinit node remove {name} -c {}", loaded.path.display());
            let (removed, reset) = runtime.block_on(kinit::ops::node::remove(
                cluster,
                options,
                &name,
                RemoveOptions {
                    drain_timeout: Duration::from_secs(drain_timeout),
                    skip_reset,
                },
                progress.clone(),
            ))?;
            if !summarize(&progress, &removed, &again) {
                return Ok(ExitCode::FAILURE);
            }
            if let Some(reset) = &reset
                && !summarize(&progress, reset, &again)
            {
                eprintln!(
                    "{name} is out of the cluster, but its host was not reset; `kinit reset -c {} --node {name}` does that once it is reachable",
                    loaded.path.display()
                );
                return Ok(ExitCode::FAILURE);
            }
            eprintln!(
                "\n{name} is out of the cluster. Remove it from {} and run `kinit init -c {}` so every node's API load balancer forgets it.",
                loaded.path.display(),
                loaded.path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        NodeCommand::ApiProxy { listen, backends } => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(kinit::ops::api_proxy::serve(listen, backends))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
