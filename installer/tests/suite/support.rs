//! Helpers shared by the integration tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

/// The `kinit` binary under test.
pub fn kinit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kinit"))
}

/// An external program: `$env` when set (scripts/test sets them), else `name` on PATH.
pub fn tool(env: &str, name: &str, package: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("{name} is needed by this test: run scripts/test, or install Debian's {package} and set {env}")
    })
}

pub fn openssl() -> PathBuf {
    tool("KINIT_OPENSSL", "openssl", "openssl")
}

/// Runs a command, failing the test with its output unless it succeeds.
pub fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Three control planes with stacked etcd and one worker.
pub const THREE_CONTROL_PLANES: &str = "\
apiVersion: kinit.io/v1alpha1
kind: Cluster
metadata:
  name: trio
kubernetesVersion: v1.30.2
hosts:
  - {name: cp1, address: 10.0.0.11, roles: [control-plane]}
  - {name: cp2, address: 10.0.0.12, roles: [control-plane]}
  - {name: cp3, address: 10.0.0.13, roles: [control-plane]}
  - {name: w1, address: 10.0.0.21, roles: [worker]}
networking:
  serviceCIDR: 10.96.0.0/16
  dnsDomain: corp.local
controlPlane:
  extraSANs: [api.example.com, 192.0.2.10]
";

/// Writes `config` into `dir/cluster.yaml` and runs `kinit certs generate` into `dir/etc`.
pub fn generate(dir: &Path, config: &str) -> PathBuf {
    let config_path = dir.join("cluster.yaml");
    std::fs::write(&config_path, config).unwrap();
    let out = dir.join("etc");
    run(kinit()
        .args(["certs", "generate", "-c"])
        .arg(&config_path)
        .arg("--dir")
        .arg(&out));
    out
}

/// Every file under `dir` with its content and modification time.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let meta = std::fs::metadata(&path).unwrap();
                let relative = path.strip_prefix(dir).unwrap().to_owned();
                files.insert(
                    relative,
                    (std::fs::read(&path).unwrap(), meta.modified().unwrap()),
                );
            }
        }
    }
    files
}

/// Files whose content or modification time differ between two snapshots.
pub fn changed(
    before: &BTreeMap<PathBuf, (Vec<u8>, SystemTime)>,
    after: &BTreeMap<PathBuf, (Vec<u8>, SystemTime)>,
) -> Vec<String> {
    let mut names: Vec<String> = after
        .iter()
        .filter(|(path, now)| before.get(*path) != Some(now))
        .map(|(path, _)| path.display().to_string())
        .collect();
    names.extend(
        before
            .keys()
            .filter(|p| !after.contains_key(*p))
            .map(|p| format!("removed {}", p.display())),
    );
    names
}

/// Extracts the client certificate of a kubeconfig into a PEM file in `out_dir`.
pub fn kubeconfig_certificate(kubeconfig: &Path, out_dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let data = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
        .unwrap_or_else(|| panic!("{} has no client-certificate-data", kubeconfig.display()));
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .unwrap();
    let name = kubeconfig
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".conf", ".crt");
    let out = out_dir.join(name);
    std::fs::write(&out, pem).unwrap();
    out
}
