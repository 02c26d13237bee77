//! The lab: real hosts on one machine, for trying kinit and for testing it. Each node is a
//! docker container running systemd as PID 1 and sshd, with its own address on a private
//! bridge network, reachable by SSH from the operator and from the other nodes, and carrying
//! only the operating system: kinit installs everything Kubernetes itself.
//!
//! A lab's files live in `~/.kinit/labs/<name>/`: the operator's SSH key, a known_hosts file
//! with the nodes' host keys (so kinit verifies them like any host's), the sudo password of
//! the `opspw` account, and a ready `cluster.yaml` inventory.

mod docker;
mod host;
mod image;

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use rand::Rng;
use serde::{Deserialize, Serialize};

pub use docker::Docker;
pub use image::node_image;

/// Installs the Debian packages providing missing programs (`(program, package)` pairs), as
/// root; otherwise says which to install.
pub fn ensure_host_packages(wanted: &[(&str, &str)]) -> Result<(), LabError> {
    host::ensure_packages(wanted)
}

use crate::config::{self, KubernetesVersion, Role};
use crate::state;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{0}")]
    Docker(String),
    #[error("{0}")]
    Host(String),
    #[error("{0}")]
    State(String),
    #[error("node {node}: {message}")]
    Node { node: String, message: String },
    #[error("lab {0:?} does not exist; create it with `kinit lab up --name {0}`")]
    NoSuchLab(String),
    #[error("{0}")]
    Usage(String),
}

/// The label every docker object of a lab carries, with the lab's name as value.
const LABEL: &str = "io.kinit.lab";
/// The user accounts of every node (see `lab/node-image.sh`).
pub const SUDO_USER: &str = "ops";
pub const SUDO_PASSWORD_USER: &str = "opspw";

/// How `lab up` builds or grows a lab.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub nodes: usize,
    pub control_planes: usize,
    /// Where to write the inventory in addition to the lab directory.
    pub inventory: Option<PathBuf>,
    pub kubernetes_version: KubernetesVersion,
}

/// A node as recorded in the lab's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabNode {
    pub name: String,
    pub address: Ipv4Addr,
    pub container: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LabState {
    subnet: Ipv4Net,
    nodes: Vec<LabNode>,
}

/// One node's condition, for `lab status`.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub node: LabNode,
    /// docker's state: running, exited, or missing.
    pub container: String,
    /// `systemctl is-system-running`, when the container runs.
    pub system: Option<String>,
}

/// A lab, by name.
#[derive(Debug, Clone)]
pub struct Lab {
    name: String,
    dir: PathBuf,
    docker: Docker,
}

