//! One module per command group, each with its arguments and a `run` that calls the library.

mod bundle;
mod certs;
mod config;
mod lab;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use kinit::config::{ConfigError, LoadedCluster};
use kinit::state::StateDir;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate cluster configurations and print their JSON Schema.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Generate, inspect and renew the cluster PKI and kubeconfigs.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Bootstrap tokens for joining nodes.
    #[command(subcommand)]
    Token(token::TokenCommand),
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
        Command::Token(command) => token::run(command),
        Command::Lab(command) => lab::run(command),
        Command::Bundle(command) => bundle::run(command),
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

/// The default state directory of a loaded configuration.
pub fn state_dir(loaded: &LoadedCluster) -> StateDir {
    StateDir::beside(&loaded.path, loaded.cluster.name())
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
