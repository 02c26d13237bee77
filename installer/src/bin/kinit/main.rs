//! The `kinit` command line. It parses arguments, calls kinit's operations and prints what
//! they return; the work itself lives in the library.

mod commands;
mod progress;

use std::process::ExitCode;

use clap::Parser;

/// Stand up and run Kubernetes clusters on your own machines.
///
/// kinit generates a kubeadm-compatible PKI, installs etcd, the control plane, containerd,
/// kubelets, networking and storage on hosts over SSH as systemd units, and runs day-2
/// operations: upgrades, etcd backups and restores, certificate renewal, node changes.
#[derive(Debug, Parser)]
#[command(
    name = "kinit",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
    /// Log more (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    match commands::run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", commands::describe(&error));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap checks the whole command tree (unique names, valid defaults) only when a command
    /// is parsed; this checks every subcommand at once.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