impl Lab {
    pub fn new(name: &str) -> Result<Lab, LabError> {
        if !config::is_dns1123_subdomain(name) || name.contains('.') || name.len() > 40 {
            return Err(LabError::Usage(format!(
                "{name:?} is not a lab name: use lowercase letters, digits and '-', at most 40"
            )));
        }
        Ok(Lab {
            name: name.to_owned(),
            dir: state::kinit_home().join("labs").join(name),
            docker: Docker::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The operator's private key for the lab's nodes.
    pub fn identity_file(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    pub fn known_hosts_file(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// The lab's inventory, `cluster.yaml`.
    pub fn inventory_file(&self) -> PathBuf {
        self.dir.join("cluster.yaml")
    }

    /// The sudo password of the `opspw` account on every node.
    pub fn sudo_password_file(&self) -> PathBuf {
        self.dir.join("sudo-password")
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn host_record_file() -> PathBuf {
        state::kinit_home().join("labs").join("host.json")
    }

    fn label(&self) -> String {
        format!("{LABEL}={}", self.name)
    }

    fn network(&self) -> String {
        format!("kinit-{}", self.name)
    }

    fn load_state(&self) -> Result<Option<LabState>, LabError> {
        match fs::read(self.state_file()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| LabError::State(format!("{}: {e}", self.state_file().display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LabError::State(format!(
                "{}: {e}",
                self.state_file().display()
            ))),
        }
    }

    fn save_state(&self, state: &LabState) -> Result<(), LabError> {
        let text = serde_json::to_vec_pretty(state).expect("serialisable");
        kinit_pki::write_atomic(&self.state_file(), &text, 0o644)
            .map_err(|e| LabError::State(e.to_string()))
    }

    /// The nodes of an existing lab.
    pub fn nodes(&self) -> Result<Vec<LabNode>, LabError> {
        Ok(self
            .load_state()?
            .ok_or_else(|| LabError::NoSuchLab(self.name.clone()))?
            .nodes)
    }

    pub fn node(&self, name: &str) -> Result<LabNode, LabError> {
        let nodes = self.nodes()?;
        nodes
            .iter()
            .find(|n| n.name == name)
            .cloned()
            .ok_or_else(|| {
                LabError::Usage(format!(
                    "lab {} has no node {name:?}; its nodes are {}",
                    self.name,
                    nodes
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// Makes sure the machine can run nodes and the node image exists; returns its tag.
    pub fn prepare_node_image() -> Result<String, LabError> {
        host::ensure_packages(&[("debootstrap", "debootstrap")])?;
        let docker = Docker::new();
        let record_path = Lab::host_record_file();
        let mut record = host::HostRecord::load(&record_path)?;
        if host::ensure_docker_daemon(&docker)? {
            record.started_dockerd = true;
        }
        record
            .cgroup_mounts
            .extend(host::mount_cgroup_controllers()?);
        record.save(&record_path)?;
        image::ensure_node_image(&docker, &state::cache_dir())
    }

    /// Creates the lab or brings it to `options.nodes` running nodes. Safe to re-run.
    pub fn up(&self, options: &UpOptions) -> Result<Vec<LabNode>, LabError> {
        if options.nodes == 0
            || options.control_planes == 0
            || options.control_planes > options.nodes
        {
            return Err(LabError::Usage(format!(
                "a lab needs 1 to {} control planes among its {} nodes",
                options.nodes.max(1),
                options.nodes
            )));
        }
        host::ensure_packages(&[
            ("debootstrap", "debootstrap"),
            ("ssh", "openssh-client"),
            ("ssh-keygen", "openssh-client"),
        ])?;
        let record_path = Lab::host_record_file();
        let mut record = host::HostRecord::load(&record_path)?;
        if host::ensure_docker_daemon(&self.docker)? {
            record.started_dockerd = true;
        }
        record
            .cgroup_mounts
            .extend(host::mount_cgroup_controllers()?);
        if record.sysctls.is_empty() {
            // Saved once, before any lab's kubelet changed them; restored by the last `lab down`.
            record.sysctls = host::read_sysctls();
        }
        record.save(&record_path)?;

        let image = image::ensure_node_image(&self.docker, &state::cache_dir())?;
        fs::create_dir_all(&self.dir)
            .map_err(|e| LabError::State(format!("{}: {e}", self.dir.display())))?;
        let (operator_key, node_key) = (
            self.ensure_key("id_ed25519")?,
            self.ensure_key("node_ed25519")?,
        );
        let password = self.ensure_sudo_password()?;

        let mut lab_state = match self.load_state()? {
            Some(state) => state,
            None => LabState {
                subnet: self.free_subnet()?,
                nodes: Vec::new(),
            },
        };
        if options.nodes < lab_state.nodes.len() {
            return Err(LabError::Usage(format!(
                "lab {} has {} nodes; `lab up` only adds nodes: run `kinit lab down --name {}` first to shrink it",
                self.name,
                lab_state.nodes.len(),
                self.name
            )));
        }
        for index in lab_state.nodes.len()..options.nodes {
            let number = index + 1;
            let offset = u32::try_from(10 + number).expect("small");
            let address = Ipv4Addr::from(u32::from(lab_state.subnet.network()) + offset);
            if !lab_state.subnet.contains(&address) || offset >= 250 {
                return Err(LabError::Usage(format!(
                    "{} has no room for {number} nodes",
                    lab_state.subnet
                )));
            }
            lab_state.nodes.push(LabNode {
                name: format!("node{number}"),
                address,
                container: format!("kinit-{}-node{number}", self.name),
            });
        }
        self.save_state(&lab_state)?;
        self.ensure_network(&lab_state.subnet)?;

        let authorized = format!("{}\n{}", operator_key.trim(), node_key.trim());
        for node in &lab_state.nodes {
            self.ensure_container(node, &image, &authorized)?;
        }
        for node in &lab_state.nodes {
            self.wait_running(node, Duration::from_secs(90))?;
        }
        self.distribute_identities(&lab_state.nodes, &password)?;
        self.check_ssh(&lab_state.nodes)?;
        self.write_inventory(&lab_state.nodes, options)?;
        Ok(lab_state.nodes)
    }

    /// Creates an ed25519 key pair `name` in the lab directory unless it exists; returns the
    /// public key line.
    fn ensure_key(&self, name: &str) -> Result<String, LabError> {
        use russh::keys::ssh_key::{LineEnding, PrivateKey, private::Ed25519Keypair};
        let private_path = self.dir.join(name);
        let public_path = private_path.with_extension("pub");
        if private_path.is_file() && public_path.is_file() {
            return fs::read_to_string(&public_path)
                .map_err(|e| LabError::State(format!("{}: {e}", public_path.display())));
        }
        let mut seed = [0u8; 32];
        rand::rng().fill(&mut seed);
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        key.set_comment(format!("kinit-lab-{}", self.name));
        let private = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| LabError::State(format!("encoding a key: {e}")))?;
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| LabError::State(format!("encoding a key: {e}")))?;
        let write = |path: &Path, text: &[u8], mode| {
            kinit_pki::write_atomic(path, text, mode).map_err(|e| LabError::State(e.to_string()))
        };
        write(&private_path, private.as_bytes(), 0o600)?;
        write(&public_path, format!("{public}\n").as_bytes(), 0o644)?;
        Ok(public)
    }

    fn ensure_sudo_password(&self) -> Result<String, LabError> {
        let path = self.sudo_password_file();
        if let Ok(password) = fs::read_to_string(&path) {
            return Ok(password.trim().to_owned());
        }
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
        let mut rng = rand::rng();
        let password: String = (0..20)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        kinit_pki::write_atomic(&path, format!("{password}\n").as_bytes(), 0o600)
            .map_err(|e| LabError::State(e.to_string()))?;
        Ok(password)
    }

    /// The first 172.30.N.0/24 that no docker network uses.
    fn free_subnet(&self) -> Result<Ipv4Net, LabError> {
        let ids = self.docker.run(&["network", "ls", "-q"])?;
        let mut used = String::new();
        for id in ids.lines().filter(|l| !l.is_empty()) {
            used.push_str(&self.docker.run(&[
                "network",
                "inspect",
                "--format",
                "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
                id,
            ])?);
        }
        for n in 0..=255u8 {
            let candidate = Ipv4Net::new(Ipv4Addr::new(172, 30, n, 0), 24).expect("valid prefix");
            let clash = used
                .split_whitespace()
                .filter_map(|s| s.parse::<Ipv4Net>().ok())
                .any(|net| {
                    net.contains(&candidate.network()) || candidate.contains(&net.network())
                });
            if !clash {
                return Ok(candidate);
            }
        }
        Err(LabError::Host(
            "no free 172.30.N.0/24 network for the lab".into(),
        ))
    }

    fn ensure_network(&self, subnet: &Ipv4Net) -> Result<(), LabError> {
        let network = self.network();
        if self.docker.run(&["network", "inspect", &network]).is_ok() {
            return Ok(());
        }
        let subnet = subnet.to_string();
        let label = self.label();
        self.docker
            .run(&[
                "network", "create", "--driver", "bridge", "--subnet", &subnet, "--label", &label,
                &network,
            ])
            .map(drop)
    }

    fn ensure_container(
        &self,
        node: &LabNode,
        image: &str,
        authorized_keys: &str,
    ) -> Result<(), LabError> {
        match self.docker.container_state(&node.container).as_deref() {
            Some("running") => return Ok(()),
            Some(_) => {
                eprintln!("[lab] starting {}", node.name);
                return self.docker.run(&["start", &node.container]).map(drop);
            }
            None => {}
        }
        eprintln!("[lab] creating {} ({})", node.name, node.address);
        let label = self.label();
        let network = self.network();
        let address = node.address.to_string();
        let volume = format!("{}-containerd:/var/lib/containerd", node.container);
        let keys = format!("KINIT_AUTHORIZED_KEYS={authorized_keys}");
        // The settings testbed.md records as working on this kind of machine: no privileged
        // mode (root lacks CAP_SYS_RESOURCE), writable /proc/sys for kube-proxy, a private
        // cgroup namespace, /dev/kmsg for the kubelet, a volume for containerd's snapshots
        // (overlayfs cannot stack on the container's overlay root) and systemd's halt signal.
        let args: Vec<&str> = vec![
            "run",
            "--detach",
            "--name",
            &node.container,
            "--hostname",
            &node.name,
            "--label",
            &label,
            "--network",
            &network,
            "--ip",
            &address,
            "--network-alias",
            &node.name,
            "--cap-add=ALL",
            "--cap-drop=SYS_RESOURCE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--security-opt",
            "systempaths=unconfined",
            "--device-cgroup-rule=a *:* rwm",
            "--device",
            "/dev/kmsg",
            "--cgroupns=private",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--tmpfs",
            "/tmp",
            "--volume",
            &volume,
            "--volume",
            "/lib/modules:/lib/modules:ro",
            "--stop-signal",
            "SIGRTMIN+3",
            "--stop-timeout",
            "20",
            "--env",
            &keys,
            image,
        ];
        // The volume carries the label too, so `lab down` finds it after a crash.
        let volume_name = format!("{}-containerd", node.container);
        self.docker
            .run(&["volume", "create", "--label", &label, &volume_name])?;
        self.docker.run(&args).map(drop)
    }

    /// Waits for `systemctl is-system-running` to say `running`. A `degraded` system is an
    /// error naming its failed units.
    fn wait_running(&self, node: &LabNode, timeout: Duration) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            // The first calls can fail with "Failed to connect to bus" while systemd starts.
            let state = self
                .docker
                .exec(&node.container, &["systemctl", "is-system-running"])
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|e| match e {
                    LabError::Docker(text) => {
                        text.lines().last().unwrap_or_default().trim().to_owned()
                    }
                    other => other.to_string(),
                });
            match state.as_str() {
                "running" => return Ok(()),
                "degraded" => {
                    let failed = self
                        .docker
                        .exec(
                            &node.container,
                            &["systemctl", "--failed", "--no-legend", "--plain"],
                        )
                        .unwrap_or_default();
                    return Err(LabError::Node {
                        node: node.name.clone(),
                        message: format!("systemd is degraded; failed units:\n{}", failed.trim()),
                    });
                }
                _ => last = state,
            }
            if Instant::now() > deadline {
                return Err(LabError::Node {
                    node: node.name.clone(),
                    message: format!(
                        "systemd did not reach `running` within {} s (last: {last}); see `docker logs {}`",
                        timeout.as_secs(),
                        node.container
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Collects host keys into the operator's known_hosts for the lab, and gives every node
    /// the others' host keys, the node key for node-to-node SSH and the sudo password.
    fn distribute_identities(&self, nodes: &[LabNode], password: &str) -> Result<(), LabError> {
        let mut known_hosts = String::new();
        for node in nodes {
            let key = self.docker.exec(
                &node.container,
                &["cat", "/etc/ssh/ssh_host_ed25519_key.pub"],
            )?;
            let key: Vec<&str> = key.split_whitespace().take(2).collect();
            writeln!(
                known_hosts,
                "{},{} {}",
                node.address,
                node.name,
                key.join(" ")
            )
            .expect("string");
        }
        kinit_pki::write_atomic(&self.known_hosts_file(), known_hosts.as_bytes(), 0o644)
            .map_err(|e| LabError::State(e.to_string()))?;
        let node_key = fs::read(self.dir.join("node_ed25519"))
            .map_err(|e| LabError::State(format!("node key: {e}")))?;
        let chpasswd = format!("{SUDO_PASSWORD_USER}:{password}\n");
        for node in nodes {
            let on = |e: LabError| LabError::Node {
                node: node.name.clone(),
                message: e.to_string(),
            };
            self.docker
                .write_file(
                    &node.container,
                    "/etc/ssh/ssh_known_hosts",
                    known_hosts.as_bytes(),
                    "644",
                )
                .map_err(on)?;
            self.docker
                .write_file(&node.container, "/root/.ssh/id_ed25519", &node_key, "600")
                .map_err(on)?;
            // The password goes through standard input, never into an argument.
            self.docker
                .run_with_input(
                    &["exec", "-i", &node.container, "chpasswd"],
                    chpasswd.as_bytes(),
                )
                .map_err(on)?;
        }
        Ok(())
    }

    fn ssh_command(&self, node: &LabNode, user: &str) -> std::process::Command {
        let mut command = std::process::Command::new("ssh");
        command
            .arg("-i")
            .arg(self.identity_file())
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts_file().display()
            ))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("{user}@{}", node.address));
        command
    }

    /// Logs in to every node with the operator's key, verifying host keys.
    fn check_ssh(&self, nodes: &[LabNode]) -> Result<(), LabError> {
        for node in nodes {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let output = self
                    .ssh_command(node, "root")
                    .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "true"])
                    .output()
                    .map_err(|e| LabError::Host(format!("ssh: {e}")))?;
                if output.status.success() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(LabError::Node {
                        node: node.name.clone(),
                        message: format!(
                            "SSH login as root at {} failed: {}",
                            node.address,
                            String::from_utf8_lossy(&output.stderr).trim()
                        ),
                    });
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        Ok(())
    }

    fn write_inventory(&self, nodes: &[LabNode], options: &UpOptions) -> Result<(), LabError> {
        let hosts = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let roles = match (i < options.control_planes, nodes.len()) {
                    (true, 1) => vec![Role::ControlPlane, Role::Worker],
                    (true, _) => vec![Role::ControlPlane],
                    (false, _) => vec![Role::Worker],
                };
                config::Host {
                    name: node.name.parse().expect("lab node names are valid"),
                    address: config::Address(node.address.into()),
                    roles,
                    ssh: config::Ssh::default(),
                    sudo: None,
                }
            })
            .collect();
        let cluster = config::Cluster {
            api_version: config::ApiVersion::V1Alpha1,
            kind: config::Kind::Cluster,
            metadata: config::Metadata {
                name: self.name.parse().map_err(LabError::Usage)?,
            },
            kubernetes_version: options.kubernetes_version,
            ssh: config::Ssh {
                user: Some("root".into()),
                port: Some(22),
                identity_file: Some(self.identity_file()),
                jump: Vec::new(),
                known_hosts_file: Some(self.known_hosts_file()),
            },
            hosts,
            networking: config::Networking::default(),
            control_plane: config::ControlPlane::default(),
            certificates: config::Certificates::default(),
        };
        let text = format!(
            "# Written by `kinit lab up --name {}`: the lab's nodes as a kinit inventory.\n{}",
            self.name,
            crate::yaml::to_string(&cluster).map_err(|e| LabError::State(e.to_string()))?
        );
        let mut targets = vec![self.inventory_file()];
        targets.extend(options.inventory.clone());
        for target in targets {
            kinit_pki::write_atomic(&target, text.as_bytes(), 0o644)
                .map_err(|e| LabError::State(e.to_string()))?;
        }
        Ok(())
    }

    /// Each node's container and systemd state.
    pub fn status(&self) -> Result<Vec<NodeStatus>, LabError> {
        let mut statuses = Vec::new();
        for node in self.nodes()? {
            let container = self
                .docker
                .container_state(&node.container)
                .unwrap_or_else(|| "missing".into());
            let system = (container == "running").then(|| {
                self.docker
                    .exec(&node.container, &["systemctl", "is-system-running"])
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_else(|e| e.to_string().lines().last().unwrap_or_default().to_owned())
            });
            statuses.push(NodeStatus {
                node,
                container,
                system,
            });
        }
        Ok(statuses)
    }

    /// Halts a node cleanly, as a power-off would after a shutdown.
    pub fn stop(&self, node: &str) -> Result<(), LabError> {
        let node = self.node(node)?;
        self.docker.run(&["stop", &node.container]).map(drop)
    }

    /// Boots a stopped node and waits for systemd and sshd.
    pub fn start(&self, node: &str) -> Result<(), LabError> {
        let node = self.node(node)?;
        self.docker.run(&["start", &node.container])?;
        self.wait_running(&node, Duration::from_secs(90))?;
        self.check_ssh(std::slice::from_ref(&node))
    }

    /// The OpenSSH command that logs in to a node as root (for `lab ssh`).
    pub fn ssh(&self, node: &str) -> Result<std::process::Command, LabError> {
        let node = self.node(node)?;
        Ok(self.ssh_command(&node, "root"))
    }

    /// Removes the lab's containers, volumes and network (found by label, so the leftovers of
    /// a crashed run go too) and its directory. The last lab to go restores the machine: the
    /// kernel settings, the cgroup mounts and the docker daemon kinit started.
    pub fn down(&self) -> Result<Vec<String>, LabError> {
        let mut notes = Vec::new();
        if !self.docker.daemon_answers() {
            notes.push("no docker daemon answers: nothing to remove in docker".to_owned());
        } else {
            let label = self.label();
            let containers = self.docker.labelled("container", &label)?;
            if !containers.is_empty() {
                let mut args = vec!["rm", "--force", "--volumes"];
                args.extend(containers.iter().map(String::as_str));
                self.docker.run(&args)?;
            }
            for volume in self.docker.labelled("volume", &label)? {
                self.docker.run(&["volume", "rm", "--force", &volume])?;
            }
            for network in self.docker.labelled("network", &label)? {
                self.docker.run(&["network", "rm", &network])?;
            }
        }
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir)
                .map_err(|e| LabError::State(format!("{}: {e}", self.dir.display())))?;
        }
        if self.other_labs()?.is_empty() {
            notes.extend(self.restore_host()?);
        }
        Ok(notes)
    }

    fn other_labs(&self) -> Result<Vec<String>, LabError> {
        let labs = state::kinit_home().join("labs");
        let mut others = Vec::new();
        if let Ok(entries) = fs::read_dir(&labs) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.path().is_dir() && name != self.name {
                    others.push(name);
                }
            }
        }
        if self.docker.daemon_answers() {
            let all = self.docker.run(&[
                "ps",
                "-a",
                "--filter",
                &format!("label={LABEL}"),
                "--format",
                "{{.Label \"io.kinit.lab\"}}",
            ])?;
            others.extend(
                all.lines()
                    .filter(|l| !l.is_empty() && *l != self.name)
                    .map(str::to_owned),
            );
        }
        others.sort();
        others.dedup();
        Ok(others)
    }

    fn restore_host(&self) -> Result<Vec<String>, LabError> {
        let mut notes = Vec::new();
        let record_path = Lab::host_record_file();
        let record = host::HostRecord::load(&record_path)?;
        let failed = host::restore_sysctls(&record.sysctls);
        if !failed.is_empty() {
            notes.push(format!(
                "could not restore kernel settings {}",
                failed.join(", ")
            ));
        }
        if record.started_dockerd && self.docker.daemon_answers() {
            host::stop_docker_daemon(&self.docker)?;
        }
        let left = host::unmount_cgroup_controllers(&record.cgroup_mounts);
        if !left.is_empty() {
            notes.push(format!(
                "cgroup controllers still in use, left mounted: {}",
                left.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let _ = fs::remove_file(&record_path);
        Ok(notes)
    }
}
