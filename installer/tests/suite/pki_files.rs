//! The generated PKI checked by openssl: chains, subjects, usages, names, modes, idempotency,
//! bring-your-own CA and renewal.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::{
    THREE_CONTROL_PLANES, changed, generate, kinit, kubeconfig_certificate, openssl, run, snapshot,
    stdout,
};

fn verify(ca: &Path, leaf: &Path) -> (bool, String) {
    let output = Command::new(openssl())
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(leaf)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// What openssl reads from a certificate.
#[derive(Debug)]
struct Described {
    subject: String,
    sans: BTreeSet<String>,
    extended_usage: String,
    key_usage: String,
    ca: bool,
}

fn describe(cert: &Path) -> Described {
    let output = run(Command::new(openssl())
        .args(["x509", "-noout", "-nameopt", "RFC2253", "-subject", "-ext"])
        .arg("subjectAltName,extendedKeyUsage,keyUsage,basicConstraints")
        .arg("-in")
        .arg(cert));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let after = |header: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(header))
            .and_then(|i| lines.get(i + 1))
            .map(|l| l.to_string())
            .unwrap_or_default()
    };
    let subject = lines[0]
        .strip_prefix("subject=")
        .unwrap_or(lines[0])
        .to_owned();
    let sans = after("X509v3 Subject Alternative Name")
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("IP Address:", "").replace("DNS:", ""))
        .collect();
    Described {
        subject,
        sans,
        extended_usage: after("X509v3 Extended Key Usage"),
        key_usage: after("X509v3 Key Usage"),
        ca: after("X509v3 Basic Constraints").contains("CA:TRUE"),
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

const SERVER: &str = "TLS Web Server Authentication";
const CLIENT: &str = "TLS Web Client Authentication";
const BOTH: &str = "TLS Web Server Authentication, TLS Web Client Authentication";

#[test]
fn every_leaf_and_kubeconfig_verifies_against_its_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = generate(tmp.path(), THREE_CONTROL_PLANES);
    let pki = etc.join("pki");
    let mut leaves = vec![
        ("ca.crt", "apiserver-kubelet-client.crt"),
        ("front-proxy-ca.crt", "front-proxy-client.crt"),
        ("etcd/ca.crt", "etcd/healthcheck-client.crt"),
        ("etcd/ca.crt", "apiserver-etcd-client.crt"),
    ]
    .into_iter()
    .map(|(ca, leaf)| (pki.join(ca), pki.join(leaf)))
    .collect::<Vec<_>>();
    for node in ["cp1", "cp2", "cp3"] {
        leaves.push((
            pki.join("ca.crt"),
            pki.join(format!("nodes/{node}/apiserver.crt")),
        ));
        leaves.push((
            pki.join("etcd/ca.crt"),
            pki.join(format!("nodes/{node}/etcd/server.crt")),
        ));
        leaves.push((
            pki.join("etcd/ca.crt"),
            pki.join(format!("nodes/{node}/etcd/peer.crt")),
        ));
    }
    let extracted = tempfile::tempdir().unwrap();
    for conf in [
        "admin",
        "super-admin",
        "controller-manager",
        "scheduler",
        "kubelet-cp1",
        "kubelet-cp2",
        "kubelet-cp3",
        "kubelet-w1",
    ] {
        let cert = kubeconfig_certificate(&etc.join(format!("{conf}.conf")), extracted.path());
        leaves.push((pki.join("ca.crt"), cert));
    }
    assert_eq!(leaves.len(), 21);
    for (ca, leaf) in &leaves {
        let (ok, text) = verify(ca, leaf);
        assert!(ok, "{} against {}: {text}", leaf.display(), ca.display());
    }
    for ca in ["ca.crt", "front-proxy-ca.crt", "etcd/ca.crt"] {
        let described = describe(&pki.join(ca));
        assert!(described.ca, "{ca} must be a CA");
        assert!(
            described.key_usage.contains("Certificate Sign"),
            "{ca}: {described:?}"
        );
    }
}

