//! SSH with russh: one connection per host, reused for every command (each on its own channel,
//! multiplexed), with keepalives, a connect timeout and retries with backoff. Host keys are
//! verified (see [`super::hostkeys`]); users authenticate with the ssh-agent's keys, key files
//! (encrypted ones with a passphrase asked once) or a password; jump hosts chain through
//! direct-tcpip channels, each hop verified and authenticated in turn.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::client::{self, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect};
use tokio::io::AsyncReadExt;

use super::hostkeys::{self, Verdict};
use super::{Output, Secret, Stdin, Transport, TransportError, Tunnel};
use crate::engine::inventory::{Connection, Jump};

/// Asks for the passphrase of an encrypted key file (the CLI prompts on the terminal).
pub type PassphraseSource = Arc<dyn Fn(&Path) -> Option<Secret> + Send + Sync>;

/// How connections are made, shared by every host of a run.
#[derive(Clone)]
pub struct SshOptions {
    /// Pin unknown host keys on first use, recording them in kinit's known_hosts.
    pub accept_new_host_keys: bool,
    /// A password for SSH password authentication, tried after keys.
    pub password: Option<Secret>,
    pub passphrase: Option<PassphraseSource>,
    pub connect_timeout: Duration,
    /// Connection attempts before giving up (with 0.5 s, 1 s, 2 s … between them).
    pub attempts: u32,
    /// Whether to use the ssh-agent named by SSH_AUTH_SOCK.
    pub use_agent: bool,
}

impl Default for SshOptions {
    fn default() -> SshOptions {
        SshOptions {
            accept_new_host_keys: false,
            password: None,
            passphrase: None,
            connect_timeout: Duration::from_secs(10),
            attempts: 4,
            use_agent: true,
        }
    }
}

/// Verifies the server's host key during key exchange and remembers why it refused.
struct Verifier {
    host: String,
    port: u16,
    files: Vec<PathBuf>,
    accept_new: bool,
    refusal: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key: &PublicKey = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key,
            russh::keys::PublicKeyOrCertificate::Certificate(_) => {
                *self.refusal.lock().expect("not poisoned") = Some(format!(
                    "{}:{} presents a host certificate; kinit verifies plain host keys only",
                    self.host, self.port
                ));
                return Ok(false);
            }
        };
        let refuse = |message: String| {
            *self.refusal.lock().expect("not poisoned") = Some(message);
            Ok(false)
        };
        match hostkeys::verify(&self.host, self.port, key, &self.files) {
            Verdict::Known => Ok(true),
            Verdict::Changed { file, line } => refuse(hostkeys::changed_message(
                &self.host, self.port, key, &file, line,
            )),
            Verdict::Unknown if self.accept_new => {
                let own = hostkeys::kinit_known_hosts();
                match hostkeys::learn(&self.host, self.port, key, &own) {
                    Ok(()) => {
                        tracing::warn!(
                            "trusting the new host key of {}:{} ({}), recorded in {}",
                            self.host,
                            self.port,
                            hostkeys::fingerprint(key),
                            own.display()
                        );
                        Ok(true)
                    }
                    Err(e) => refuse(format!(
                        "cannot record the host key of {}:{}: {e}",
                        self.host, self.port
                    )),
                }
            }
            Verdict::Unknown => refuse(hostkeys::unknown_message(&self.host, self.port, key)),
        }
    }
}

/// A hop: whom to log in as, where.
struct Hop {
    user: String,
    address: String,
    port: u16,
}

pub struct SshTransport {
    target: String,
    handle: Handle<Verifier>,
    /// Jump hosts the connection runs through; kept open as long as it is.
    _jumps: Vec<Handle<Verifier>>,
}

