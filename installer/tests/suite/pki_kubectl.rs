//! Every generated kubeconfig read by a real kubectl (Debian's kubernetes-client).

use std::process::Command;

use crate::support::{THREE_CONTROL_PLANES, generate, run, stdout, tool};

#[test]
fn kubectl_parses_every_kubeconfig() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = generate(tmp.path(), THREE_CONTROL_PLANES);
    let kubectl = tool("KINIT_KUBECTL", "kubectl", "kubernetes-client");
    let expected = [
        ("admin.conf", "kubernetes-admin", "https://10.0.0.11:6443"),
        (
            "super-admin.conf",
            "kubernetes-super-admin",
            "https://10.0.0.11:6443",
        ),
        (
            "controller-manager.conf",
            "system:kube-controller-manager",
            "https://127.0.0.1:6443",
        ),
        (
            "scheduler.conf",
            "system:kube-scheduler",
            "https://127.0.0.1:6443",
        ),
        (
            "kubelet-cp1.conf",
            "system:node:cp1",
            "https://127.0.0.1:6443",
        ),
        (
            "kubelet-cp2.conf",
            "system:node:cp2",
            "https://127.0.0.1:6443",
        ),
        (
            "kubelet-cp3.conf",
            "system:node:cp3",
            "https://127.0.0.1:6443",
        ),
        // Three control planes and no endpoint: the worker goes through its local balancer.
        (
            "kubelet-w1.conf",
            "system:node:w1",
            "https://127.0.0.1:6443",
        ),
    ];
    for (file, user, server) in expected {
        let path = etc.join(file);
        let view = run(Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&path)
            .args(["config", "view", "-o", "json"]));
        let config: serde_json::Value = serde_json::from_str(&stdout(&view)).unwrap();
        assert_eq!(config["current-context"], format!("{user}@trio"), "{file}");
        assert_eq!(config["users"][0]["name"], user, "{file}");
        assert_eq!(config["clusters"][0]["cluster"]["server"], server, "{file}");
        assert_eq!(
            config["users"][0]["user"]["client-certificate-data"], "REDACTED",
            "{file}"
        );

        // --raw shows the embedded data, which must be the certificate kinit wrote.
        let raw = run(Command::new(&kubectl).arg("--kubeconfig").arg(&path).args([
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.users[0].user.client-certificate-data}",
        ]));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(stdout(&raw).trim()), "{file}");
    }
}
