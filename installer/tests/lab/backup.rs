//! etcd backups on a lab cluster of three control planes (three etcd members): take one,
//! lose data, refuse a damaged or foreign backup without touching the cluster, restore, and
//! find every object and key back with a healthy three-member etcd. Also retention and the
//! operation lock, and a control plane leaving the cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::{
    admin_kubeconfig, assert_host_clean, assert_success, init, kubectl_ok, text, wait_ready,
};
use crate::support::{TestLab, eventually, run, stdout};

const ETCDCTL: &str = "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 \
    --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt \
    --key=/etc/kubernetes/pki/etcd/healthcheck-client.key";

fn etcdctl(lab: &TestLab, node: &str, args: &str) -> String {
    let output = lab.ssh(node, &format!("{ETCDCTL} {args}"));
    assert!(output.status.success(), "etcdctl {args}: {}", text(&output));
    // etcdctl reports health on standard error.
    text(&output)
}

fn backup(lab: &TestLab, config: &Path, args: &[&str]) -> std::process::Output {
    lab.kinit()
        .arg("backup")
        .args(args)
        .arg("-c")
        .arg(config)
        .output()
        .unwrap()
}

fn flip_byte(file: &Path, at: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn backups_and_node_removal_on_three_control_planes() {
    let lab = TestLab::new("bak");
    run(lab
        .kinit()
        .args(["lab", "up", "--nodes", "3", "--control-planes", "3"]));
    let config = lab.inventory();
    assert_success("kinit init", &init(&lab, &config, &[]));
    let admin = admin_kubeconfig(&lab, &config);
    wait_ready(&admin, 3);

    // What the backup must bring back: a namespace with objects, and keys outside Kubernetes.
    kubectl_ok(&admin, &["create", "namespace", "keep"]).unwrap();
    for i in 0..3 {
        kubectl_ok(
            &admin,
            &[
                "-n",
                "keep",
                "create",
                "configmap",
                &format!("c{i}"),
                &format!("--from-literal=i={i}"),
            ],
        )
        .unwrap();
    }
    etcdctl(&lab, "node1", "put /kinit-test/one first");
    etcdctl(&lab, "node1", "put /kinit-test/two second");

    let created = backup(&lab, &config, &["create", "-o", "json", "--keep-on-node"]);
    assert_success("kinit backup create", &created);
    let info: serde_json::Value = serde_json::from_str(stdout(&created).trim()).unwrap();
    let name = info["name"].as_str().unwrap().to_owned();
    assert!(info["revision"].as_i64().unwrap() > 0, "{info}");
    let sha256 = info["sha256"].as_str().unwrap();
    assert_eq!(sha256.len(), 64);
    // The member's copy is the same file.
    let node_copy = info["nodeCopy"].as_str().unwrap();
    let on_node = lab.ssh(
        info["member"].as_str().unwrap(),
        &format!("sha256sum {node_copy}"),
    );
    assert!(
        text(&on_node).starts_with(sha256),
        "{node_copy} on the member: {}",
        text(&on_node)
    );
    let dir: PathBuf = config
        .parent()
        .unwrap()
        .join(".kinit/bak/backups")
        .join(&name);
    for (file, mode) in [
        ("etcd.db", 0o600),
        ("pki.tar", 0o600),
        ("backup.json", 0o600),
    ] {
        let meta = std::fs::metadata(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            mode,
            "{file}"
        );
    }
    assert_eq!(
        std::fs::metadata(dir.join("etcd.db")).unwrap().len(),
        info["size"].as_u64().unwrap()
    );
    let listed = stdout(&backup(&lab, &config, &["list"]));
    assert!(listed.contains(&name), "{listed}");
    assert_success(
        "kinit backup verify",
        &backup(&lab, &config, &["verify", &name]),
    );

    // The loss.
    kubectl_ok(&admin, &["delete", "namespace", "keep", "--wait=true"]).unwrap();
    etcdctl(&lab, "node2", "del /kinit-test/one");
    etcdctl(
        &lab,
        "node2",
        "put /kinit-test/later written-after-the-backup",
    );

    // A snapshot with one flipped byte is refused before anything changes.
    let db = dir.join("etcd.db");
    flip_byte(&db, 4096);
    let refused = backup(&lab, &config, &["restore", &name, "--yes"]);
    assert!(!refused.status.success(), "a damaged snapshot was restored");
    let message = text(&refused);
    assert!(
        message.contains(&format!("backup {name}: etcd.db's sha256")),
        "{message}"
    );
    assert!(
        !backup(&lab, &config, &["verify", &name]).status.success(),
        "verify accepts a damaged snapshot"
    );
    for node in ["node1", "node2", "node3"] {
        let active = stdout(&lab.ssh(node, "systemctl is-active etcd kube-apiserver"));
        assert_eq!(active.trim(), "active\nactive", "{node} was touched");
    }
    flip_byte(&db, 4096);
    // A backup of another cluster is refused too.
    let record = dir.join("backup.json");
    let original = std::fs::read_to_string(&record).unwrap();
    std::fs::write(
        &record,
        original.replace("\"cluster\": \"bak\"", "\"cluster\": \"other\""),
    )
    .unwrap();
    let foreign = backup(&lab, &config, &["restore", &name, "--yes"]);
    assert!(
        text(&foreign).contains("it is a backup of cluster other, not of bak"),
        "{}",
        text(&foreign)
    );
    std::fs::write(&record, original).unwrap();
    // Restore asks for confirmation and cannot get one without a terminal.
    assert!(
        !backup(&lab, &config, &["restore", "--latest"])
            .status
            .success()
    );

    let restored = lab
        .kinit()
        .args(["backup", "restore", "--latest", "--yes", "-o", "json", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert_success("kinit backup restore", &restored);

    // Everything is back, and only what the backup held.
    let keys = etcdctl(&lab, "node3", "get --prefix /kinit-test/");
    assert_eq!(
        keys.trim(),
        "/kinit-test/one\nfirst\n/kinit-test/two\nsecond",
        "{keys}"
    );
    let maps = eventually(
        "the namespace's objects back",
        Duration::from_secs(60),
        || kubectl_ok(&admin, &["-n", "keep", "get", "configmaps", "-o", "name"]),
    );
    for i in 0..3 {
        assert!(maps.contains(&format!("configmap/c{i}")), "{maps}");
    }
    let members = etcdctl(&lab, "node1", "member list");
    assert_eq!(
        members
            .lines()
            .filter(|l| l.contains(", started, "))
            .count(),
        3,
        "{members}"
    );
    let health = etcdctl(&lab, "node1", "endpoint health --cluster");
    assert_eq!(
        health.lines().filter(|l| l.contains("is healthy")).count(),
        3,
        "{health}"
    );
    wait_ready(&admin, 3);
    for node in ["node1", "node2", "node3"] {
        let aside = stdout(&lab.ssh(node, "ls -d /var/lib/etcd.before-* | wc -l"));
        assert_eq!(aside.trim(), "1", "{node}: the old data is kept aside");
    }

    // Retention: a second backup, then keep the newest only.
    std::thread::sleep(Duration::from_secs(1));
    // This one encrypted at rest: nothing of etcd's content readable, verified only with
    // its key.
    let key = lab.dir().join("backup.key");
    run(lab.kinit().args(["backup", "keygen"]).arg(&key));
    let key_arg = format!("--encryption-key-file={}", key.display());
    let second = backup(&lab, &config, &["create", "-o", "json", &key_arg]);
    assert_success("encrypted backup", &second);
    let second: serde_json::Value = serde_json::from_str(stdout(&second).trim()).unwrap();
    assert_eq!(second["encrypted"], true);
    let sealed_dir = dir.with_file_name(second["name"].as_str().unwrap());
    let names: Vec<String> = std::fs::read_dir(&sealed_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"etcd.db.enc".to_owned()) && !names.contains(&"etcd.db".to_owned()),
        "{names:?}"
    );
    let sealed = std::fs::read(sealed_dir.join("etcd.db.enc")).unwrap();
    assert!(
        !sealed.windows(11).any(|w| w == b"/kinit-test"),
        "etcd's keys readable in an encrypted backup"
    );
    let refused = backup(&lab, &config, &["verify"]);
    assert!(
        text(&refused).contains("it is encrypted: give its key"),
        "{}",
        text(&refused)
    );
    assert_success(
        "verify with the key",
        &backup(&lab, &config, &["verify", &key_arg]),
    );
    let pruned = backup(&lab, &config, &["prune", "--keep-last", "1"]);
    assert_success("kinit backup prune", &pruned);
    assert_eq!(stdout(&pruned).trim(), format!("removed {name}"));
    assert!(!dir.exists());
    let listed = stdout(&backup(&lab, &config, &["list", "-o", "json"]));
    let listed: serde_json::Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // Scheduled backups on the nodes: every 5 seconds, keeping the newest 2.
    let scheduled = lab
        .kinit()
        .args([
            "backup",
            "schedule",
            "--cron",
            "*/5 * * * * *",
            "--keep-last",
            "2",
            "-c",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert_success("kinit backup schedule", &scheduled);
    let shown = stdout(&backup(&lab, &config, &["schedule", "--show"]));
    assert!(shown.contains("cron \"*/5 * * * * *\""), "{shown}");
    let calendar = stdout(&lab.ssh(
        "node2",
        "systemd-analyze calendar \"$(sed -n 's/^OnCalendar=//p' /etc/systemd/system/kinit-etcd-backup.timer)\" | grep -c 'Next elapse'",
    ));
    assert_eq!(
        calendar.trim(),
        "1",
        "systemd reads the translated schedule"
    );
    let runs = eventually(
        "four scheduled backups on node1",
        Duration::from_secs(60),
        || {
            let log =
                stdout(&lab.ssh("node1", "journalctl -u kinit-etcd-backup --no-pager -o cat"));
            if log.matches("backup bak-node1-scheduled-").count() >= 4 {
                Ok(log)
            } else {
                Err(log)
            }
        },
    );
    assert!(
        runs.contains("retention removed bak-node1-scheduled-"),
        "{runs}"
    );
    let kept = stdout(&lab.ssh(
        "node3",
        "cd /var/lib/kinit/backups && ls bak-node3-scheduled-*.db | wc -l && sha256sum --quiet -c $(ls -t *.sha256 | head -1) && echo intact",
    ));
    assert_eq!(kept.trim(), "2\nintact", "retention keeps the newest two");
    assert_success(
        "schedule disabled",
        &lab.kinit()
            .args(["backup", "schedule", "--disable", "-c"])
            .arg(&config)
            .output()
            .unwrap(),
    );
    let after = stdout(&lab.ssh(
        "node1",
        "systemctl is-active kinit-etcd-backup.timer; ls /var/lib/kinit/backups/*-scheduled-*.db | wc -l",
    ));
    assert_eq!(
        after.trim(),
        "inactive\n2",
        "the timer is gone, the backups stay"
    );

    // The lock: a live holder blocks every mutating operation and is named; breaking it
    // releases it.
    let state = config.parent().unwrap().join(".kinit/bak");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    std::fs::write(
        state.join("lock.json"),
        serde_json::json!({"operation": "upgrade apply", "pid": std::process::id(),
            "host": hostname.trim(), "user": "ops", "since": 1_900_000_000})
        .to_string(),
    )
    .unwrap();
    for operation in [&["create"][..], &["prune", "--keep-last", "1"]] {
        let busy = backup(&lab, &config, operation);
        assert!(!busy.status.success());
        assert!(
            text(&busy).contains(&format!(
                "`kinit upgrade apply` (pid {} on",
                std::process::id()
            )),
            "{}",
            text(&busy)
        );
    }
    assert!(
        !init(&lab, &config, &[]).status.success(),
        "init ran under another's lock"
    );
    let broken = run(lab.kinit().args(["lock", "break", "-c"]).arg(&config));
    assert!(stdout(&broken).contains("released the lock of `kinit upgrade apply`"));
    assert_success(
        "backup after the lock was broken",
        &backup(&lab, &config, &["create"]),
    );

    // Certificates renewed on the running cluster: new serials and later expiry on every
    // control plane, the cluster healthy, kubectl working with the renewed admin.conf.
    let certificates = |node: &str| {
        stdout(&lab.ssh(
            node,
            "for c in apiserver apiserver-etcd-client etcd/server etcd/peer front-proxy-client; do \
             openssl x509 -noout -serial -enddate -in /etc/kubernetes/pki/$c.crt; done",
        ))
    };
    let before: Vec<String> = ["node1", "node2", "node3"].map(certificates).to_vec();
    std::thread::sleep(Duration::from_secs(2));
    let renewed = lab
        .kinit()
        .args(["certs", "renew", "all", "-o", "json", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert_success("kinit certs renew all -c", &renewed);
    for (node, before) in ["node1", "node2", "node3"].iter().zip(&before) {
        let after = certificates(node);
        for (old, new) in before.lines().zip(after.lines()) {
            assert_ne!(old, new, "{node}: not renewed");
            if let (Some(old), Some(new)) =
                (old.strip_prefix("notAfter="), new.strip_prefix("notAfter="))
            {
                assert!(old != new, "{node}: same expiry {old}");
            }
        }
    }
    let health = etcdctl(&lab, "node1", "endpoint health --cluster");
    assert_eq!(
        health.lines().filter(|l| l.contains("is healthy")).count(),
        3,
        "{health}"
    );
    let admin = admin_kubeconfig(&lab, &config);
    wait_ready(&admin, 3);
    let serving = stdout(&lab.ssh(
        "node1",
        "echo | openssl s_client -connect 127.0.0.1:6443 2>/dev/null | openssl x509 -noout -serial",
    ));
    assert!(
        before[0].lines().all(|l| l != serving.trim()),
        "the API server still serves its old certificate: {serving}"
    );
    // What every host uses, read over SSH: each control plane's renewed API server
    // certificate and its CAs.
    let expiry = run(lab
        .kinit()
        .args([
            "certs",
            "check-expiration",
            "--on-hosts",
            "-o",
            "json",
            "-c",
        ])
        .arg(&config));
    let expiry: serde_json::Value = serde_json::from_str(&stdout(&expiry)).unwrap();
    let certificates = expiry["certificates"].as_array().unwrap();
    for node in ["node1", "node2", "node3"] {
        let on = |file: &str| {
            certificates
                .iter()
                .find(|c| c["host"] == node && c["file"] == file)
                .unwrap_or_else(|| panic!("{node}: no {file} in {expiry:#}"))
        };
        let residual = on("/etc/kubernetes/pki/apiserver.crt")["residual"]
            .as_str()
            .unwrap();
        assert!(
            residual == "364d" || residual == "365d",
            "{node}: {residual}"
        );
        assert_eq!(on("/etc/kubernetes/pki/ca.crt")["ca"], true);
        on("/etc/kubernetes/admin.conf");
    }
    assert!(expiry["unreachable"].as_array().unwrap().is_empty());

    // A control plane leaves: drained, out of Kubernetes and etcd, its host reset; two
    // healthy members remain and no stale one.
    let removed = lab
        .kinit()
        .args(["node", "remove", "node3", "--yes", "-o", "json", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert_success("kinit node remove node3", &removed);
    let members = etcdctl(&lab, "node1", "member list");
    assert_eq!(members.lines().count(), 2, "{members}");
    assert!(!members.contains("node3"), "{members}");
    assert_eq!(
        members
            .lines()
            .filter(|l| l.contains(", started, "))
            .count(),
        2,
        "{members}"
    );
    let health = etcdctl(&lab, "node2", "endpoint health --cluster");
    assert_eq!(
        health.lines().filter(|l| l.contains("is healthy")).count(),
        2,
        "{health}"
    );
    let nodes = kubectl_ok(&admin, &["get", "nodes", "--no-headers"]).unwrap();
    assert!(!nodes.contains("node3"), "{nodes}");
    assert_host_clean(&lab, "node3");
    // With node3 out of the configuration too, init has nothing left to do on the others.
    let inventory = std::fs::read_to_string(&config).unwrap();
    let lines: Vec<&str> = inventory.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with("- name: node3"))
        .unwrap();
    let end = (start + 1..lines.len())
        .find(|&i| {
            let l = lines[i];
            !l.starts_with(' ') && !l.starts_with('-')
        })
        .unwrap_or(lines.len());
    let smaller: Vec<&str> = lines[..start]
        .iter()
        .chain(&lines[end..])
        .copied()
        .collect();
    std::fs::write(&config, smaller.join("\n") + "\n").unwrap();
    assert_success("init without node3", &init(&lab, &config, &[]));
    wait_ready(&admin, 2);
}