#[test]
fn a_leaf_from_the_wrong_ca_fails_verification() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = generate(tmp.path(), THREE_CONTROL_PLANES);
    let other = tempfile::tempdir().unwrap();
    let other_etc = generate(other.path(), THREE_CONTROL_PLANES);
    let pki = etc.join("pki");
    for (ca, leaf) in [
        (pki.join("etcd/ca.crt"), pki.join("nodes/cp1/apiserver.crt")),
        (pki.join("ca.crt"), pki.join("front-proxy-client.crt")),
        (pki.join("ca.crt"), pki.join("apiserver-etcd-client.crt")),
        (
            other_etc.join("pki/ca.crt"),
            pki.join("nodes/cp1/apiserver.crt"),
        ),
        (
            other_etc.join("pki/etcd/ca.crt"),
            pki.join("nodes/cp1/etcd/server.crt"),
        ),
    ] {
        let (ok, text) = verify(&ca, &leaf);
        assert!(
            !ok,
            "{} must not verify against {}: {text}",
            leaf.display(),
            ca.display()
        );
    }
}

#[test]
fn subjects_usages_and_names_match_kubeadm() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = generate(tmp.path(), THREE_CONTROL_PLANES);
    let pki = etc.join("pki");
    let no_sans = BTreeSet::new();
    let mut expected = vec![
        (
            "apiserver-kubelet-client.crt",
            "CN=kube-apiserver-kubelet-client,O=kubeadm:cluster-admins",
            CLIENT,
            no_sans.clone(),
        ),
        (
            "front-proxy-client.crt",
            "CN=front-proxy-client",
            CLIENT,
            no_sans.clone(),
        ),
        (
            "etcd/healthcheck-client.crt",
            "CN=kube-etcd-healthcheck-client",
            CLIENT,
            no_sans.clone(),
        ),
        (
            "apiserver-etcd-client.crt",
            "CN=kube-apiserver-etcd-client",
            CLIENT,
            no_sans.clone(),
        ),
    ];
    let nodes = [
        ("cp1", "10.0.0.11"),
        ("cp2", "10.0.0.12"),
        ("cp3", "10.0.0.13"),
    ];
    let mut per_node = Vec::new();
    for (node, ip) in nodes {
        per_node.push((
            format!("nodes/{node}/apiserver.crt"),
            "CN=kube-apiserver".to_owned(),
            SERVER,
            set(&[
                node,
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.corp.local",
                "localhost",
                "api.example.com",
                "10.96.0.1",
                ip,
                "127.0.0.1",
                "192.0.2.10",
            ]),
        ));
        let etcd_names = set(&[node, "localhost", ip, "127.0.0.1", "0:0:0:0:0:0:0:1"]);
        per_node.push((
            format!("nodes/{node}/etcd/server.crt"),
            format!("CN={node}"),
            BOTH,
            etcd_names.clone(),
        ));
        per_node.push((
            format!("nodes/{node}/etcd/peer.crt"),
            format!("CN={node}"),
            BOTH,
            etcd_names,
        ));
    }
    let extracted = tempfile::tempdir().unwrap();
    let kubeconfigs = [
        ("admin.conf", "CN=kubernetes-admin,O=kubeadm:cluster-admins"),
        (
            "super-admin.conf",
            "CN=kubernetes-super-admin,O=system:masters",
        ),
        (
            "controller-manager.conf",
            "CN=system:kube-controller-manager",
        ),
        ("scheduler.conf", "CN=system:kube-scheduler"),
        ("kubelet-cp2.conf", "CN=system:node:cp2,O=system:nodes"),
        ("kubelet-w1.conf", "CN=system:node:w1,O=system:nodes"),
    ];
    for (file, subject, usage, sans) in expected.drain(..) {
        check(&pki.join(file), subject, usage, &sans);
    }
    for (file, subject, usage, sans) in &per_node {
        check(&pki.join(file), subject, usage, sans);
    }
    for (conf, subject) in kubeconfigs {
        let cert = kubeconfig_certificate(&etc.join(conf), extracted.path());
        check(&cert, subject, CLIENT, &no_sans);
    }
}

