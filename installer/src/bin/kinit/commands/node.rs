//! `kinit node`: commands that run on nodes (the node-local API load balancer).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
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
        NodeCommand::ApiProxy { listen, backends } => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(kinit::ops::api_proxy::serve(listen, backends))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
