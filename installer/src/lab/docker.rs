//! The docker engine, driven through its command-line client: the lab needs a handful of
//! operations (run, start, stop, exec, inspect, networks, volumes) and the CLI is on every
//! machine that has docker, so no API client is linked.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::LabError;

/// The docker client binary.
#[derive(Debug, Clone)]
pub struct Docker {
    binary: PathBuf,
}

impl Docker {
    pub fn new() -> Docker {
        Docker {
            binary: PathBuf::from(
                std::env::var_os("KINIT_DOCKER").unwrap_or_else(|| "docker".into()),
            ),
        }
    }

    fn command(&self) -> Command {
        Command::new(&self.binary)
    }

    /// Runs `docker ARGS`, returning stdout; a failure carries docker's own message.
    pub fn run(&self, args: &[&str]) -> Result<String, LabError> {
        let output = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| LabError::Docker(format!("cannot run {}: {e}", self.binary.display())))?;
        check(args, output)
    }

    /// Runs `docker ARGS` with `input` on its standard input (never in its arguments).
    pub fn run_with_input(&self, args: &[&str], input: &[u8]) -> Result<String, LabError> {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| LabError::Docker(format!("cannot run {}: {e}", self.binary.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input).map_err(|e| {
                LabError::Docker(format!("docker {}: writing input: {e}", args.join(" ")))
            })?;
        }
        let output = child
            .wait_with_output()
            .map_err(|e| LabError::Docker(format!("docker {}: {e}", args.join(" "))))?;
        check(args, output)
    }

    /// True when a docker daemon answers.
    pub fn daemon_answers(&self) -> bool {
        self.command()
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits for the daemon to answer.
    pub fn wait_for_daemon(&self, timeout: Duration) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        while !self.daemon_answers() {
            if Instant::now() > deadline {
                return Err(LabError::Docker(format!(
                    "the docker daemon did not answer within {} s; see {}",
                    timeout.as_secs(),
                    super::host::DOCKERD_LOG
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Names of objects of `kind` (container, network, volume) carrying `label`.
    pub fn labelled(&self, kind: &str, label: &str) -> Result<Vec<String>, LabError> {
        let filter = format!("label={label}");
        let out = match kind {
            "container" => {
                self.run(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"])?
            }
            "network" => self.run(&[
                "network",
                "ls",
                "--filter",
                &filter,
                "--format",
                "{{.Name}}",
            ])?,
            "volume" => {
                self.run(&["volume", "ls", "--filter", &filter, "--format", "{{.Name}}"])?
            }
            other => unreachable!("no docker object kind {other}"),
        };
        Ok(out
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// A container's state (`running`, `exited`, …), or `None` when it does not exist.
    pub fn container_state(&self, name: &str) -> Option<String> {
        self.run(&[
            "inspect",
            "--type",
            "container",
            "--format",
            "{{.State.Status}}",
            name,
        ])
        .ok()
        .map(|s| s.trim().to_owned())
    }

    pub fn image_exists(&self, image: &str) -> bool {
        self.run(&["image", "inspect", "--format", "{{.Id}}", image])
            .is_ok()
    }

    /// Imports a root file-system tarball as an image whose entrypoint is `entrypoint`.
    pub fn import(&self, tarball: &Path, image: &str, entrypoint: &str) -> Result<(), LabError> {
        let change = format!("ENTRYPOINT [\"{entrypoint}\"]");
        let tarball = tarball.to_string_lossy();
        self.run(&["import", "--change", &change, &tarball, image])
            .map(drop)
    }

    /// Runs a command in a container as root, returning stdout.
    pub fn exec(&self, container: &str, command: &[&str]) -> Result<String, LabError> {
        let mut args = vec!["exec", container];
        args.extend_from_slice(command);
        self.run(&args)
    }

    /// Writes `contents` to `path` in a container through the exec's standard input: `docker
    /// cp` into a path under a tmpfs lands beneath the mount, invisible to the container.
    pub fn write_file(
        &self,
        container: &str,
        path: &str,
        contents: &[u8],
        mode: &str,
    ) -> Result<(), LabError> {
        let script = format!(
            "umask 077 && mkdir -p \"$(dirname '{path}')\" && cat > '{path}.tmp' && chmod {mode} '{path}.tmp' && mv '{path}.tmp' '{path}'"
        );
        self.run_with_input(&["exec", "-i", container, "sh", "-c", &script], contents)
            .map(drop)
    }
}

impl Default for Docker {
    fn default() -> Docker {
        Docker::new()
    }
}

fn check(args: &[&str], output: Output) -> Result<String, LabError> {
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(LabError::Docker(format!(
            "docker {} failed: {}",
            args.iter().take(3).copied().collect::<Vec<_>>().join(" "),
            stderr.trim()
        )))
    }
}
