//! `vagrant/Vagrantfile`: `vagrant validate` for its three providers, and a two-node cluster on
//! the docker provider made of the lab's node containers, reachable over SSH with verified
//! host keys, described by a valid inventory, and gone without a trace after `vagrant destroy`
//! and `kinit lab down --name vagrant`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::support::{TestLab, kinit, read, run, stdout};

/// Every docker object of the Vagrant cluster carries it (`kinit lab down --name vagrant`).
const LABEL: &str = "label=io.kinit.lab=vagrant";
const NODES: [(&str, &str); 2] = [("node1", "172.31.56.11"), ("node2", "172.31.56.12")];

fn vagrantfile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vagrant/Vagrantfile")
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| stdout(&o) == "install ok installed")
}

/// Debian's vagrant, and vagrant-libvirt for validating the libvirt provider.
fn ensure_vagrant() {
    let missing: Vec<&str> = ["vagrant", "vagrant-libvirt"]
        .into_iter()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return;
    }
    let install = || {
        let mut command = Command::new("apt-get");
        command
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    if !install().output().unwrap().status.success() {
        // Package lists may be stale or absent on a fresh machine.
        run(Command::new("apt-get").args(["update", "-qq"]));
        run(&mut install());
    }
}

/// `docker ARGS`, which must succeed: a daemon that does not answer is no proof of absence.
fn docker_checked(args: &[&str]) -> String {
    stdout(&run(Command::new("docker").args(args)))
}

fn docker_answers() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn leftovers() -> Vec<String> {
    let mut left = Vec::new();
    for (kind, args) in [
        ("container", &["ps", "-a", "-q", "--filter", LABEL][..]),
        ("network", &["network", "ls", "-q", "--filter", LABEL][..]),
        ("volume", &["volume", "ls", "-q", "--filter", LABEL][..]),
    ] {
        left.extend(
            docker_checked(args)
                .lines()
                .filter(|l| !l.is_empty())
                .map(|id| format!("{kind} {id}")),
        );
    }
    left
}

/// A copy of the Vagrantfile in a directory of its own (so the test never touches the state of
/// a cluster made from `vagrant/`), with its own kinit and Vagrant homes. Dropping it destroys
/// the machines and runs `kinit lab down --name vagrant`.
struct VagrantCluster {
    dir: tempfile::TempDir,
    torn_down: bool,
}

impl VagrantCluster {
    fn new() -> VagrantCluster {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("project")).unwrap();
        fs::copy(vagrantfile(), root.join("project/Vagrantfile")).unwrap();
        fs::create_dir(root.join("kinit-home")).unwrap();
        fs::create_dir(root.join("vagrant-home")).unwrap();
        // kinit for the Vagrantfile: the real one, except `kinit init` (not written yet), which
        // records its call and the known_hosts it would trust.
        let wrapper = format!(
            "#!/bin/sh\n\
             if [ \"$1\" = init ]; then\n\
             \x20 printf '%s\\n' \"$*\" >> '{log}'\n\
             \x20 cp \"$(dirname \"$3\")/known_hosts\" '{known}'\n\
             \x20 exit 0\n\
             fi\n\
             exec '{kinit}' \"$@\"\n",
            log = root.join("init.log").display(),
            known = root.join("init-known_hosts").display(),
            kinit = env!("CARGO_BIN_EXE_kinit"),
        );
        write_executable(&root.join("kinit"), &wrapper);
        VagrantCluster {
            dir,
            torn_down: false,
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn project(&self) -> PathBuf {
        self.root().join("project")
    }

    fn inventory(&self) -> PathBuf {
        self.project().join(".kinit/cluster.yaml")
    }

    fn known_hosts(&self) -> PathBuf {
        self.project().join(".kinit/known_hosts")
    }

    fn identity(&self) -> PathBuf {
        self.project().join(".vagrant/kinit_ed25519")
    }

    fn vagrant(&self, args: &[&str]) -> Command {
        let mut command = Command::new("vagrant");
        command
            .args(args)
            .current_dir(self.project())
            .env("VAGRANT_HOME", self.root().join("vagrant-home"))
            // No version check against HashiCorp's servers.
            .env("VAGRANT_CHECKPOINT_DISABLE", "1")
            .env("KINIT_HOME", self.root().join("kinit-home"))
            .env("KINIT", self.root().join("kinit"))
            .env("KINIT_NODES", NODES.len().to_string())
            .env("KINIT_CONTROL_PLANES", "1");
        for inherited in [
            "VAGRANT_DEFAULT_PROVIDER",
            "VAGRANT_CWD",
            "VAGRANT_VAGRANTFILE",
            "VAGRANT_DOTFILE_PATH",
            "KINIT_AUTO_INIT",
            "KINIT_VM_NETWORK",
            "KINIT_DOCKER_NETWORK",
            "KINIT_KUBERNETES_VERSION",
        ] {
            command.env_remove(inherited);
        }
        command
    }

    fn kinit(&self) -> Command {
        let mut command = kinit();
        command.env("KINIT_HOME", self.root().join("kinit-home"));
        command
    }

    fn validate(&self, provider: &str, path: Option<String>) {
        let mut command = self.vagrant(&["validate"]);
        command.env("VAGRANT_DEFAULT_PROVIDER", provider);
        if let Some(path) = path {
            command.env("PATH", path);
        }
        let started = Instant::now();
        let output = run(&mut command);
        eprintln!(
            "vagrant validate ({provider}): {:?}: {}",
            started.elapsed(),
            stdout(&output).trim()
        );
        assert!(
            stdout(&output).contains("Vagrantfile validated successfully."),
            "{provider}: {}",
            stdout(&output)
        );
    }

    /// Logs in to a node as root at its own address with the generated key, trusting only
    /// the collected known_hosts.
    fn ssh(&self, address: &str, known_hosts: &Path) -> Command {
        let mut command = Command::new("ssh");
        command
            .args(["-F", "/dev/null", "-i"])
            .arg(self.identity())
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=10",
            ])
            .arg(format!("root@{address}"))
            .arg("hostname");
        command
    }

    fn tear_down(&mut self) {
        self.torn_down = true;
        run(&mut self.vagrant(&["destroy", "-f"]));
        // The Vagrantfile's destroy triggers remove the volumes and the network themselves.
        let left = leftovers();
        assert!(left.is_empty(), "left by `vagrant destroy`: {left:?}");
        assert_eq!(read(self.known_hosts()), "", "destroyed nodes stay trusted");

        run(self.kinit().args(["lab", "down", "--name", "vagrant"]));
        // The docker daemon that `kinit lab image` started for this test is stopped again; if
        // one still answers, it holds nothing of the cluster.
        if docker_answers() {
            let left = leftovers();
            assert!(left.is_empty(), "left after `kinit lab down`: {left:?}");
        }
    }
}