impl SshTransport {
    /// Connects to a host (through its jump hosts), verifying every host key and
    /// authenticating at every hop.
    pub async fn connect(
        connection: &Connection,
        options: &SshOptions,
    ) -> Result<SshTransport, TransportError> {
        let Connection::Ssh {
            address,
            port,
            user,
            identity_files,
            jumps,
            known_hosts_files,
        } = connection
        else {
            return Err(TransportError::Io("not an SSH connection".into()));
        };
        let mut files = vec![hostkeys::kinit_known_hosts()];
        files.extend(hostkeys::user_known_hosts());
        files.extend(known_hosts_files.iter().cloned());
        let hops: Vec<Hop> = jumps
            .iter()
            .map(
                |Jump {
                     user,
                     address,
                     port,
                 }| Hop {
                    user: user.clone(),
                    address: address.clone(),
                    port: *port,
                },
            )
            .chain(std::iter::once(Hop {
                user: user.clone(),
                address: address.clone(),
                port: *port,
            }))
            .collect();

        let config = Arc::new(client::Config {
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            inactivity_timeout: None,
            nodelay: true,
            // Larger windows and packets: binaries of 100 MB stream at disk speed.
            window_size: 8 * 1024 * 1024,
            maximum_packet_size: 65535,
            // AES-GCM first: it runs on the CPU's AES instructions; ChaCha20 remains for hosts
            // that prefer it.
            preferred: russh::Preferred {
                cipher: std::borrow::Cow::Borrowed(&[
                    russh::cipher::AES_256_GCM,
                    russh::cipher::AES_128_GCM,
                    russh::cipher::CHACHA20_POLY1305,
                    russh::cipher::AES_256_CTR,
                    russh::cipher::AES_128_CTR,
                ]),
                ..russh::Preferred::DEFAULT
            },
            ..Default::default()
        });
        let mut kept: Vec<Handle<Verifier>> = Vec::new();
        let mut previous: Option<Handle<Verifier>> = None;
        for hop in &hops {
            let target = format!("{}@{}:{}", hop.user, hop.address, hop.port);
            let refusal = Arc::new(Mutex::new(None));
            let make_verifier = || Verifier {
                host: hop.address.clone(),
                port: hop.port,
                files: files.clone(),
                accept_new: options.accept_new_host_keys,
                refusal: refusal.clone(),
            };
            let mut handle = match &previous {
                None => connect_with_retry(&config, hop, options, make_verifier, &refusal).await?,
                Some(through) => {
                    let channel = through
                        .channel_open_direct_tcpip(
                            hop.address.clone(),
                            u32::from(hop.port),
                            "127.0.0.1",
                            0,
                        )
                        .await
                        .map_err(|e| TransportError::Connect {
                            target: target.clone(),
                            reason: format!("the jump host could not open a connection to it: {e}"),
                        })?;
                    let connected = tokio::time::timeout(
                        options.connect_timeout,
                        client::connect_stream(
                            config.clone(),
                            channel.into_stream(),
                            make_verifier(),
                        ),
                    )
                    .await;
                    match connected {
                        Ok(Ok(handle)) => handle,
                        Ok(Err(e)) => return Err(connect_error(&target, &e, &refusal)),
                        Err(_) => {
                            return Err(TransportError::Connect {
                                target,
                                reason: format!(
                                    "no SSH handshake within {} s",
                                    options.connect_timeout.as_secs()
                                ),
                            });
                        }
                    }
                }
            };
            authenticate(&mut handle, &hop.user, &target, identity_files, options).await?;
            if let Some(through) = previous.take() {
                kept.push(through);
            }
            previous = Some(handle);
        }
        let handle = previous.expect("at least the host itself is a hop");
        let target = match jumps.len() {
            0 => format!("{user}@{address}:{port}"),
            n => format!(
                "{user}@{address}:{port} (through {n} jump host{})",
                if n == 1 { "" } else { "s" }
            ),
        };
        Ok(SshTransport {
            target,
            handle,
            _jumps: kept,
        })
    }

    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

fn connect_error(
    target: &str,
    error: &russh::Error,
    refusal: &Mutex<Option<String>>,
) -> TransportError {
    if let Some(message) = refusal.lock().expect("not poisoned").take() {
        return TransportError::HostKey(message);
    }
    TransportError::Connect {
        target: target.to_owned(),
        reason: error.to_string(),
    }
}

async fn connect_with_retry(
    config: &Arc<client::Config>,
    hop: &Hop,
    options: &SshOptions,
    make_verifier: impl Fn() -> Verifier,
    refusal: &Mutex<Option<String>>,
) -> Result<Handle<Verifier>, TransportError> {
    let target = format!("{}@{}:{}", hop.user, hop.address, hop.port);
    let mut delay = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        let result = tokio::time::timeout(
            options.connect_timeout,
            client::connect(
                config.clone(),
                (hop.address.as_str(), hop.port),
                make_verifier(),
            ),
        )
        .await;
        let error = match result {
            Ok(Ok(handle)) => return Ok(handle),
            Ok(Err(e)) => connect_error(&target, &e, refusal),
            Err(_) => TransportError::Connect {
                target: target.clone(),
                reason: format!("no answer within {} s", options.connect_timeout.as_secs()),
            },
        };
        // A refused host key will not change by retrying.
        if !error.is_transient() || attempt >= options.attempts {
            return Err(match error {
                TransportError::Connect { target, reason } if attempt > 1 => {
                    TransportError::Connect {
                        target,
                        reason: format!("{reason} (after {attempt} attempts)"),
                    }
                }
                other => other,
            });
        }
        tracing::debug!("connecting to {target} failed ({error}); retrying in {delay:?}");
        tokio::time::sleep(delay).await;
        delay *= 2;
        attempt += 1;
    }
}

