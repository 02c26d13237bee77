//! `kinit init`, `kinit join`, `kinit token` and `kinit kubeconfig`: installing clusters and
//! reaching them, over SSH from a configuration or, kubeadm-style, on the machine itself.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use kinit::config::{Cidr, DnsDomain, KubernetesVersion};
use kinit::engine::runner::RunOptions;
use kinit::engine::transport::local::LocalTransport;
use kinit::engine::transport::{Privilege, Session};
use kinit::ops::cluster::{self, ClusterRun};
use kinit::ops::{bootstrap, local};
use kinit::state::StateDir;
use kinit_pki::BootstrapToken;

use super::play::AssetArgs;
use super::{AccessArgs, ConfigArg};
use crate::progress::{OutputFormat, Progress};

/// How a run goes, for every command that installs.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The bundle to install from [default: the lab bundle of the version, from kinit's cache].
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    /// Show what would change on each host (with diffs) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Continue a run that failed or was interrupted, from its journal.
    #[arg(long)]
    pub resume: bool,
    /// Preflight checks whose findings are only warnings (Swap, Port-6443, …, or all).
    #[arg(long, value_name = "CHECKS", value_delimiter = ',')]
    pub ignore_preflight_errors: Vec<String>,
    /// Hosts worked on at once.
    #[arg(long, default_value_t = 32)]
    pub forks: usize,
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub assets: AssetArgs,
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

impl RunArgs {
    pub(super) fn options(
        &self,
        journal: PathBuf,
        cluster: Option<&kinit::config::Cluster>,
    ) -> anyhow::Result<RunOptions> {
        Ok(RunOptions {
            dry_run: self.dry_run,
            resume: self.resume,
            forks: self.forks,
            journal: Some(journal),
            ssh: self.access.ssh_options()?,
            sudo_password: match cluster {
                Some(cluster) => self.access.sudo_password(cluster)?,
                None => None,
            },
            ..RunOptions::default()
        })
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Cluster configuration: install every host in it over SSH. Without it (and without a
    /// cluster.yaml here), this machine becomes the first control plane, as with kubeadm.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        env = "KINIT_CONFIG"
    )]
    config: Option<PathBuf>,
    /// Keep the cluster's state (PKI, kubeconfigs, journal) here [default: .kinit/<cluster> beside the config].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    machine: MachineArgs,
}

/// Settings of a cluster made on this machine (without a configuration file).
#[derive(Debug, Args)]
pub struct MachineArgs {
    /// The cluster's name.
    #[arg(long, default_value = "kubernetes")]
    cluster_name: String,
    /// This machine's node name [default: its hostname].
    #[arg(long)]
    node_name: Option<String>,
    /// The address this machine advertises [default: its first IPv4 address].
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Kubernetes version [default: the bundle's].
    #[arg(long)]
    kubernetes_version: Option<KubernetesVersion>,
    #[arg(long, default_value = "10.244.0.0/16")]
    pod_cidr: Cidr,
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: Cidr,
    #[arg(long, default_value = "cluster.local")]
    dns_domain: DnsDomain,
    /// Lifetime of the join token printed at the end (such as 24h, 30m).
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    token_ttl: Duration,
    /// Share the control-plane certificates with the cluster, sealed under a key printed once,
    /// so other machines can join as control planes (for 2 hours; `kinit token create
    /// --upload-certs` shares them again)
    #[arg(long)]
    upload_certs: bool,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// On this machine: the API server to join (host:port), as printed by `kinit init`.
    endpoint: Option<String>,
    /// The bootstrap token (local mode).
    #[arg(long, requires = "endpoint")]
    token: Option<String>,
    /// The pin of the cluster's CA (`sha256:…`), checked before trusting it; repeatable.
    #[arg(
        long = "discovery-token-ca-cert-hash",
        value_name = "PIN",
        requires = "endpoint"
    )]
    pins: Vec<String>,
    /// Join as a control plane, with --certificate-key (SSH mode: the host's roles in the
    /// configuration decide).
    #[arg(long)]
    control_plane: bool,
    /// The key that opens the control-plane certificates shared by `kinit init --upload-certs`
    /// or `kinit token create --upload-certs` (local mode, with --control-plane).
    #[arg(
        long,
        env = "KINIT_CERTIFICATE_KEY",
        hide_env_values = true,
        requires = "endpoint"
    )]
    certificate_key: Option<String>,
    /// This machine's node name [default: its hostname].
    #[arg(long)]
    node_name: Option<String>,
    /// The address this machine advertises [default: its first IPv4 address].
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// SSH mode: the cluster configuration, with the new host in it.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        env = "KINIT_CONFIG",
        conflicts_with = "endpoint"
    )]
    config: Option<PathBuf>,
    /// SSH mode: the host of the configuration to add.
    #[arg(long, value_name = "NAME", requires = "config")]
    node: Option<String>,
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The cluster configuration [default: this machine].
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        env = "KINIT_CONFIG"
    )]
    config: Option<PathBuf>,
    /// Only this host.
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    access: AccessArgs,
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The cluster's state directory [default: .kinit/<cluster> beside the config].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

