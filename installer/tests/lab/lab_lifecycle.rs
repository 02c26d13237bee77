//! `kinit lab up/status/ssh/stop/start/down` on real node containers.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{TestLab, docker, read, run, stdout};

/// What the machine looks like from outside a lab.
#[derive(Debug, PartialEq, Eq)]
struct MachineState {
    mounts: Vec<String>,
    sysctls: Vec<String>,
    dockerd: bool,
}

fn machine_state() -> MachineState {
    let mut mounts: Vec<String> = read("/proc/self/mounts")
        .lines()
        .map(str::to_owned)
        .collect();
    mounts.sort();
    let sysctls = [
        "kernel/panic",
        "kernel/panic_on_oops",
        "vm/overcommit_memory",
    ]
    .iter()
    .map(|k| format!("{k}={}", read(format!("/proc/sys/{k}")).trim()))
    .collect();
    let dockerd = Command::new("pgrep")
        .args(["-x", "dockerd"])
        .output()
        .unwrap()
        .status
        .success();
    MachineState {
        mounts,
        sysctls,
        dockerd,
    }
}

fn assert_nothing_left(lab: &TestLab, before: &MachineState) {
    let label = format!("label=io.kinit.lab={}", lab.name);
    if before.dockerd {
        assert_eq!(
            docker(&["ps", "-a", "-q", "--filter", &label]).trim(),
            "",
            "containers left"
        );
        assert_eq!(
            docker(&["network", "ls", "-q", "--filter", &label]).trim(),
            "",
            "networks left"
        );
        assert_eq!(
            docker(&["volume", "ls", "-q", "--filter", &label]).trim(),
            "",
            "volumes left"
        );
    }
    let after = machine_state();
    // A daemon kinit started is stopped again; one that ran before keeps running.
    assert_eq!(after.dockerd, before.dockerd, "docker daemon state changed");
    assert_eq!(
        after.sysctls, before.sysctls,
        "kernel settings not restored"
    );
    let extra: Vec<&String> = after
        .mounts
        .iter()
        .filter(|m| !before.mounts.contains(m))
        .collect();
    assert!(extra.is_empty(), "mounts left behind: {extra:#?}");
    let stray = Command::new("pgrep")
        .args(["-f", &format!("kinit-{}-node", lab.name)])
        .output()
        .unwrap();
    assert!(
        stdout(&stray).trim().is_empty(),
        "processes left: {}",
        stdout(&stray)
    );
    assert!(!lab.dir().exists(), "lab directory left");
}

fn ssh_works(lab: &TestLab, node: &str, user: &str, address: &str) {
    let output = run(Command::new("ssh")
        .arg("-i")
        .arg(lab.dir().join("id_ed25519"))
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            lab.dir().join("known_hosts").display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg(format!("{user}@{address}"))
        .arg("hostname"));
    assert_eq!(stdout(&output).trim(), node);
}

