//! How the engine reaches a host. A [`Transport`] does two things: run a shell command line
//! with a stream on its standard input, and open a TCP connection as seen from the host. SSH
//! ([`ssh::SshTransport`]) and the local machine ([`local::LocalTransport`]) implement it.
//!
//! Everything else is built once on top: [`Session`] adds privilege escalation (sudo, with the
//! password fed through standard input, never through arguments) and file transfer (streamed
//! through standard input into a temporary file that is renamed into place).

pub mod hostkeys;
pub mod local;
pub mod ssh;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};
use zeroize::Zeroizing;

/// A secret (a sudo password): zeroed when dropped, never printed.
#[derive(Clone)]
pub struct Secret(Arc<Zeroizing<String>>);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(Arc::new(Zeroizing::new(value)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What a command reads on its standard input: `bytes` first, then the file's contents
/// (streamed, so large files take constant memory).
#[derive(Default)]
pub struct Stdin {
    pub bytes: Zeroizing<Vec<u8>>,
    pub file: Option<PathBuf>,
}

impl Stdin {
    pub fn none() -> Stdin {
        Stdin::default()
    }

    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Stdin {
        Stdin {
            bytes: Zeroizing::new(bytes.into()),
            file: None,
        }
    }

    pub fn file(path: PathBuf) -> Stdin {
        Stdin {
            bytes: Zeroizing::new(Vec::new()),
            file: Some(path),
        }
    }
}

/// What a command did.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// The exit status; `None` when the command died by a signal or the connection dropped.
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Why the connection dropped before the command exited; the output is what arrived.
    pub lost: Option<String>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last `lines` lines of standard error, for error messages.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("{0}")]
    HostKey(String),
    #[error("authentication as {user} at {target} failed: {reason}")]
    Authentication {
        user: String,
        target: String,
        reason: String,
    },
    #[error("connection to {target} lost: {reason}")]
    Lost { target: String, reason: String },
    #[error("{0}")]
    Io(String),
}

impl TransportError {
    /// True when retrying the connection may help (the host may be booting).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TransportError::Connect { .. } | TransportError::Lost { .. }
        )
    }
}

/// A bidirectional byte stream (a TCP connection, or one tunnelled through SSH).
pub trait Tunnel: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Tunnel for T {}

#[async_trait]
pub trait Transport: Send + Sync {
    /// Runs `command_line` with the host's POSIX shell, feeding it `stdin`.
    async fn run(&self, command_line: &str, stdin: Stdin) -> Result<Output, TransportError>;

    /// Like [`Transport::run`], but the standard output goes to `sink` as it arrives and is
    /// not kept: downloads of any size in constant memory. This default keeps it first;
    /// transports whose outputs can be large stream it.
    async fn run_to(
        &self,
        command_line: &str,
        stdin: Stdin,
        sink: &mut (dyn std::io::Write + Send),
    ) -> Result<Output, TransportError> {
        let mut output = self.run(command_line, stdin).await?;
        sink.write_all(&output.stdout)
            .map_err(|e| TransportError::Io(e.to_string()))?;
        output.stdout.clear();
        Ok(output)
    }

    /// Opens a TCP connection to `host:port` as seen from the host.
    async fn connect_tcp(&self, host: &str, port: u16) -> Result<Box<dyn Tunnel>, TransportError>;

    /// Where this transport leads, for messages.
    fn target(&self) -> String;
}

/// Quotes a string for a POSIX shell.
pub fn quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        return text.to_owned();
    }
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// How privileged steps run on a host.
#[derive(Debug, Clone)]
pub enum Privilege {
    /// The login user is root.
    Root,
    /// sudo without a password (NOPASSWD).
    Sudo,
    /// sudo with a password, given on standard input.
    SudoPassword(Secret),
}

/// A connected host: commands, privilege and files.
#[derive(Clone)]
pub struct Session {
    transport: Arc<dyn Transport>,
    privilege: Privilege,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.transport.target())
            .field("privilege", &self.privilege)
            .finish()
    }
}

impl Session {
    pub fn new(transport: Arc<dyn Transport>, privilege: Privilege) -> Session {
        Session {
            transport,
            privilege,
        }
    }

    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    pub fn privilege(&self) -> &Privilege {
        &self.privilege
    }

    /// Runs a shell script, as root when `privileged`. A connection lost before the script
    /// exited is an error.
    pub async fn exec(
        &self,
        script: &str,
        stdin: Stdin,
        privileged: bool,
    ) -> Result<Output, TransportError> {
        let output = self.exec_partial(script, stdin, privileged).await?;
        match output.lost {
            Some(reason) => Err(TransportError::Lost {
                target: self.transport.target(),
                reason,
            }),
            None => Ok(output),
        }
    }

    /// Like [`Session::exec`], but a lost connection returns what arrived before it dropped
    /// (with `lost` set), for scripts that report their progress as they go.
    pub async fn exec_partial(
        &self,
        script: &str,
        mut stdin: Stdin,
        privileged: bool,
    ) -> Result<Output, TransportError> {
        let command_line = self.command_line(script, &mut stdin, privileged);
        self.transport.run(&command_line, stdin).await
    }

    /// Runs a script (as root when `privileged`) whose standard output is written to `sink` as
    /// it arrives: a download. A connection lost before the script exited is an error.
    pub async fn exec_to(
        &self,
        script: &str,
        privileged: bool,
        sink: &mut (dyn std::io::Write + Send),
    ) -> Result<Output, TransportError> {
        let mut stdin = Stdin::none();
        let command_line = self.command_line(script, &mut stdin, privileged);
        let output = self.transport.run_to(&command_line, stdin, sink).await?;
        match output.lost {
            Some(reason) => Err(TransportError::Lost {
                target: self.transport.target(),
                reason,
            }),
            None => Ok(output),
        }
    }

    fn command_line(&self, script: &str, stdin: &mut Stdin, privileged: bool) -> String {
        match (&self.privilege, privileged) {
            (Privilege::Root, _) | (_, false) => format!("sh -c {}", quote(script)),
            (Privilege::Sudo, true) => format!("sudo -n -- sh -c {}", quote(script)),
            (Privilege::SudoPassword(password), true) => {
                // -k: always ask, so the password line is always consumed by sudo and never
                // reaches the script; -S: read it from standard input; -p '': no prompt text.
                let mut bytes = Zeroizing::new(Vec::with_capacity(
                    password.expose().len() + 1 + stdin.bytes.len(),
                ));
                bytes.extend_from_slice(password.expose().as_bytes());
                bytes.push(b'\n');
                bytes.extend_from_slice(&stdin.bytes);
                stdin.bytes = bytes;
                format!("sudo -k -S -p '' -- sh -c {}", quote(script))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("simple/path-1.conf"), "simple/path-1.conf");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::new("hunter2".into());
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
    }
}
