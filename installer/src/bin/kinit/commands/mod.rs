//! One module per command group, each with its arguments and a `run` that calls the library.

mod backup;
mod bundle;
mod certs;
mod cluster;
mod config;
mod lab;
mod node;
mod play;
mod upgrade;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use kinit::config::{ConfigError, LoadedCluster};
use kinit::state::StateDir;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install a cluster on the hosts of a configuration, over SSH.
    ///
    /// Generates the PKI, verifies and unpacks the bundle, checks every host (preflight), then
    /// installs etcd, the control plane, containerd, kubelets, kube-proxy, the pod network,
    /// DNS and storage as systemd units. Safe to re-run; --resume continues a failed run.
    Init(cluster::InitArgs),
    /// Add a host of the configuration to the cluster (a worker or a control plane).
    Join(cluster::JoinArgs),
    /// Remove Kubernetes from every host (or one), leaving the operating system clean.
    Reset(cluster::ResetArgs),
    /// Show nodes, versions, services and etcd members' health.
    Status(cluster::StatusArgs),
    /// Print the cluster's admin kubeconfig.
    Kubeconfig(cluster::KubeconfigArgs),
    /// Commands that run on nodes.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Validate cluster configurations and print their JSON Schema.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Generate, inspect and renew the cluster PKI and kubeconfigs.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Bootstrap tokens for joining machines: create, list, delete.
    #[command(subcommand)]
    Token(cluster::TokenCommand),
    /// etcd backups: create, list, verify, prune, restore.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Upgrades: plan (versions available, skew checks), apply (node by node, resumable).
    #[command(subcommand)]
    Upgrade(upgrade::UpgradeCommand),
    /// The cluster's operation lock: who holds it; break a crashed operation's.
    #[command(subcommand)]
    Lock(backup::LockCommand),
    /// Run a playbook on the hosts of a cluster configuration.
    Play(play::PlayArgs),
    /// Offline bundles: every binary and image kinit installs, with checksums.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// A lab of real hosts on this machine: systemd + sshd node containers.
    #[command(subcommand)]
    Lab(lab::LabCommand),
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Config(command) => config::run(command),
        Command::Certs(command) => certs::run(command),
        Command::Token(command) => cluster::token(command),
        Command::Lab(command) => lab::run(command),
        Command::Bundle(command) => bundle::run(command),
        Command::Play(args) => play::run(args),
        Command::Init(args) => cluster::init(args),
        Command::Join(args) => cluster::join(args),
        Command::Kubeconfig(args) => cluster::kubeconfig(args),
        Command::Reset(args) => cluster::reset(args),
        Command::Status(args) => cluster::status(args),
        Command::Node(command) => node::run(command),
        Command::Backup(command) => backup::run(command),
        Command::Lock(command) => backup::lock_command(command),
        Command::Upgrade(command) => upgrade::run(command),
    }
}

/// The cluster configuration file, shared by every command that reads one.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// Cluster configuration file.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        env = "KINIT_CONFIG",
        default_value = "cluster.yaml"
    )]
    pub path: PathBuf,
}

impl ConfigArg {
    /// Loads and validates the configuration, printing its warnings.
    pub fn load(&self) -> Result<LoadedCluster, ConfigError> {
        let loaded = kinit::config::load(&self.path)?;
        for warning in &loaded.warnings {
            eprintln!("warning: {warning}");
        }
        Ok(loaded)
    }
}

/// How kinit reaches hosts: host-key policy and the secrets sudo and SSH may need.
#[derive(Debug, Clone, Args)]
pub struct AccessArgs {
    /// Pin unknown host keys on first use (recorded in ~/.kinit/known_hosts). Changed keys
    /// are refused regardless.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Prompt for the sudo password of non-root users (asked once, never shown or logged).
    #[arg(long, conflicts_with = "become_password_stdin")]
    pub ask_become_pass: bool,
    /// Read the sudo password from the first line of standard input.
    #[arg(long)]
    pub become_password_stdin: bool,
    /// Prompt for an SSH password, tried after keys.
    #[arg(long)]
    pub ask_ssh_pass: bool,
}

impl AccessArgs {
    pub fn ssh_options(&self) -> anyhow::Result<kinit::engine::transport::ssh::SshOptions> {
        use kinit::engine::transport::Secret;
        let password = if self.ask_ssh_pass {
            Some(Secret::new(rpassword::prompt_password("SSH password: ")?))
        } else {
            None
        };
        let cache = std::sync::Mutex::new(std::collections::HashMap::<PathBuf, Secret>::new());
        let passphrase: kinit::engine::transport::ssh::PassphraseSource =
            std::sync::Arc::new(move |file: &std::path::Path| {
                let mut cache = cache.lock().ok()?;
                if let Some(known) = cache.get(file) {
                    return Some(known.clone());
                }
                let secret = Secret::new(
                    rpassword::prompt_password(format!("Passphrase for {}: ", file.display()))
                        .ok()?,
                );
                cache.insert(file.to_owned(), secret.clone());
                Some(secret)
            });
        Ok(kinit::engine::transport::ssh::SshOptions {
            accept_new_host_keys: self.accept_new_host_keys,
            password,
            passphrase: Some(passphrase),
            ..Default::default()
        })
    }

    /// The sudo password, when asked for; read once, before any host is touched.
    pub fn sudo_password(
        &self,
        _cluster: &kinit::config::Cluster,
    ) -> anyhow::Result<Option<kinit::engine::transport::Secret>> {
        use kinit::engine::transport::Secret;
        if self.ask_become_pass {
            return Ok(Some(Secret::new(rpassword::prompt_password(
                "sudo password: ",
            )?)));
        }
        if self.become_password_stdin {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = line.trim_end_matches(['\n', '\r']).to_owned();
            anyhow::ensure!(
                !password.is_empty(),
                "--become-password-stdin: standard input held no password"
            );
            return Ok(Some(Secret::new(password)));
        }
        Ok(None)
    }
}

/// The default state directory of a loaded configuration.
pub fn state_dir(loaded: &LoadedCluster) -> StateDir {
    loaded.state_dir()
}

/// The error and its causes on one line; configuration errors keep one line per problem.
pub fn describe(error: &anyhow::Error) -> String {
    if let Some(ConfigError::Invalid { errors }) = error.downcast_ref::<ConfigError>() {
        return errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\nerror: ");
    }
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