/// Where a token command acts: a configuration's first control plane over SSH, or this machine.
#[derive(Debug, Args)]
pub struct TokenTarget {
    /// The cluster configuration [default: this machine, a control plane].
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        env = "KINIT_CONFIG"
    )]
    config: Option<PathBuf>,
    #[command(flatten)]
    access: AccessArgs,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a bootstrap token that lets machines join (`kinit join … --token`).
    Create {
        #[command(flatten)]
        target: TokenTarget,
        /// How long the token is valid.
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
        #[arg(long, default_value = "created by kinit token create")]
        description: String,
        /// Print the whole join command, not only the token.
        #[arg(long)]
        print_join_command: bool,
        /// Also share the control-plane certificates under a new key (valid 2 hours) and print
        /// the command that joins a control plane.
        #[arg(long, requires = "print_join_command")]
        upload_certs: bool,
    },
    /// List the cluster's bootstrap tokens (their ids; secrets are not shown).
    List {
        #[command(flatten)]
        target: TokenTarget,
    },
    /// Delete a bootstrap token by id.
    Delete {
        #[command(flatten)]
        target: TokenTarget,
        id: String,
    },
    /// Print a new random token without storing it anywhere.
    Generate,
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 24h, 30m or 7d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: use s, m, h or d")),
    };
    Ok(Duration::from_secs(number * seconds))
}

pub(super) fn summarize(
    progress: &Progress,
    report: &kinit::engine::runner::RunReport,
    again: &str,
) -> bool {
    progress.summary(report);
    if report.success() {
        return true;
    }
    for failure in &report.failures {
        eprintln!("error: {failure}");
    }
    eprintln!(
        "hint: once the host is back, `{again} --resume` continues from the failed task; after \
         changing the configuration or templates, run `{again}` again (it redoes only what differs)"
    );
    false
}

/// `-c FILE`, or ./cluster.yaml when it exists.
fn configuration(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        let default = PathBuf::from("cluster.yaml");
        default.is_file().then_some(default)
    })
}

