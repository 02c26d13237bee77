//! `kinit config`: check a configuration, print the schema editors use.

use std::process::ExitCode;

use clap::Subcommand;

use super::ConfigArg;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a cluster configuration: syntax, types, unknown fields, networks, names, roles.
    ///
    /// Every problem is reported as FILE:LINE:COLUMN: FIELD: MESSAGE. Warnings (such as an even
    /// number of etcd members) are printed but do not fail the check.
    Validate {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the JSON Schema of cluster.yaml, for editors (yaml-language-server and others).
    Schema,
}

pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Validate { config } => {
            let loaded = config.load()?;
            let cluster = &loaded.cluster;
            println!(
                "{}: valid: cluster {}, Kubernetes {}, {} hosts ({} control plane, {} etcd)",
                loaded.path.display(),
                cluster.name(),
                cluster.kubernetes_version,
                cluster.hosts.len(),
                cluster.control_planes().count(),
                cluster.etcd_members().count(),
            );
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&kinit::config::schema())?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
