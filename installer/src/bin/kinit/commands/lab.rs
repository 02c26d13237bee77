//! `kinit lab`: real multi-node test clusters on one machine.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};
use kinit::config::KubernetesVersion;
use kinit::lab::{Lab, UpOptions};

#[derive(Debug, Clone, Args)]
pub struct LabName {
    /// The lab's name; several labs can run side by side.
    #[arg(long, default_value = "lab", env = "KINIT_LAB")]
    name: String,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Create the lab, or bring it to the requested size, and write its inventory.
    ///
    /// Prepares the machine as needed (Debian's docker.io and debootstrap, a docker daemon,
    /// cgroup controllers), builds the node image once (about a minute; cached), starts the
    /// nodes with systemd as PID 1 and sshd, and writes a cluster.yaml for them. Re-running it
    /// is safe. Nodes carry only the operating system; kinit installs Kubernetes on them.
    Up {
        #[command(flatten)]
        lab: LabName,
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// How many of the nodes (the first ones) are control planes in the inventory.
        #[arg(long, default_value_t = 1)]
        control_planes: usize,
        /// Also write the inventory here.
        #[arg(long, value_name = "FILE")]
        inventory: Option<PathBuf>,
        /// Kubernetes version the inventory asks for.
        #[arg(long, default_value = "v1.20.2")]
        kubernetes_version: KubernetesVersion,
    },
    /// Show each node's container and systemd state.
    Status {
        #[command(flatten)]
        lab: LabName,
    },
    /// Log in to a node as root over SSH (host key verified), or run COMMAND there.
    Ssh {
        #[command(flatten)]
        lab: LabName,
        /// Node name (node1, node2, …).
        node: String,
        /// Command to run instead of a shell.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Halt a node cleanly (as a shutdown would), for fault tests.
    Stop {
        #[command(flatten)]
        lab: LabName,
        node: String,
    },
    /// Boot a halted node and wait for systemd and sshd.
    Start {
        #[command(flatten)]
        lab: LabName,
        node: String,
    },
    /// Build the node image if needed and print its docker tag (used by vagrant/Vagrantfile).
    Image,
    /// Remove the lab: containers, volumes, network and files. The last lab to go also
    /// restores the machine's kernel settings and stops the docker daemon kinit started.
    Down {
        #[command(flatten)]
        lab: LabName,
    },
}

pub fn run(command: LabCommand) -> anyhow::Result<ExitCode> {
    match command {
        LabCommand::Up {
            lab,
            nodes,
            control_planes,
            inventory,
            kubernetes_version,
        } => {
            let started = Instant::now();
            let lab = Lab::new(&lab.name)?;
            let options = UpOptions {
                nodes,
                control_planes,
                inventory: inventory.clone(),
                kubernetes_version,
            };
            let up = lab.up(&options)?;
            println!(
                "lab {} is up in {:.1} s:",
                lab.name(),
                started.elapsed().as_secs_f64()
            );
            for node in &up {
                println!("  {:<8} {}", node.name, node.address);
            }
            println!(
                "inventory: {}",
                inventory.unwrap_or_else(|| lab.inventory_file()).display()
            );
            println!("log in:    kinit lab ssh --name {} node1", lab.name());
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Status { lab } => {
            let lab = Lab::new(&lab.name)?;
            println!(
                "{:<8} {:<15} {:<10} SYSTEMD",
                "NODE", "ADDRESS", "CONTAINER"
            );
            for status in lab.status()? {
                println!(
                    "{:<8} {:<15} {:<10} {}",
                    status.node.name,
                    status.node.address,
                    status.container,
                    status.system.unwrap_or_else(|| "-".into())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Ssh { lab, node, command } => {
            let lab = Lab::new(&lab.name)?;
            let mut ssh = lab.ssh(&node)?;
            ssh.args(&command);
            // Replaces this process: the terminal and exit code are ssh's.
            Err(anyhow::anyhow!("running ssh: {}", ssh.exec()))
        }
        LabCommand::Stop { lab, node } => {
            Lab::new(&lab.name)?.stop(&node)?;
            println!("{node} halted");
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Start { lab, node } => {
            Lab::new(&lab.name)?.start(&node)?;
            println!("{node} is running");
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Image => {
            println!("{}", Lab::prepare_node_image()?);
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Down { lab } => {
            let lab = Lab::new(&lab.name)?;
            for note in lab.down()? {
                eprintln!("note: {note}");
            }
            println!("lab {} removed", lab.name());
            Ok(ExitCode::SUCCESS)
        }
    }
}