/// The key files OpenSSH would offer by default.
fn default_identity_files() -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME") else {
        return Vec::new();
    };
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|name| PathBuf::from(&home).join(".ssh").join(name))
        .filter(|p| p.is_file())
        .collect()
}

fn load_key(file: &Path, options: &SshOptions) -> Result<russh::keys::PrivateKey, String> {
    match russh::keys::load_secret_key(file, None) {
        Ok(key) => Ok(key),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            let passphrase = options
                .passphrase
                .as_ref()
                .and_then(|ask| ask(file))
                .ok_or_else(|| {
                    format!(
                        "{} is encrypted and no passphrase was given",
                        file.display()
                    )
                })?;
            russh::keys::load_secret_key(file, Some(passphrase.expose()))
                .map_err(|e| format!("{}: cannot decrypt: {e}", file.display()))
        }
        Err(e) => Err(format!("{}: {e}", file.display())),
    }
}

async fn authenticate(
    handle: &mut Handle<Verifier>,
    user: &str,
    target: &str,
    identity_files: &[PathBuf],
    options: &SshOptions,
) -> Result<(), TransportError> {
    let mut tried: Vec<String> = Vec::new();
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    if options.use_agent
        && std::env::var_os("SSH_AUTH_SOCK").is_some()
        && let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await
    {
        let identities = agent.request_identities().await.unwrap_or_default();
        for identity in identities {
            let russh::keys::agent::AgentIdentity::PublicKey { key, comment } = identity else {
                continue;
            };
            let result = handle
                .authenticate_publickey_with(user, key.clone(), rsa_hash, &mut agent)
                .await;
            if matches!(result, Ok(r) if r.success()) {
                return Ok(());
            }
            tried.push(format!(
                "agent key {}",
                if comment.is_empty() {
                    hostkeys::fingerprint(&key)
                } else {
                    comment
                }
            ));
        }
    }
    let files = if identity_files.is_empty() {
        default_identity_files()
    } else {
        identity_files.to_vec()
    };
    for file in &files {
        let key = match load_key(file, options) {
            Ok(key) => key,
            Err(reason) => {
                tried.push(reason);
                continue;
            }
        };
        let hash = if key.algorithm().is_rsa() {
            rsa_hash
        } else {
            None
        };
        let result = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| TransportError::Lost {
                target: target.to_owned(),
                reason: e.to_string(),
            })?;
        if result.success() {
            return Ok(());
        }
        tried.push(format!("key {} (not accepted)", file.display()));
    }
    if let Some(password) = &options.password {
        let result = handle
            .authenticate_password(user, password.expose())
            .await
            .map_err(|e| TransportError::Lost {
                target: target.to_owned(),
                reason: e.to_string(),
            })?;
        if result.success() {
            return Ok(());
        }
        tried.push("password (not accepted)".into());
    }
    Err(TransportError::Authentication {
        user: user.to_owned(),
        target: target.to_owned(),
        reason: if tried.is_empty() {
            "no key or password to offer: set ssh.identityFile, load a key into ssh-agent, or give a password".into()
        } else {
            format!(
                "tried {}; check ssh.user and ssh.identityFile, and the user's authorized_keys",
                tried.join(", ")
            )
        },
    })
}