impl Drop for VagrantCluster {
    fn drop(&mut self) {
        if !self.torn_down {
            let _ = self.vagrant(&["destroy", "-f"]).output();
            let _ = self
                .kinit()
                .args(["lab", "down", "--name", "vagrant"])
                .output();
        }
    }
}

fn write_executable(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A container's docker settings, as `docker inspect` reports them.
fn inspect(container: &str) -> serde_json::Value {
    let text = docker_checked(&["inspect", "--type", "container", container]);
    let mut all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    all.remove(0)
}

/// The Vagrant node's container has exactly the settings of a `kinit lab up` node, apart from
/// its names and the loopback port Vagrant's docker provider publishes.
fn assert_same_settings_as_the_lab() {
    let reference = TestLab::new("vagrant-ref");
    run(reference.kinit().args(["lab", "up", "--nodes", "1"]));
    let lab = inspect("kinit-vagrant-ref-node1");
    let node = inspect("kinit-vagrant-node1");
    reference.down();

    let mut lab_host = lab["HostConfig"].clone();
    let mut node_host = node["HostConfig"].clone();
    assert_eq!(
        node_host["NetworkMode"], "kinit-vagrant",
        "the node's only network"
    );
    let published = node_host["PortBindings"]["22/tcp"].clone();
    assert_eq!(
        published[0]["HostIp"], "127.0.0.1",
        "SSH published on loopback only: {published}"
    );
    for key in ["NetworkMode", "PortBindings"] {
        lab_host.as_object_mut().unwrap().remove(key);
        node_host.as_object_mut().unwrap().remove(key);
    }
    // docker lists binds in no particular order.
    let binds = |host: &serde_json::Value| {
        let mut binds: Vec<String> = host["Binds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                b.as_str()
                    .unwrap()
                    .replace("kinit-vagrant-ref-", "kinit-vagrant-")
            })
            .collect();
        binds.sort();
        binds
    };
    assert_eq!(binds(&node_host), binds(&lab_host));
    lab_host["Binds"] = node_host["Binds"].clone();
    assert_eq!(
        node_host, lab_host,
        "docker HostConfig of kinit-vagrant-node1 (left) and of a lab node (right)"
    );
    assert_eq!(node_host["Privileged"], false);

    for key in [
        "Hostname",
        "Image",
        "Entrypoint",
        "Cmd",
        "StopSignal",
        "StopTimeout",
    ] {
        assert_eq!(node["Config"][key], lab["Config"][key], "Config.{key}");
    }
    assert_eq!(node["Config"]["Labels"]["io.kinit.lab"], "vagrant");
    let networks = node["NetworkSettings"]["Networks"].as_object().unwrap();
    assert_eq!(
        networks.keys().collect::<Vec<_>>(),
        ["kinit-vagrant"],
        "{networks:?}"
    );
    assert_eq!(networks["kinit-vagrant"]["IPAddress"], NODES[0].1);
}