fn check(cert: &Path, subject: &str, usage: &str, sans: &BTreeSet<String>) {
    let described = describe(cert);
    assert_eq!(described.subject, subject, "{}", cert.display());
    assert_eq!(described.extended_usage, usage, "{}", cert.display());
    assert_eq!(&described.sans, sans, "{}", cert.display());
    assert_eq!(
        described.key_usage,
        "Digital Signature, Key Encipherment",
        "{}",
        cert.display()
    );
    assert!(!described.ca, "{} must not be a CA", cert.display());
}

#[test]
fn kubernetes_before_1_29_uses_system_masters_for_administrators() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = generate(
        tmp.path(),
        &THREE_CONTROL_PLANES.replace("v1.30.2", "v1.20.2"),
    );
    let extracted = tempfile::tempdir().unwrap();
    let admin = kubeconfig_certificate(&etc.join("admin.conf"), extracted.path());
    assert_eq!(
        describe(&admin).subject,
        "CN=kubernetes-admin,O=system:masters"
    );
    assert_eq!(
        describe(&etc.join("pki/apiserver-kubelet-client.crt")).subject,
        "CN=kube-apiserver-kubelet-client,O=system:masters"
    );
}

#[test]
fn keys_are_0600_and_certificates_0644() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = generate(tmp.path(), THREE_CONTROL_PLANES);
    let files = snapshot(&etc);
    assert!(files.len() > 40, "{}", files.len());
    for path in files.keys() {
        let mode = std::fs::metadata(etc.join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        let name = path.display().to_string();
        let expected = if name.ends_with(".key") || name.ends_with(".conf") {
            0o600
        } else {
            0o644
        };
        assert_eq!(mode, expected, "{name}: {mode:o}");
    }
}

#[test]
fn a_second_generate_changes_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = generate(tmp.path(), THREE_CONTROL_PLANES);
    let before = snapshot(&etc);
    // Coarse file-system timestamps would hide a rewrite within the same tick.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let output = run(kinit()
        .args(["certs", "generate", "-c"])
        .arg(tmp.path().join("cluster.yaml"))
        .arg("--dir")
        .arg(&etc));
    assert!(
        stdout(&output).contains("0 created, 0 reissued"),
        "{}",
        stdout(&output)
    );
    assert_eq!(changed(&before, &snapshot(&etc)), Vec::<String>::new());
}

#[test]
fn changing_a_san_reissues_only_the_affected_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = generate(tmp.path(), THREE_CONTROL_PLANES);
    let before = snapshot(&etc);
    std::thread::sleep(std::time::Duration::from_millis(20));
    // A new extra SAN concerns the three API server certificates only.
    generate(
        tmp.path(),
        &THREE_CONTROL_PLANES.replace("192.0.2.10]", "192.0.2.10, 198.51.100.7]"),
    );
    let after = snapshot(&etc);
    assert_eq!(
        changed(&before, &after),
        [
            "pki/nodes/cp1/apiserver.crt",
            "pki/nodes/cp2/apiserver.crt",
            "pki/nodes/cp3/apiserver.crt"
        ]
    );
    // Keys are reused: the new certificates certify the same keys.
    assert_eq!(
        before[Path::new("pki/nodes/cp1/apiserver.key")],
        after[Path::new("pki/nodes/cp1/apiserver.key")]
    );
    assert!(
        describe(&etc.join("pki/nodes/cp2/apiserver.crt"))
            .sans
            .contains("198.51.100.7")
    );

    // Moving cp3 concerns its API server and etcd certificates only.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let before = after;
    let moved = THREE_CONTROL_PLANES
        .replace("192.0.2.10]", "192.0.2.10, 198.51.100.7]")
        .replace("10.0.0.13", "10.0.0.33");
    generate(tmp.path(), &moved);
    assert_eq!(
        changed(&before, &snapshot(&etc)),
        [
            "pki/nodes/cp3/apiserver.crt",
            "pki/nodes/cp3/etcd/peer.crt",
            "pki/nodes/cp3/etcd/server.crt"
        ]
    );
}