#[test]
fn three_nodes_up_reachable_resilient_and_gone_without_a_trace() {
    // First, a lab down from a clean slate: the docker daemon may not even run yet.
    let before = machine_state();
    let lab = TestLab::new("t3");
    let started = Instant::now();
    let up = run(lab.kinit().args(["lab", "up", "--nodes", "3"]));
    let first_up = started.elapsed();
    eprintln!("lab up (3 nodes, from scratch or cached image): {first_up:?}");
    assert!(
        first_up <= Duration::from_secs(180),
        "lab up took {first_up:?}"
    );
    assert!(
        stdout(&up).contains(&lab.inventory().display().to_string()),
        "{}",
        stdout(&up)
    );

    let nodes = [
        ("node1", "172.30.0.11"),
        ("node2", "172.30.0.12"),
        ("node3", "172.30.0.13"),
    ];
    let mut addresses = Vec::new();
    for (node, _) in nodes {
        let container = format!("kinit-t3-{node}");
        let state = docker(&["exec", &container, "systemctl", "is-system-running"]);
        assert_eq!(state.trim(), "running", "{node}");
        let address = docker(&[
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &container,
        ]);
        addresses.push(address.trim().to_owned());
    }
    // The inventory names each node with its address, and kinit accepts it.
    let inventory = read(lab.inventory());
    for ((node, _), address) in nodes.iter().zip(&addresses) {
        assert!(
            inventory.contains(&format!("name: {node}\n  address: {address}")),
            "{inventory}"
        );
    }
    run(lab
        .kinit()
        .args(["config", "validate", "-c"])
        .arg(lab.inventory()));

    // SSH from the operator, host keys verified, as root and as both sudo users.
    for ((node, _), address) in nodes.iter().zip(&addresses) {
        ssh_works(&lab, node, "root", address);
    }
    ssh_works(&lab, "node2", "ops", &addresses[1]);
    let password = read(lab.dir().join("sudo-password"));
    let sudo = lab.ssh("node1", "su - opspw -c 'sudo -n true' 2>&1; echo exit=$?");
    assert!(
        stdout(&sudo).contains("a password is required"),
        "opspw must need a password: {}",
        stdout(&sudo)
    );
    let sudo = Command::new("ssh")
        .arg("-i")
        .arg(lab.dir().join("id_ed25519"))
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            lab.dir().join("known_hosts").display()
        ))
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .arg(format!("opspw@{}", addresses[0]))
        .arg("sudo -S -p '' id -u")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    sudo.stdin
        .as_ref()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let out = sudo.wait_with_output().unwrap();
    assert_eq!(stdout(&out).trim(), "0", "sudo with the lab's password");

    // SSH between nodes, by name and by address.
    let hop = lab.ssh(
        "node1",
        &format!(
            "ssh -o BatchMode=yes node2 hostname && ssh -o BatchMode=yes {} hostname",
            addresses[2]
        ),
    );
    assert_eq!(
        stdout(&hop).trim(),
        "node2\nnode3",
        "{}",
        String::from_utf8_lossy(&hop.stderr)
    );

    // Re-running `lab up` changes nothing and is quick.
    let again = Instant::now();
    run(lab.kinit().args(["lab", "up", "--nodes", "3"]));
    assert!(
        again.elapsed() < Duration::from_secs(20),
        "re-run took {:?}",
        again.elapsed()
    );

    // A clean halt and a boot.
    let halt = Instant::now();
    run(lab.kinit().args(["lab", "stop", "node3"]));
    assert!(
        halt.elapsed() < Duration::from_secs(20),
        "halt took {:?}",
        halt.elapsed()
    );
    assert_eq!(
        docker(&["inspect", "--format", "{{.State.Status}}", "kinit-t3-node3"]).trim(),
        "exited"
    );
    let status = stdout(&run(lab.kinit().args(["lab", "status"])));
    assert!(
        status.contains("node3    172.30.0.13     exited") || status.contains("exited"),
        "{status}"
    );
    run(lab.kinit().args(["lab", "start", "node3"]));
    ssh_works(&lab, "node3", "root", &addresses[2]);

    lab.down();
    assert_nothing_left(&lab, &before);

    // With the node image cached, a new lab is up within 20 seconds.
    let before = machine_state();
    let cached = TestLab::new("t3b");
    let started = Instant::now();
    run(cached.kinit().args(["lab", "up", "--nodes", "3"]));
    let cached_up = started.elapsed();
    eprintln!("lab up (3 nodes, cached image): {cached_up:?}");
    assert!(
        cached_up <= Duration::from_secs(20),
        "lab up with a cached image took {cached_up:?}"
    );
    cached.down();
    assert_nothing_left(&cached, &before);
}

#[test]
fn down_cleans_the_leftovers_of_a_crashed_run() {
    let before = machine_state();
    let lab = TestLab::new("crash");
    run(lab.kinit().args(["lab", "up", "--nodes", "1"]));
    // The run "crashes": its directory is lost while its containers keep running.
    std::fs::remove_dir_all(lab.dir()).unwrap();
    lab.down();
    assert_nothing_left(&lab, &before);
}