#[test]
fn vagrant_validates_all_providers_and_brings_up_docker_nodes_reachable_over_ssh() {
    let started = Instant::now();
    ensure_vagrant();
    eprintln!("vagrant installed: {:?}", started.elapsed());
    if docker_answers() {
        let left = leftovers();
        assert!(
            left.is_empty(),
            "a Vagrant cluster (label io.kinit.lab=vagrant) already exists: {left:?}; \
             run `vagrant destroy -f` in vagrant/ and `kinit lab down --name vagrant` first"
        );
    }
    let mut cluster = VagrantCluster::new();

    // Validation covers each provider: `vagrant validate` validates the configuration of the
    // default provider only, so VAGRANT_DEFAULT_PROVIDER selects each in turn. (`--ignore-
    // provider` would skip the provider's own configuration checks, which do catch mistakes
    // such as misspelt settings.)
    // libvirt: vagrant-libvirt's provider and configuration checks need no libvirt daemon.
    cluster.validate("libvirt", None);
    // VirtualBox cannot be installed here (it is not in Debian, and needs its kernel modules).
    // Vagrant's VirtualBox provider only asks `VBoxManage --version` to load and validate, so
    // a stand-in answering that, and failing everything else, lets the real provider class and
    // its configuration checks run; creating VMs is not possible and not attempted.
    let stub = cluster.root().join("fake-virtualbox");
    fs::create_dir(&stub).unwrap();
    write_executable(
        &stub.join("VBoxManage"),
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 7.0.20r163906; exit 0; }\n\
         echo \"VBoxManage stand-in: $* is not supported\" >&2; exit 1\n",
    );
    let path = format!(
        "{}:{}",
        stub.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cluster.validate("virtualbox", Some(path));
    // docker: the Vagrantfile runs `kinit lab image` (docker daemon, node image) first.
    cluster.validate("docker", None);
    // Bad settings are reported before anything is made.
    let bad = cluster
        .vagrant(&["validate"])
        .env("KINIT_CONTROL_PLANES", "3")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("KINIT_CONTROL_PLANES=3: give 1 to 2 (KINIT_NODES) control planes"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let up_started = Instant::now();
    run(cluster
        .vagrant(&["up", "--provider=docker"])
        .env("KINIT_AUTO_INIT", "1"));
    eprintln!(
        "vagrant up --provider=docker (2 nodes): {:?}",
        up_started.elapsed()
    );

    // The inventory: kinit accepts it, and it names the nodes at their fixed addresses, the
    // generated key and the collected host keys.
    run(cluster
        .kinit()
        .args(["config", "validate", "-c"])
        .arg(cluster.inventory()));
    let inventory = read(cluster.inventory());
    for ((node, address), role) in NODES.iter().zip(["control-plane", "worker"]) {
        assert!(
            inventory.contains(&format!(
                "- name: {node}\n    address: {address}\n    roles: [{role}]\n"
            )),
            "{inventory}"
        );
    }
    assert!(
        inventory.contains(&format!("identityFile: {}\n", cluster.identity().display())),
        "{inventory}"
    );
    assert!(
        inventory.contains(&format!(
            "knownHostsFile: {}\n",
            cluster.known_hosts().display()
        )),
        "{inventory}"
    );
    let known_hosts = read(cluster.known_hosts());
    let hosts: Vec<&str> = known_hosts
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(hosts, ["172.31.56.11,node1", "172.31.56.12,node2"]);

    // SSH from the machine to each node's own address, host keys verified against the
    // collected known_hosts alone.
    for (node, address) in NODES {
        let output = run(&mut cluster.ssh(address, &cluster.known_hosts()));
        assert_eq!(stdout(&output).trim(), node);
    }
    // Without the collected keys the same login is refused: the check above is a real one.
    let empty = cluster.root().join("empty_known_hosts");
    fs::write(&empty, "").unwrap();
    let refused = cluster.ssh(NODES[0].1, &empty).output().unwrap();
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("Host key verification failed"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // KINIT_AUTO_INIT=1: `kinit init` ran once, after both nodes were up.
    assert_eq!(
        read(cluster.root().join("init.log")),
        format!("init -c {}\n", cluster.inventory().display())
    );
    assert_eq!(read(cluster.root().join("init-known_hosts")), known_hosts);

    assert_same_settings_as_the_lab();

    let down = Instant::now();
    cluster.tear_down();
    eprintln!(
        "vagrant destroy and kinit lab down: {:?}; whole test: {:?}",
        down.elapsed(),
        started.elapsed()
    );
}