#[test]
fn bring_your_own_ca_signs_everything_it_should_and_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    let pki = etc.join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    run(Command::new(openssl())
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=corporate-kubernetes-ca",
        ])
        .args([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,digitalSignature",
        ])
        .arg("-keyout")
        .arg(pki.join("ca.key"))
        .arg("-out")
        .arg(pki.join("ca.crt")));
    let ca_before = (
        std::fs::read(pki.join("ca.crt")).unwrap(),
        std::fs::read(pki.join("ca.key")).unwrap(),
    );
    generate(tmp.path(), THREE_CONTROL_PLANES);
    assert_eq!(
        (
            std::fs::read(pki.join("ca.crt")).unwrap(),
            std::fs::read(pki.join("ca.key")).unwrap()
        ),
        ca_before,
        "the operator's CA must be kept byte for byte"
    );
    for leaf in ["nodes/cp1/apiserver.crt", "apiserver-kubelet-client.crt"] {
        let (ok, text) = verify(&pki.join("ca.crt"), &pki.join(leaf));
        assert!(ok, "{leaf}: {text}");
    }
    let extracted = tempfile::tempdir().unwrap();
    let admin = kubeconfig_certificate(&etc.join("admin.conf"), extracted.path());
    assert!(verify(&pki.join("ca.crt"), &admin).0);
    // The other authorities are created as kubeadm does.
    assert!(describe(&pki.join("etcd/ca.crt")).ca);
    assert!(
        verify(
            &pki.join("etcd/ca.crt"),
            &pki.join("nodes/cp1/etcd/server.crt")
        )
        .0
    );
}

#[test]
fn rsa_keys_on_request_and_configurable_lifetimes() {
    let tmp = tempfile::tempdir().unwrap();
    let config = format!(
        "{THREE_CONTROL_PLANES}certificates:\n  keyAlgorithm: rsa-2048\n  validityDays: 30\n  caValidityDays: 400\n"
    );
    let etc = generate(tmp.path(), &config);
    let text = stdout(&run(Command::new(openssl())
        .args(["x509", "-noout", "-text", "-in"])
        .arg(etc.join("pki/nodes/cp1/apiserver.crt"))));
    assert!(
        text.contains("rsaEncryption") && text.contains("2048 bit"),
        "{text}"
    );
    let json = stdout(&run(kinit()
        .args(["certs", "check-expiration", "-o", "json", "--dir"])
        .arg(&etc)));
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let days = |v: &serde_json::Value| v["residualSeconds"].as_i64().unwrap() / 86_400;
    for cert in report["certificates"].as_array().unwrap() {
        assert!((29..=30).contains(&days(cert)), "{cert}");
    }
    for ca in report["authorities"].as_array().unwrap() {
        assert!((399..=400).contains(&days(ca)), "{ca}");
    }
}

#[test]
fn default_lifetimes_are_a_year_and_ten_years() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = generate(tmp.path(), THREE_CONTROL_PLANES);
    let json = stdout(&run(kinit()
        .args(["certs", "check-expiration", "--output", "json", "--dir"])
        .arg(&etc)));
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let certificates = report["certificates"].as_array().unwrap();
    // 3 apiservers, 6 etcd, 4 shared leaves, 4 kubeconfigs, 4 kubelets.
    assert_eq!(certificates.len(), 21);
    for cert in certificates {
        let days = cert["residualSeconds"].as_i64().unwrap() / 86_400;
        assert!((364..=365).contains(&days), "{cert}");
        assert_eq!(cert["externallyManaged"], false);
    }
    for ca in report["authorities"].as_array().unwrap() {
        let days = ca["residualSeconds"].as_i64().unwrap() / 86_400;
        assert!((3649..=3650).contains(&days), "{ca}");
    }
    let table = stdout(&run(kinit()
        .args(["certs", "check-expiration", "--dir"])
        .arg(&etc)));
    assert!(table.starts_with("CERTIFICATE "), "{table}");
    assert!(table.contains("CERTIFICATE AUTHORITY   EXPIRES"), "{table}");
}

