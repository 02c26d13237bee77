//! The engine on real sshd and systemd: authentication, sudo, jump hosts, host keys, failures,
//! resume and idempotency, driven through `kinit play` and checked through its JSON events.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::{TestLab, run, stdout};

/// A playbook exercising most modules, with a handler.
const PLAYBOOK: &str = r#"
- name: engine test
  hosts: all
  vars:
    greeting: hello
  tasks:
    - name: a directory
      directory: { path: /var/lib/kinit-test, mode: "0750" }
    - name: count the runs of this task
      command: { cmd: "echo x >> /var/lib/kinit-test/runs" }
      when: "count_runs | default(value=false)"
    - name: a rendered file
      template: { src: test/greeting.conf, dest: /etc/kinit-test/greeting.conf, mode: "0640" }
      notify: restart the test service
    - name: literal content
      copy: { content: "static\n", dest: /etc/kinit-test/static.txt }
    - name: a guarded command
      command: { cmd: "date > /var/lib/kinit-test/once", creates: /var/lib/kinit-test/once }
    - name: a unit
      copy: { src: kinit-test.service, dest: /etc/systemd/system/kinit-test.service }
      notify: restart the test service
    - name: the unit runs
      systemd: { name: kinit-test, daemon_reload: true, enabled: true, state: started }
    - name: a kernel setting
      sysctl: { name: net.ipv4.ip_local_port_range, value: "32768 60999", file: /etc/sysctl.d/90-kinit-test.conf }
    - name: sshd answers
      wait_for: { tcp: "127.0.0.1:22", timeout: 10 }
    - name: where the connection comes from
      command: { cmd: "echo ${SSH_CLIENT%% *}; id -un" }
      unprivileged: true
      when: "report_client | default(value=false)"
  handlers:
    - name: restart the test service
      systemd: { name: kinit-test, daemon_reload: true, state: restarted }
"#;

const TEMPLATE: &str = "# {{ host.name }} in {{ cluster_name }}\ngreeting={{ greeting }}\naddress={{ host.address }}\n";

const UNIT: &str = "[Unit]\nDescription=kinit engine test\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n";

/// A playbook directory: the playbook, its templates and files.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new(playbook: &str) -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test.yaml"), playbook).unwrap();
        std::fs::create_dir_all(dir.path().join("templates/test")).unwrap();
        std::fs::write(dir.path().join("templates/test/greeting.conf"), TEMPLATE).unwrap();
        std::fs::write(dir.path().join("kinit-test.service"), UNIT).unwrap();
        Workspace { dir }
    }

    fn playbook(&self) -> PathBuf {
        self.dir.path().join("test.yaml")
    }

    fn templates(&self) -> PathBuf {
        self.dir.path().join("templates")
    }
}

/// `kinit play` with JSON events; returns the output and the parsed events.
fn play(
    lab: &TestLab,
    workspace: &Workspace,
    config: &Path,
    extra: &[&str],
) -> (Output, Vec<serde_json::Value>) {
    let output = lab
        .kinit()
        .arg("play")
        .arg(workspace.playbook())
        .arg("-c")
        .arg(config)
        .arg("--templates-dir")
        .arg(workspace.templates())
        .args(["-o", "json"])
        .args(extra)
        .output()
        .unwrap();
    let events = parse_events(&output);
    (output, events)
}

