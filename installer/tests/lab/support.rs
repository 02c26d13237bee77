//! Helpers for lab tests: a lab per test, torn down even when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn kinit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kinit"))
}

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

/// A lab with its own kinit home; `lab down` runs when it is dropped.
pub struct TestLab {
    pub name: String,
    pub home: tempfile::TempDir,
}

impl TestLab {
    pub fn new(name: &str) -> TestLab {
        TestLab {
            name: name.to_owned(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    pub fn kinit(&self) -> Command {
        let mut command = kinit();
        command
            .env("KINIT_HOME", self.home.path())
            .env("KINIT_LAB", &self.name);
        command
    }

    pub fn dir(&self) -> PathBuf {
        self.home.path().join("labs").join(&self.name)
    }

    pub fn inventory(&self) -> PathBuf {
        self.dir().join("cluster.yaml")
    }

    /// Runs a command on a node as root through `kinit lab ssh`.
    pub fn ssh(&self, node: &str, command: &str) -> Output {
        self.kinit()
            .args(["lab", "ssh", node, "--", command])
            .output()
            .unwrap()
    }

    /// The docker container of a node.
    pub fn container(&self, node: &str) -> String {
        format!("kinit-{}-{node}", self.name)
    }

    /// Copies a file of this machine into a node.
    pub fn copy_to(&self, node: &str, source: &Path, destination: &str) {
        let target = format!("{}:{destination}", self.container(node));
        run(Command::new("docker").arg("cp").arg(source).arg(&target));
    }

    pub fn down(&self) -> Output {
        run(self.kinit().args(["lab", "down"]))
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if self.dir().exists() {
            let _ = self.kinit().args(["lab", "down"]).output();
        }
    }
}

pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The kubectl tests use on this machine: Debian's kubernetes-client, which `scripts/test`
/// unpacks and exports as KINIT_KUBECTL.
pub fn kubectl(kubeconfig: &Path) -> Command {
    let program = std::env::var_os("KINIT_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from("/var/cache/kinit/tools/kubernetes-client/usr/bin/kubectl")
        });
    let mut command = Command::new(program);
    command.arg("--kubeconfig").arg(kubeconfig);
    command
}

/// Polls `check` every second until it returns `Some`, or panics with `what` after `timeout`.
pub fn eventually<T>(
    what: &str,
    timeout: std::time::Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if std::time::Instant::now() >= deadline => {
                panic!("{what}: not within {} s; last: {last}", timeout.as_secs())
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_secs(1)),
        }
    }
}