#[test]
fn renew_reissues_leaves_and_kubeconfigs_but_keeps_authorities_and_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let config = format!("{THREE_CONTROL_PLANES}certificates:\n  validityDays: 10\n");
    let etc = generate(tmp.path(), &config);
    let before = snapshot(&etc);
    std::thread::sleep(std::time::Duration::from_millis(20));
    run(kinit().args(["certs", "renew", "all", "--dir"]).arg(&etc));
    let after = snapshot(&etc);
    let changed = changed(&before, &after);
    assert!(
        changed
            .iter()
            .all(|f| f.ends_with(".crt") || f.ends_with(".conf")),
        "{changed:?}"
    );
    assert_eq!(changed.len(), 13 + 8, "{changed:?}");
    for ca in [
        "pki/ca.crt",
        "pki/ca.key",
        "pki/etcd/ca.crt",
        "pki/front-proxy-ca.crt",
        "pki/sa.key",
    ] {
        assert_eq!(before[Path::new(ca)], after[Path::new(ca)], "{ca}");
    }
    let json = stdout(&run(kinit()
        .args(["certs", "check-expiration", "-o", "json", "--dir"])
        .arg(&etc)));
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    for cert in report["certificates"].as_array().unwrap() {
        let days = cert["residualSeconds"].as_i64().unwrap() / 86_400;
        assert!(days >= 364, "renewed to the default year: {cert}");
    }
    // The renewed leaves still state what they stated.
    assert!(
        describe(&etc.join("pki/nodes/cp3/apiserver.crt"))
            .sans
            .contains("192.0.2.10")
    );
    assert!(
        verify(
            &etc.join("pki/ca.crt"),
            &etc.join("pki/nodes/cp3/apiserver.crt")
        )
        .0
    );

    // One certificate by kubeadm's name.
    let before = snapshot(&etc);
    std::thread::sleep(std::time::Duration::from_millis(20));
    run(kinit()
        .args(["certs", "renew", "admin.conf", "--dir"])
        .arg(&etc));
    assert_eq!(
        crate::support::changed(&before, &snapshot(&etc)),
        ["admin.conf"]
    );
    let err = kinit()
        .args(["certs", "renew", "apiserverz", "--dir"])
        .arg(&etc)
        .output()
        .unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("not a certificate name"));
}

#[test]
fn ca_pin_is_the_sha256_of_the_public_key_openssl_sees() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = generate(tmp.path(), THREE_CONTROL_PLANES);
    let pin = stdout(&run(kinit().args(["certs", "ca-pin", "--dir"]).arg(&etc)))
        .trim()
        .to_owned();
    let public_key = run(Command::new(openssl())
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(etc.join("pki/ca.crt")));
    let der_path = tmp.path().join("ca.pub.der");
    let pem_path = tmp.path().join("ca.pub.pem");
    std::fs::write(&pem_path, &public_key.stdout).unwrap();
    run(Command::new(openssl())
        .args(["pkey", "-pubin", "-outform", "der", "-in"])
        .arg(&pem_path)
        .arg("-out")
        .arg(&der_path));
    let digest = stdout(&run(Command::new(openssl())
        .args(["dgst", "-sha256", "-r"])
        .arg(&der_path)));
    let hex = digest.split_whitespace().next().unwrap();
    assert_eq!(pin, format!("sha256:{hex}"));
}

#[test]
fn service_account_keys_pair_up() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = generate(tmp.path(), THREE_CONTROL_PLANES);
    let derived = run(Command::new(openssl())
        .args(["pkey", "-pubout", "-in"])
        .arg(etc.join("pki/sa.key")));
    assert_eq!(
        stdout(&derived),
        std::fs::read_to_string(etc.join("pki/sa.pub")).unwrap()
    );
}
