//! A real etcd (Debian's etcd-server) serving with kinit's certificates on loopback.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{THREE_CONTROL_PLANES, generate, tool};

/// A running etcd, stopped when dropped.
struct Etcd {
    child: Child,
    client_url: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_etcd(pki: &Path, node: &str, data: &Path) -> Etcd {
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("https://127.0.0.1:{client}");
    let peer_url = format!("https://127.0.0.1:{peer}");
    let node_pki = pki.join("nodes").join(node).join("etcd");
    let log = std::fs::File::create(data.with_extension("log")).unwrap();
    let child = Command::new(tool("KINIT_ETCD", "etcd", "etcd-server"))
        .arg(format!("--name={node}"))
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster={node}={peer_url}"))
        .arg("--client-cert-auth=true")
        .arg(format!(
            "--trusted-ca-file={}",
            pki.join("etcd/ca.crt").display()
        ))
        .arg(format!(
            "--cert-file={}",
            node_pki.join("server.crt").display()
        ))
        .arg(format!(
            "--key-file={}",
            node_pki.join("server.key").display()
        ))
        .arg("--peer-client-cert-auth=true")
        .arg(format!(
            "--peer-trusted-ca-file={}",
            pki.join("etcd/ca.crt").display()
        ))
        .arg(format!(
            "--peer-cert-file={}",
            node_pki.join("peer.crt").display()
        ))
        .arg(format!(
            "--peer-key-file={}",
            node_pki.join("peer.key").display()
        ))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start etcd");
    Etcd { child, client_url }
}

fn etcdctl(etcd: &Etcd, ca: &Path, cert: &Path, key: &Path, args: &[&str]) -> Output {
    Command::new(tool("KINIT_ETCDCTL", "etcdctl", "etcd-client"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.client_url))
        .arg(format!("--cacert={}", ca.display()))
        .arg(format!("--cert={}", cert.display()))
        .arg(format!("--key={}", key.display()))
        .arg("--dial-timeout=2s")
        .arg("--command-timeout=3s")
        .args(args)
        .output()
        .unwrap()
}

fn pair(pki: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (
        pki.join(format!("{stem}.crt")),
        pki.join(format!("{stem}.key")),
    )
}

#[test]
fn etcd_accepts_kinit_clients_and_rejects_strangers() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = generate(tmp.path(), THREE_CONTROL_PLANES).join("pki");
    let stranger = tempfile::tempdir().unwrap();
    let stranger_pki = generate(stranger.path(), THREE_CONTROL_PLANES).join("pki");
    let etcd = start_etcd(&pki, "cp1", &tmp.path().join("etcd-data"));
    let ca = pki.join("etcd/ca.crt");

    // The API server's client certificate works once etcd is up.
    let (cert, key) = pair(&pki, "apiserver-etcd-client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let put = etcdctl(
            &etcd,
            &ca,
            &cert,
            &key,
            &["put", "/registry/kinit", "hello"],
        );
        if put.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "etcd never accepted apiserver-etcd-client: {}\netcd log:\n{}",
            String::from_utf8_lossy(&put.stderr),
            std::fs::read_to_string(tmp.path().join("etcd-data.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let get = etcdctl(
        &etcd,
        &ca,
        &cert,
        &key,
        &["get", "/registry/kinit", "--print-value-only"],
    );
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "hello");

    // The health-check client is accepted too.
    let (cert, key) = pair(&pki, "etcd/healthcheck-client");
    let health = etcdctl(&etcd, &ca, &cert, &key, &["endpoint", "health"]);
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );

    // A client certificate from another cluster's etcd CA is refused.
    let (cert, key) = pair(&stranger_pki, "apiserver-etcd-client");
    let refused = etcdctl(&etcd, &ca, &cert, &key, &["get", "/registry/kinit"]);
    assert!(
        !refused.status.success(),
        "a stranger's certificate was accepted"
    );
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        text.contains("certificate")
            || text.contains("deadline exceeded")
            || text.contains("handshake"),
        "unexpected failure: {text}"
    );

    // And a client that trusts the wrong CA does not trust etcd's server certificate.
    let (cert, key) = pair(&pki, "apiserver-etcd-client");
    let distrust = etcdctl(
        &etcd,
        &pki.join("ca.crt"),
        &cert,
        &key,
        &["get", "/registry/kinit"],
    );
    assert!(
        !distrust.status.success(),
        "the server certificate verified against the cluster CA"
    );
}