fn parse_events(output: &Output) -> Vec<serde_json::Value> {
    stdout(output)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn summaries(events: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    events
        .iter()
        .filter(|e| e["event"] == "host_summary")
        .collect()
}

fn total(events: &[serde_json::Value], field: &str) -> u64 {
    summaries(events)
        .iter()
        .map(|s| s[field].as_u64().unwrap())
        .sum()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Rewrites the lab's inventory: `edit` gets the text and returns the new one.
fn inventory_variant(lab: &TestLab, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(lab.inventory()).unwrap();
    let path = lab.home.path().join(name);
    std::fs::write(&path, edit(text)).unwrap();
    path
}

#[test]
fn engine_on_real_hosts() {
    let lab = TestLab::new("eng");
    run(lab.kinit().args(["lab", "up", "--nodes", "3"]));
    let workspace = Workspace::new(PLAYBOOK);
    let config = lab.inventory();

    // First run: everything changes, handlers run, nothing fails.
    let (output, events) = play(&lab, &workspace, &config, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(summaries(&events).len(), 3);
    assert_eq!(total(&events, "failed"), 0);
    assert!(total(&events, "changed") >= 3 * 7, "{events:#?}");
    let handlers = events
        .iter()
        .filter(|e| e["event"] == "task_result" && e["handler"] == true)
        .count();
    assert_eq!(
        handlers, 3,
        "the handler runs once per host, though two tasks notified it"
    );
    let greeting = lab.ssh("node2", "cat /etc/kinit-test/greeting.conf; stat -c %a /etc/kinit-test/greeting.conf; systemctl is-active kinit-test");
    assert_eq!(
        stdout(&greeting),
        "# node2 in eng\ngreeting=hello\naddress=172.30.0.12\n640\nactive\n"
    );

    // Second run: nothing changes and nothing restarts.
    let before = stdout(&lab.ssh("node1", "systemctl show -p MainPID --value kinit-test"));
    let (output, events) = play(&lab, &workspace, &config, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(total(&events, "changed"), 0, "{events:#?}");
    assert!(
        !events.iter().any(|e| e["handler"] == true),
        "a handler ran on an unchanged host"
    );
    assert_eq!(
        stdout(&lab.ssh("node1", "systemctl show -p MainPID --value kinit-test")),
        before,
        "the service restarted"
    );

    // A dry run shows a diff for a changed template and changes nothing.
    std::fs::write(
        workspace.templates().join("test/greeting.conf"),
        TEMPLATE.replace("greeting=", "salutation="),
    )
    .unwrap();
    let (output, events) = play(
        &lab,
        &workspace,
        &config,
        &["--dry-run", "--limit", "node1"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let diff = events
        .iter()
        .find_map(|e| e["diff"].as_str())
        .expect("a diff for the changed template");
    assert!(
        diff.contains("-greeting=hello") && diff.contains("+salutation=hello"),
        "{diff}"
    );
    assert!(
        stdout(&lab.ssh("node1", "cat /etc/kinit-test/greeting.conf")).contains("greeting=hello")
    );
    std::fs::write(workspace.templates().join("test/greeting.conf"), TEMPLATE).unwrap();

    sudo(&lab, &workspace);
    jump_host(&lab, &workspace);
    host_keys(&lab, &workspace);
    wrong_key_and_agent(&lab, &workspace);
    failures_name_host_task_code_and_stderr(&lab);
    stopped_mid_play_then_resumed(&lab);
    lab.down();
}

/// Sudo without a password (`ops`) and with one (`opspw`), and the password never shows.
fn sudo(lab: &TestLab, workspace: &Workspace) {
    let ops = inventory_variant(lab, "ops.yaml", |t| t.replace("user: root", "user: ops"));
    let (output, events) = play(lab, workspace, &ops, &["--limit", "node1"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(total(&events, "failed"), 0);

    let password = std::fs::read_to_string(lab.dir().join("sudo-password"))
        .unwrap()
        .trim()
        .to_owned();
    let opspw = inventory_variant(lab, "opspw.yaml", |t| {
        t.replace("user: root", "user: opspw")
    });
    // Without the password: a clear refusal naming the way to give it.
    let (output, _) = play(lab, workspace, &opspw, &["--limit", "node1"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--ask-become-pass"),
        "{}",
        stderr(&output)
    );

    // With it, on standard input, at trace level: every byte of output is searched for it.
    lab.ssh("node1", "rm -rf /var/lib/kinit-test /etc/kinit-test");
    let mut child = lab
        .kinit()
        .arg("play")
        .arg(workspace.playbook())
        .arg("-c")
        .arg(&opspw)
        .arg("--templates-dir")
        .arg(workspace.templates())
        .args([
            "--limit",
            "node1",
            "-o",
            "json",
            "--become-password-stdin",
            "-vv",
        ])
        .env("RUST_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    // While it runs, no process on the node shows the password in its arguments.
    let mut seen_args = String::new();
    for _ in 0..10 {
        seen_args.push_str(&stdout(&lab.ssh("node1", "ps -eo args")));
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let events = parse_events(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(total(&events, "changed") > 0);
    assert_eq!(
        stdout(&lab.ssh("node1", "stat -c %U /etc/kinit-test/greeting.conf")).trim(),
        "root"
    );
    for (what, text) in [
        ("stdout (JSON events)", stdout(&output)),
        ("stderr (logs)", stderr(&output)),
        ("node process list", seen_args),
    ] {
        assert!(
            !text.contains(&password),
            "the sudo password appears in {what}"
        );
    }
    let journal = std::fs::read_to_string(lab.home.path().join(".kinit/eng/journal/test.json"))
        .unwrap_or_default();
    assert!(!journal.contains(&password));
}

/// node3 reached through node1: the connection comes from node1's address.
fn jump_host(lab: &TestLab, workspace: &Workspace) {
    let jumped = inventory_variant(lab, "jump.yaml", |t| {
        t.replace(
            "- name: node3\n  address: 172.30.0.13\n",
            "- name: node3\n  address: 172.30.0.13\n  ssh:\n    jump: [root@172.30.0.11]\n",
        )
    });
    let (output, events) = play(
        lab,
        workspace,
        &jumped,
        &["--limit", "node3", "-e", "report_client=true"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let report = events
        .iter()
        .find(|e| e["task"] == "where the connection comes from" && e["event"] == "task_result")
        .expect("the report task ran");
    assert_eq!(report["message"], "172.30.0.11\nroot", "{report}");
}

/// Unknown host keys are refused with their fingerprint until pinned; changed ones always.
fn host_keys(lab: &TestLab, workspace: &Workspace) {
    let unpinned = inventory_variant(lab, "unpinned.yaml", |t| {
        t.lines()
            .filter(|l| !l.contains("knownHostsFile"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let home = tempfile::tempdir().unwrap();
    let in_home = |command: &mut Command| {
        command
            .env("HOME", home.path())
            .env("KINIT_HOME", home.path().join(".kinit"));
    };
    let play_in = |extra: &[&str]| {
        let mut command = lab.kinit();
        in_home(&mut command);
        command
            .arg("play")
            .arg(workspace.playbook())
            .arg("-c")
            .arg(&unpinned)
            .arg("--templates-dir")
            .arg(workspace.templates())
            .args(["--limit", "node2"])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = play_in(&[]);
    assert!(!refused.status.success());
    let text = stderr(&refused);
    assert!(
        text.contains("is not known")
            && text.contains("SHA256:")
            && text.contains("--accept-new-host-keys"),
        "{text}"
    );
    let pinned = play_in(&["--accept-new-host-keys"]);
    assert!(pinned.status.success(), "{}", stderr(&pinned));
    let known = std::fs::read_to_string(home.path().join(".kinit/known_hosts")).unwrap();
    assert!(known.contains("172.30.0.12 ssh-ed25519 "), "{known}");
    assert!(
        play_in(&[]).status.success(),
        "a pinned key is trusted afterwards"
    );

    // A different key recorded for node2: refused, always.
    let other_key = stdout(&lab.ssh("node1", "cat /etc/ssh/ssh_host_ed25519_key.pub"));
    let fake = other_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(
        home.path().join(".kinit/known_hosts"),
        format!("172.30.0.12 {fake}\n"),
    )
    .unwrap();
    for extra in [&[][..], &["--accept-new-host-keys"]] {
        let changed = play_in(extra);
        assert!(!changed.status.success(), "a changed host key was accepted");
        let text = stderr(&changed);
        assert!(
            text.contains("REFUSED") && text.contains("changed") && text.contains("known_hosts:1"),
            "{text}"
        );
    }
}

/// A key the host does not know gives a clear error; the agent's keys are used when present.
fn wrong_key_and_agent(lab: &TestLab, workspace: &Workspace) {
    let home = tempfile::tempdir().unwrap();
    let stranger = home.path().join("stranger");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger));
    let wrong = inventory_variant(lab, "wrong-key.yaml", |t| {
        let identity = lab.dir().join("id_ed25519").display().to_string();
        t.replace(&identity, &stranger.display().to_string())
    });
    let (output, _) = play(lab, workspace, &wrong, &["--limit", "node1"]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("authentication as root at root@172.30.0.11:22 failed")
            && text.contains("not accepted"),
        "{text}"
    );

    // No key file at all, but an agent holding the lab key.
    let agentless = inventory_variant(lab, "agent.yaml", |t| {
        t.lines()
            .filter(|l| !l.contains("identityFile"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let socket = home.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&socket)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..50 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    run(Command::new("ssh-add")
        .arg(lab.dir().join("id_ed25519"))
        .env("SSH_AUTH_SOCK", &socket));
    let with_agent = lab
        .kinit()
        .env("HOME", home.path())
        .env("SSH_AUTH_SOCK", &socket)
        .arg("play")
        .arg(workspace.playbook())
        .arg("-c")
        .arg(&agentless)
        .arg("--templates-dir")
        .arg(workspace.templates())
        .args(["--limit", "node1"])
        .output()
        .unwrap();
    let without_agent = lab
        .kinit()
        .env("HOME", home.path())
        .env_remove("SSH_AUTH_SOCK")
        .arg("play")
        .arg(workspace.playbook())
        .arg("-c")
        .arg(&agentless)
        .arg("--templates-dir")
        .arg(workspace.templates())
        .args(["--limit", "node1"])
        .output()
        .unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(with_agent.status.success(), "{}", stderr(&with_agent));
    assert!(!without_agent.status.success());
    assert!(
        stderr(&without_agent).contains("no key or password to offer"),
        "{}",
        stderr(&without_agent)
    );
}

fn failures_name_host_task_code_and_stderr(lab: &TestLab) {
    let workspace = Workspace::new(
        "- name: failing
  hosts: node2
  tasks:
    - name: a command that fails
      command: { cmd: \"echo first >&2; echo 'the reason it failed' >&2; exit 7\" }
",
    );
    let (output, events) = play(lab, &workspace, &lab.inventory(), &[]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("host node2")
            && text.contains("task \"a command that fails\"")
            && text.contains("exit code 7")
            && text.contains("the reason it failed"),
        "{text}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["status"] == "failed" && e["host"] == "node2")
    );
}

/// node3 halts in the middle of a play: the run fails naming it and the task; once it is back,
/// `--resume` finishes without repeating the tasks that had completed.
fn stopped_mid_play_then_resumed(lab: &TestLab) {
    let workspace = Workspace::new(
        "- name: long
  hosts: all
  tasks:
    - name: count this task's runs
      command: { cmd: \"mkdir -p /var/lib/kinit-resume && echo x >> /var/lib/kinit-resume/runs\" }
    - name: a slow step
      command: { cmd: \"sleep 4\" }
    - name: the last step
      copy: { content: \"done\\n\", dest: /var/lib/kinit-resume/done }
",
    );
    let child = lab
        .kinit()
        .arg("play")
        .arg(workspace.playbook())
        .arg("-c")
        .arg(lab.inventory())
        .args(["-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    run(lab.kinit().args(["lab", "stop", "node3"]));
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success(), "the run survived a halted host");
    let text = stderr(&output);
    assert!(
        text.contains("host node3") && text.contains("a slow step"),
        "{text}"
    );

    run(lab.kinit().args(["lab", "start", "node3"]));
    let resumed = lab
        .kinit()
        .arg("play")
        .arg(workspace.playbook())
        .arg("-c")
        .arg(lab.inventory())
        .args(["--resume", "-o", "json"])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    for node in ["node1", "node2", "node3"] {
        let state = stdout(&lab.ssh(
            node,
            "cat /var/lib/kinit-resume/runs | wc -l; cat /var/lib/kinit-resume/done",
        ));
        assert_eq!(
            state, "1\ndone\n",
            "{node}: the first task ran again or the last never ran"
        );
    }
}
