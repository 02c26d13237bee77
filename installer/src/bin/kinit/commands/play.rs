//! `kinit play`: run a playbook on the hosts of a cluster configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use kinit::engine::assets::Assets;
use kinit::engine::playbook;
use kinit::engine::runner::{RunOptions, Runner};
use kinit::engine::templates::Templates;
use kinit::ops;

use super::{AccessArgs, ConfigArg};
use crate::progress::{OutputFormat, Progress};

#[derive(Debug, Args)]
pub struct PlayArgs {
    /// A playbook: kinit's by name (prepare, …) or a file.
    playbook: String,
    #[command(flatten)]
    config: ConfigArg,
    /// Only these hosts: names or groups (control-plane, etcd, worker), comma-separated.
    #[arg(long, value_name = "HOSTS")]
    limit: Option<String>,
    /// Show, per host, what would change (with a diff of every file) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Continue a run that failed or was interrupted, from its journal.
    #[arg(long)]
    resume: bool,
    /// Hosts worked on at once.
    #[arg(long, default_value_t = 32)]
    forks: usize,
    /// A variable for templates, KEY=VALUE (VALUE parsed as JSON when it is JSON).
    #[arg(short = 'e', long = "extra-var", value_name = "KEY=VALUE")]
    extra_vars: Vec<String>,
    /// Where relative `copy` and `unarchive` sources are [default: the playbook's directory].
    #[arg(long, value_name = "DIR")]
    files_dir: Option<PathBuf>,
    #[command(flatten)]
    access: AccessArgs,
    #[command(flatten)]
    assets: AssetArgs,
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

/// Where playbooks and templates come from.
#[derive(Debug, Clone, Args)]
pub struct AssetArgs {
    /// Use the playbooks in DIR instead of kinit's own.
    #[arg(long, value_name = "DIR", env = "KINIT_PLAYBOOKS")]
    pub playbooks_dir: Option<PathBuf>,
    /// Use the templates in DIR instead of kinit's own.
    #[arg(long, value_name = "DIR", env = "KINIT_TEMPLATES")]
    pub templates_dir: Option<PathBuf>,
}

impl AssetArgs {
    pub fn assets(&self) -> Assets {
        Assets::new(self.playbooks_dir.clone(), self.templates_dir.clone())
    }
}

fn parse_extra_vars(pairs: &[String]) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    pairs
        .iter()
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("-e {pair:?}: expected KEY=VALUE"))?;
            let value = serde_json::from_str(value)
                .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
            Ok((key.to_owned(), value))
        })
        .collect()
}

pub fn run(args: PlayArgs) -> anyhow::Result<ExitCode> {
    let loaded = args.config.load()?;
    let assets = args.assets.assets();
    let (name, source) = assets
        .playbook(&args.playbook)
        .map_err(anyhow::Error::msg)?;
    let playbook = playbook::parse(&name, &source)?;
    let templates = Templates::load(&assets)?;
    let state = super::state_dir(&loaded);
    let files = args.files_dir.clone().unwrap_or_else(|| {
        std::path::Path::new(&args.playbook)
            .parent()
            .filter(|p| std::path::Path::new(&args.playbook).is_file() && !p.as_os_str().is_empty())
            .map(|p| p.to_owned())
            .unwrap_or_else(|| PathBuf::from("."))
    });
    let inventory =
        ops::inventory::from_cluster(&loaded.cluster, parse_extra_vars(&args.extra_vars)?);
    let progress = Arc::new(Progress::new(args.output));
    let options = RunOptions {
        dry_run: args.dry_run,
        resume: args.resume,
        forks: args.forks,
        limit: args.limit.clone(),
        files,
        journal: Some(state.root().join("journal").join(format!("{name}.json"))),
        extra_vars: BTreeMap::new(),
        ssh: args.access.ssh_options()?,
        sudo_password: args.access.sudo_password(&loaded.cluster)?,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let runner = Runner::new(inventory, templates, options, progress.clone());
    let report = runtime.block_on(runner.run(&playbook))?;
    progress.summary(&report);
    if report.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        for failure in &report.failures {
            eprintln!("error: {failure}");
        }
        if !args.dry_run {
            eprintln!(
                "hint: once the host is back, `kinit play {0} --resume` continues from the failed \
                 task; after changing the playbook's inputs, run it again without --resume",
                args.playbook
            );
        }
        Ok(ExitCode::FAILURE)
    }
}
