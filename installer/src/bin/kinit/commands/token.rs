//! `kinit token`: bootstrap tokens.

use std::process::ExitCode;

use clap::Subcommand;
use kinit_pki::BootstrapToken;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random bootstrap token ([a-z0-9]{6}.[a-z0-9]{16}) without storing it anywhere.
    Generate,
}

pub fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Generate => {
            println!("{}", BootstrapToken::generate().expose());
            Ok(ExitCode::SUCCESS)
        }
    }
}
