//! A bundle built from the lab source: complete, verifiable, and refused when damaged.

use std::process::Command;

use crate::support::{kinit, run, stdout};

fn lab_bundle() -> std::path::PathBuf {
    // Cached after the first build (the Kubernetes build takes about 6 minutes on 2 cores).
    let created = stdout(&run(kinit().args(["bundle", "create", "--source", "lab"])));
    let path = created.split(':').next().unwrap().trim();
    std::path::PathBuf::from(path)
}

#[test]
fn lab_bundle_is_complete_verifies_and_reports_v1_20_2() {
    let bundle = lab_bundle();
    let manifest: serde_json::Value = serde_json::from_str(&stdout(&run(kinit()
        .args(["bundle", "inspect", "-o", "json"])
        .arg(&bundle))))
    .unwrap();
    let names: Vec<&str> = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for component in [
        "etcd",
        "etcdctl",
        "containerd",
        "containerd-shim-runc-v2",
        "ctr",
        "runc",
        "bridge",
        "host-local",
        "loopback",
        "portmap",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
        "kubectl",
        "k8s.gcr.io/pause:3.2",
        "kinit.io/busybox:1.35",
    ] {
        assert!(
            names.contains(&component),
            "{component} missing from the bundle: {names:?}"
        );
    }
    for entry in manifest["entries"].as_array().unwrap() {
        assert_eq!(entry["sha256"].as_str().unwrap().len(), 64, "{entry}");
        assert!(entry["size"].as_u64().unwrap() > 0, "{entry}");
        assert!(!entry["source"].as_str().unwrap().is_empty(), "{entry}");
    }
    let verified = stdout(&run(kinit().args(["bundle", "verify"]).arg(&bundle)));
    assert!(
        verified.contains(&format!("{} entries verified", names.len())),
        "{verified}"
    );

    // The Kubernetes binaries in it are the real v1.20.2.
    let dir = tempfile::tempdir().unwrap();
    run(kinit()
        .args(["bundle", "extract"])
        .arg(&bundle)
        .arg(dir.path()));
    for binary in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
    ] {
        let version = stdout(&run(
            Command::new(dir.path().join("bin").join(binary)).arg("--version")
        ));
        assert_eq!(version.trim(), "Kubernetes v1.20.2", "{binary}");
    }
    let kubectl = stdout(&run(
        Command::new(dir.path().join("bin/kubectl")).args(["version", "--client", "--short"])
    ));
    assert!(kubectl.contains("v1.20.2"), "{kubectl}");
    let etcd = stdout(&run(
        Command::new(dir.path().join("bin/etcd")).arg("--version")
    ));
    assert!(etcd.contains("etcd Version: 3.4.23"), "{etcd}");
}

#[test]
fn a_flipped_byte_or_a_cut_is_refused_naming_the_entry() {
    let bundle = lab_bundle();
    let manifest: serde_json::Value = serde_json::from_str(&stdout(&run(kinit()
        .args(["bundle", "inspect", "-o", "json"])
        .arg(&bundle))))
    .unwrap();
    let paths: Vec<String> = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["storedPath"].as_str().unwrap().to_owned())
        .collect();
    let bytes = std::fs::read(&bundle).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let names_an_entry = |text: &str| {
        paths
            .iter()
            .any(|p| text.contains(&format!("entry {p}:")) || text.contains(&format!("after {p}")))
    };

    for fraction in [3, 2] {
        let mut damaged = bytes.clone();
        let at = damaged.len() / fraction;
        damaged[at] ^= 0x5a;
        let file = tmp.path().join(format!("flipped-{fraction}.tar"));
        std::fs::write(&file, &damaged).unwrap();
        let output = kinit()
            .args(["bundle", "verify"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "a flipped byte at {at} was not noticed"
        );
        assert!(
            names_an_entry(&stderr),
            "the error does not name an entry: {stderr}"
        );
    }

    let cut = tmp.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let output = kinit()
        .args(["bundle", "verify"])
        .arg(&cut)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a truncated bundle was accepted");
    assert!(
        names_an_entry(&stderr),
        "the error does not name an entry: {stderr}"
    );
}