#[async_trait]
impl Transport for SshTransport {
    async fn run(&self, command_line: &str, stdin: Stdin) -> Result<Output, TransportError> {
        self.run_with(command_line, stdin, None).await
    }

    async fn run_to(
        &self,
        command_line: &str,
        stdin: Stdin,
        sink: &mut (dyn std::io::Write + Send),
    ) -> Result<Output, TransportError> {
        self.run_with(command_line, stdin, Some(sink)).await
    }

    async fn connect_tcp(&self, host: &str, port: u16) -> Result<Box<dyn Tunnel>, TransportError> {
        let channel = self
            .handle
            .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
            .await
            .map_err(|e| TransportError::Connect {
                target: format!("{host}:{port} from {}", self.target),
                reason: e.to_string(),
            })?;
        Ok(Box::new(channel.into_stream()))
    }

    fn target(&self) -> String {
        self.target.clone()
    }
}

impl SshTransport {
    /// Runs a command; its standard output is kept, or written to `sink` as it arrives.
    async fn run_with(
        &self,
        command_line: &str,
        stdin: Stdin,
        mut sink: Option<&mut (dyn std::io::Write + Send)>,
    ) -> Result<Output, TransportError> {
        let lost = |e: russh::Error| TransportError::Lost {
            target: self.target.clone(),
            reason: e.to_string(),
        };
        let channel = self.handle.channel_open_session().await.map_err(lost)?;
        channel.exec(true, command_line).await.map_err(lost)?;
        let (mut reader, writer) = channel.split();
        let feed = async {
            // The command may exit without reading its input; a refused write is not an error.
            if !stdin.bytes.is_empty() {
                let _ = writer.data(&stdin.bytes[..]).await;
            }
            if let Some(path) = &stdin.file {
                let mut file = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| TransportError::Io(format!("{}: {e}", path.display())))?;
                // Large reads: each becomes a few full-size SSH packets.
                let mut buffer = vec![0u8; 256 * 1024];
                loop {
                    let n = file
                        .read(&mut buffer)
                        .await
                        .map_err(|e| TransportError::Io(format!("{}: {e}", path.display())))?;
                    if n == 0 || writer.data(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            }
            let _ = writer.eof().await;
            Ok::<(), TransportError>(())
        };
        let collect = async {
            let mut output = Output::default();
            let mut exited = false;
            let mut sink_error = None;
            while let Some(message) = reader.wait().await {
                match message {
                    ChannelMsg::Data { data } => match sink.as_mut() {
                        Some(sink) if sink_error.is_none() => {
                            if let Err(e) = sink.write_all(&data) {
                                sink_error = Some(e);
                            }
                        }
                        Some(_) => {}
                        None => output.stdout.extend_from_slice(&data),
                    },
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        output.stderr.extend_from_slice(&data)
                    }
                    ChannelMsg::ExitStatus { exit_status } => {
                        output.status = Some(exit_status);
                        exited = true;
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        output.stderr.extend_from_slice(
                            format!("killed by signal {signal_name:?}\n").as_bytes(),
                        );
                        exited = true;
                    }
                    _ => {}
                }
            }
            (output, exited, sink_error)
        };
        // The input is fed while the output is collected. When the channel ends first (the
        // command exited without reading everything, or the host went away), the feeding stops
        // too: a write waiting for window space on a dead connection would wait forever.
        tokio::pin!(feed, collect);
        let mut fed = None;
        let (mut output, exited, sink_error) = loop {
            tokio::select! {
                result = &mut feed, if fed.is_none() => fed = Some(result),
                collected = &mut collect => break collected,
            }
        };
        if let Some(result) = fed {
            result?;
        }
        if let Some(e) = sink_error {
            return Err(TransportError::Io(format!(
                "writing what {} sent: {e}",
                self.target
            )));
        }
        if !exited {
            output.lost = Some("the channel closed before the command exited".into());
        }
        Ok(output)
    }
}
