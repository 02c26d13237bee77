//! What the machine under the lab needs, and what the lab must give back: Debian packages,
//! a docker daemon (started by kinit when none answers), every enabled cgroup v1 controller
//! mounted before the first node starts, and the kernel settings the nodes' kubelets change.
//!
//! The record of what kinit changed (`host.json` beside the labs) survives crashes, so the
//! last `lab down` restores the machine even after a run that died half-way.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::LabError;
use super::docker::Docker;

pub const DOCKERD_LOG: &str = "/var/log/kinit/dockerd.log";

/// Kernel settings a kubelet sets on start; they are not namespaced, so nodes change the
/// machine's own (kernel.panic 1→10, kernel.panic_on_oops 0→1, vm.overcommit_memory 0→1).
const KUBELET_SYSCTLS: [&str; 3] = [
    "kernel/panic",
    "kernel/panic_on_oops",
    "vm/overcommit_memory",
];

/// What kinit changed on the machine, to undo when the last lab goes.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Original values of the kubelet's kernel settings.
    pub sysctls: BTreeMap<String, String>,
    /// cgroup controllers kinit mounted.
    pub cgroup_mounts: Vec<PathBuf>,
    /// True when kinit started the docker daemon.
    pub started_dockerd: bool,
}

impl HostRecord {
    pub fn load(path: &Path) -> Result<HostRecord, LabError> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| LabError::State(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HostRecord::default()),
            Err(e) => Err(LabError::State(format!("{}: {e}", path.display()))),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), LabError> {
        let text = serde_json::to_vec_pretty(self).expect("serialisable");
        kinit_pki::write_atomic(path, &text, 0o644).map_err(|e| LabError::State(e.to_string()))
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
        .unwrap_or(false)
}

/// Installs the Debian packages providing the programs (names on PATH, or absolute paths)
/// that are missing.
pub fn ensure_packages(wanted: &[(&str, &str)]) -> Result<(), LabError> {
    let present = |program: &str| {
        if program.starts_with('/') {
            Path::new(program).is_file()
        } else {
            on_path(program) || Path::new("/usr/sbin").join(program).is_file()
        }
    };
    let mut missing: Vec<&str> = wanted
        .iter()
        .filter(|(program, _)| !present(program))
        .map(|(_, package)| *package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        return Err(LabError::Host(format!(
            "the lab needs Debian packages {}; install them (apt-get install {}) or run kinit as root",
            missing.join(", "),
            missing.join(" ")
        )));
    }
    eprintln!("[lab] installing {}", missing.join(", "));
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .map_err(|e| LabError::Host(format!("apt-get: {e}")))?;
    if !status.success() {
        return Err(LabError::Host(format!(
            "apt-get install {} failed; run `apt-get update` and try again",
            missing.join(" ")
        )));
    }
    Ok(())
}

/// Starts dockerd when no daemon answers. Returns true when kinit started it.
pub fn ensure_docker_daemon(docker: &Docker) -> Result<bool, LabError> {
    if docker.daemon_answers() {
        return Ok(false);
    }
    ensure_packages(&[("dockerd", "docker.io")])?;
    fs::create_dir_all("/var/log/kinit")
        .map_err(|e| LabError::Host(format!("/var/log/kinit: {e}")))?;
    let log =
        fs::File::create(DOCKERD_LOG).map_err(|e| LabError::Host(format!("{DOCKERD_LOG}: {e}")))?;
    let log_err = log.try_clone().map_err(|e| LabError::Host(e.to_string()))?;
    eprintln!("[lab] starting the docker daemon (log: {DOCKERD_LOG})");
    // setsid: the daemon must outlive this command and its terminal.
    Command::new("setsid")
        .arg("dockerd")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| LabError::Host(format!("starting dockerd: {e}")))?;
    docker.wait_for_daemon(Duration::from_secs(30))?;
    Ok(true)
}

/// Stops the docker daemon kinit started, once nothing else runs in it.
pub fn stop_docker_daemon(docker: &Docker) -> Result<(), LabError> {
    let remaining = docker.run(&["ps", "-q"]).unwrap_or_default();
    if !remaining.trim().is_empty() {
        eprintln!("[lab] leaving the docker daemon running: other containers use it");
        return Ok(());
    }
    let Ok(pid) = fs::read_to_string("/var/run/docker.pid") else {
        return Ok(());
    };
    let pid = pid.trim();
    let _ = Command::new("kill").arg(pid).status();
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(LabError::Host(format!(
        "the docker daemon (pid {pid}) did not stop within 10 s"
    )))
}

/// Mounts every enabled cgroup v1 controller that is not mounted yet. Otherwise systemd in
/// each node mounts the missing hierarchies at the shared root, and the nodes' kubelets delete
/// each other's pod cgroups. Returns the mount points created.
pub fn mount_cgroup_controllers() -> Result<Vec<PathBuf>, LabError> {
    let controllers = fs::read_to_string("/proc/cgroups")
        .map_err(|e| LabError::Host(format!("/proc/cgroups: {e}")))?;
    let mounts = fs::read_to_string("/proc/self/mounts")
        .map_err(|e| LabError::Host(format!("/proc/self/mounts: {e}")))?;
    let cgroup2_only = !mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("cgroup"));
    if cgroup2_only {
        return Ok(Vec::new());
    }
    let mounted: Vec<&str> = mounts
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("cgroup"))
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    let mut created = Vec::new();
    for line in controllers.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, hierarchy, _, enabled] = fields.as_slice() else {
            continue;
        };
        let already = mounted
            .iter()
            .any(|options| options.split(',').any(|o| o == *name));
        if *enabled != "1" || *hierarchy != "0" || already {
            continue;
        }
        let target = PathBuf::from("/sys/fs/cgroup").join(name);
        fs::create_dir_all(&target)
            .map_err(|e| LabError::Host(format!("{}: {e}", target.display())))?;
        let status = Command::new("mount")
            .args(["-t", "cgroup", "-o", name, "cgroup"])
            .arg(&target)
            .status()
            .map_err(|e| LabError::Host(format!("mount: {e}")))?;
        if !status.success() {
            return Err(LabError::Host(format!(
                "could not mount the {name} cgroup controller at {}; the lab's kubelets would fight over it",
                target.display()
            )));
        }
        created.push(target);
    }
    Ok(created)
}

/// Unmounts the controllers kinit mounted; a busy one is left and reported.
pub fn unmount_cgroup_controllers(mounts: &[PathBuf]) -> Vec<PathBuf> {
    let mut left = Vec::new();
    for target in mounts {
        let ok = Command::new("umount")
            .arg(target)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            let _ = fs::remove_dir(target);
        } else {
            left.push(target.clone());
        }
    }
    left
}

pub fn read_sysctls() -> BTreeMap<String, String> {
    KUBELET_SYSCTLS
        .iter()
        .filter_map(|key| {
            let value = fs::read_to_string(Path::new("/proc/sys").join(key)).ok()?;
            Some((key.replace('/', "."), value.trim().to_owned()))
        })
        .collect()
}

/// Writes saved kernel settings back; returns those that could not be restored.
pub fn restore_sysctls(saved: &BTreeMap<String, String>) -> Vec<String> {
    let mut failed = Vec::new();
    for (key, value) in saved {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        if fs::write(&path, value).is_err() {
            failed.push(key.clone());
        }
    }
    failed
}