fn install(
    config: PathBuf,
    state_dir: Option<PathBuf>,
    run: RunArgs,
    joining: Option<String>,
) -> anyhow::Result<ExitCode> {
    let loaded = ConfigArg { path: config }.load()?;
    let cluster = &loaded.cluster;
    let state = state_dir
        .map(StateDir::new)
        .unwrap_or_else(|| super::state_dir(&loaded));
    let progress = Arc::new(Progress::new(run.output));
    let options = ClusterRun {
        state: state.clone(),
        bundle: run.bundle.clone(),
        assets: run.assets.assets(),
        run: run.options(
            state.root().join("journal").join("init.json"),
            Some(cluster),
        )?,
        ignore_preflight: run.ignore_preflight_errors.clone(),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let (report, preflight) = runtime.block_on(cluster::install(
        cluster,
        options,
        joining.as_deref(),
        progress.clone(),
    ))?;
    for finding in &preflight.ignored {
        eprintln!("warning: preflight (ignored): {finding}");
    }
    let again = match &joining {
        Some(node) => format!("kinit join -c {} --node {node}", loaded.path.display()),
        None => format!("kinit init -c {}", loaded.path.display()),
    };
    if !summarize(&progress, &report, &again) {
        return Ok(ExitCode::FAILURE);
    }
    if !run.dry_run && !progress.is_json() {
        let admin = state.kubernetes().join("admin.conf");
        match &joining {
            Some(node) => eprintln!("\n{node} joined the cluster {}.", cluster.name()),
            None => eprintln!(
                "\nThe cluster {} is up: {} nodes.",
                cluster.name(),
                cluster.hosts.len()
            ),
        }
        eprintln!(
            "Use it with:\n  export KUBECONFIG={}\n  kubectl get nodes",
            admin.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    if let Some(config) = configuration(args.config) {
        return install(config, args.state_dir, args.run, None);
    }
    eprintln!(
        "[init] no cluster configuration (-c, ./cluster.yaml): making this machine the first control plane"
    );
    let progress = Arc::new(Progress::new(args.run.output));
    let machine = args.machine;
    let options = local::LocalInit {
        cluster_name: machine.cluster_name,
        node_name: machine.node_name,
        advertise_address: machine.advertise_address,
        kubernetes_version: machine.kubernetes_version,
        pod_cidr: machine.pod_cidr,
        service_cidr: machine.service_cidr,
        dns_domain: machine.dns_domain,
        bundle: args.run.bundle.clone(),
        token_ttl: machine.token_ttl,
        upload_certs: machine.upload_certs,
        ignore_preflight: args.run.ignore_preflight_errors.clone(),
        run: args
            .run
            .options(PathBuf::from(local::LOCAL_STATE).join("journal.json"), None)?,
        assets: args.run.assets.assets(),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let initialized = runtime.block_on(local::init(options, progress.clone()))?;
    if !summarize(&progress, &initialized.report, "kinit init") {
        return Ok(ExitCode::FAILURE);
    }
    if !initialized.join_command.is_empty() {
        eprintln!(
            "\nThis machine is the first control plane. Use the cluster with:\n  export KUBECONFIG={}\n  kubectl get nodes\n\nJoin other machines by running there:\n",
            initialized.admin_kubeconfig.display()
        );
        println!("{}", initialized.join_command);
        if let Some(command) = &initialized.control_plane_join_command {
            eprintln!(
                "\nJoin other control planes (within 2 hours: the certificate key opens the shared CA keys; keep it secret):\n"
            );
            println!("{command}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn join(args: JoinArgs) -> anyhow::Result<ExitCode> {
    let Some(endpoint) = args.endpoint else {
        let config = configuration(args.config)
            .ok_or_else(|| anyhow::anyhow!("give ENDPOINT --token T --discovery-token-ca-cert-hash H (this machine), or -c cluster.yaml --node NAME (over SSH)"))?;
        let node = args.node.ok_or_else(|| {
            anyhow::anyhow!("--node NAME: which host of {} to add", config.display())
        })?;
        return install(config, args.state_dir, args.run, Some(node));
    };
    anyhow::ensure!(
        args.control_plane || args.certificate_key.is_none(),
        "--certificate-key is for joining a control plane: add --control-plane"
    );
    anyhow::ensure!(
        !args.control_plane || args.certificate_key.is_some(),
        "--control-plane needs --certificate-key: the key printed by `kinit init --upload-certs`, \
         or by `kinit token create --print-join-command --upload-certs` on a control plane"
    );
    let token: BootstrapToken = args
        .token
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--token: the bootstrap token printed by `kinit init` or `kinit token create`"
            )
        })?
        .parse()?;
    let progress = Arc::new(Progress::new(args.run.output));
    let options = local::LocalJoin {
        endpoint,
        token,
        pins: args.pins,
        certificate_key: args.certificate_key,
        node_name: args.node_name,
        advertise_address: args.advertise_address,
        bundle: args.run.bundle.clone(),
        ignore_preflight: args.run.ignore_preflight_errors.clone(),
        run: args
            .run
            .options(PathBuf::from(local::LOCAL_STATE).join("journal.json"), None)?,
        assets: args.run.assets.assets(),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(local::join(options, progress.clone()))?;
    if !summarize(&progress, &report, "kinit join …") {
        return Ok(ExitCode::FAILURE);
    }
    if args.control_plane {
        eprintln!(
            "\nThis machine joined the cluster as a control plane: its etcd member, API server, controller manager and scheduler run."
        );
    } else {
        eprintln!(
            "\nThis machine joined the cluster: its kubelet has its own certificate, approved by the cluster."
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "{question} Confirm with --yes when not at a terminal"
    );
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub fn reset(args: ResetArgs) -> anyhow::Result<ExitCode> {
    let Some(config) = configuration(args.config) else {
        if !args.yes
            && !args.run.dry_run
            && !confirm(
                "This removes Kubernetes from this machine, with its data (etcd included).",
            )?
        {
            eprintln!("nothing changed");
            return Ok(ExitCode::FAILURE);
        }
        let progress = Arc::new(Progress::new(args.run.output));
        let run = args
            .run
            .options(PathBuf::from(local::LOCAL_STATE).join("reset.json"), None)?;
        let runtime = tokio::runtime::Runtime::new()?;
        let report = runtime.block_on(local::reset(
            run,
            &args.run.assets.assets(),
            progress.clone(),
        ))?;
        return Ok(if summarize(&progress, &report, "kinit reset") {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    };
    let loaded = ConfigArg { path: config }.load()?;
    let cluster = &loaded.cluster;
    let target = args
        .node
        .clone()
        .unwrap_or_else(|| format!("all {} hosts of {}", cluster.hosts.len(), cluster.name()));
    if !args.yes
        && !args.run.dry_run
        && !confirm(&format!(
            "This removes Kubernetes from {target}, with its data (etcd included)."
        ))?
    {
        eprintln!("nothing changed");
        return Ok(ExitCode::FAILURE);
    }
    let state = args
        .state_dir
        .map(StateDir::new)
        .unwrap_or_else(|| super::state_dir(&loaded));
    let progress = Arc::new(Progress::new(args.run.output));
    let options = ClusterRun {
        state: state.clone(),
        bundle: None,
        assets: args.run.assets.assets(),
        run: args.run.options(
            state.root().join("journal").join("reset.json"),
            Some(cluster),
        )?,
        ignore_preflight: Vec::new(),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(cluster::reset(
        cluster,
        options,
        args.node.as_deref(),
        progress.clone(),
    ))?;
    if !summarize(
        &progress,
        &report,
        &format!("kinit reset -c {}", loaded.path.display()),
    ) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let loaded = args.config.load()?;
    let cluster = &loaded.cluster;
    let run = RunOptions {
        ssh: args.access.ssh_options()?,
        sudo_password: args.access.sudo_password(cluster)?,
        ..RunOptions::default()
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let status = runtime.block_on(cluster::status(
        cluster,
        run,
        &kinit::engine::assets::Assets::default(),
    ))?;
    if args.output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "cluster {} (Kubernetes {})",
        status.cluster, status.kubernetes_version
    );
    println!(
        "\n{:<12} {:<16} {:<22} {:<7} {:<9} SERVICES",
        "NODE", "ADDRESS", "ROLES", "READY", "VERSION"
    );
    for node in &status.nodes {
        let services = match &node.unreachable {
            Some(e) => format!("unreachable: {e}"),
            None => node
                .services
                .iter()
                .map(|(u, s)| {
                    if s == "active" {
                        u.clone()
                    } else {
                        format!("{u}={s}")
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        };
        println!(
            "{:<12} {:<16} {:<22} {:<7} {:<9} {services}",
            node.name,
            node.address,
            node.roles.join(","),
            node.ready.map_or("?", |r| if r { "yes" } else { "no" }),
            node.kubelet_version.as_deref().unwrap_or("?"),
        );
    }
    println!(
        "\n{:<32} {:<8} {:<7} {:<9} DB SIZE",
        "ETCD MEMBER", "HEALTHY", "LEADER", "VERSION"
    );
    for member in &status.etcd {
        println!(
            "{:<32} {:<8} {:<7} {:<9} {}",
            member.endpoint,
            if member.healthy { "yes" } else { "NO" },
            if member.leader { "yes" } else { "" },
            member.version.as_deref().unwrap_or("?"),
            member
                .db_size
                .map_or("?".into(), |s| format!("{:.1} MB", s as f64 / 1e6)),
        );
    }
    if let Some(e) = &status.api_error {
        println!("\nwarning: {e}");
    }
    let healthy = status.api_error.is_none()
        && status
            .nodes
            .iter()
            .all(|n| n.unreachable.is_none() && n.ready == Some(true))
        && status.etcd.iter().all(|m| m.healthy);
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn kubeconfig(args: KubeconfigArgs) -> anyhow::Result<ExitCode> {
    let loaded = args.config.load()?;
    let state = args
        .state_dir
        .map(StateDir::new)
        .unwrap_or_else(|| super::state_dir(&loaded));
    let admin = state.kubernetes().join("admin.conf");
    let text = std::fs::read_to_string(&admin).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; install the cluster first (`kinit init -c {}`)",
            admin.display(),
            loaded.path.display()
        )
    })?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// A session on a control plane: the configuration's first, over SSH, or this machine.
async fn control_plane(target: &TokenTarget) -> anyhow::Result<(Session, Option<String>)> {
    match configuration(target.config.clone()) {
        Some(path) => {
            let loaded = ConfigArg { path }.load()?;
            let cluster = &loaded.cluster;
            let inventory = kinit::ops::inventory::from_cluster(cluster, Default::default());
            let first = cluster
                .control_planes()
                .next()
                .ok_or_else(|| anyhow::anyhow!("the configuration has no control plane"))?;
            let host = inventory
                .host(first.name.as_str())
                .expect("inventory mirrors the configuration");
            let password = target.access.sudo_password(cluster)?;
            let (session, _, _) = kinit::engine::runner::connect(
                host,
                &target.access.ssh_options()?,
                password.as_ref(),
            )
            .await?;
            Ok((
                session,
                Some(
                    kinit::topology::external_api_url(cluster)
                        .trim_start_matches("https://")
                        .to_owned(),
                ),
            ))
        }
        None => Ok((
            Session::new(Arc::new(LocalTransport), Privilege::Root),
            None,
        )),
    }
}

pub fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    match command {
        TokenCommand::Generate => println!("{}", BootstrapToken::generate().expose()),
        TokenCommand::Create {
            target,
            ttl,
            description,
            print_join_command,
            upload_certs,
        } => {
            let (session, endpoint) = runtime.block_on(control_plane(&target))?;
            if print_join_command {
                let endpoint = endpoint.unwrap_or_else(|| "<this machine's address>:6443".into());
                let command = runtime.block_on(bootstrap::join_command(
                    &session,
                    &endpoint,
                    ttl,
                    &description,
                ))?;
                if upload_certs {
                    let key = runtime.block_on(local::share_certificates(&session))?;
                    println!("{command} --control-plane --certificate-key {key}");
                } else {
                    println!("{command}");
                }
            } else {
                let token =
                    runtime.block_on(bootstrap::create_token(&session, ttl, &description))?;
                println!("{}", token.expose());
            }
        }
        TokenCommand::List { target } => {
            let (session, _) = runtime.block_on(control_plane(&target))?;
            let tokens = runtime.block_on(bootstrap::list_tokens(&session))?;
            println!("{:<8} {:<22} {:<28} DESCRIPTION", "ID", "EXPIRES", "USAGES");
            for token in tokens {
                println!(
                    "{:<8} {:<22} {:<28} {}",
                    token.id,
                    token.expires.unwrap_or_else(|| "never".into()),
                    token.usages.join(","),
                    token.description
                );
            }
        }
        TokenCommand::Delete { target, id } => {
            let (session, _) = runtime.block_on(control_plane(&target))?;
            runtime.block_on(bootstrap::delete_token(&session, &id))?;
            println!("token {id} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}
