//! The local machine as a transport, for `kinit init` and `kinit join` run on the node itself.

use std::process::Stdio;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{Output, Stdin, Transport, TransportError, Tunnel};

#[derive(Debug, Default, Clone)]
pub struct LocalTransport;

#[async_trait]
impl Transport for LocalTransport {
    async fn run(&self, command_line: &str, stdin: Stdin) -> Result<Output, TransportError> {
        let io = |e: std::io::Error| TransportError::Io(format!("running a local command: {e}"));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command_line)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(io)?;
        let mut input = child.stdin.take().expect("piped");
        let feed = async move {
            // A command that does not read its input closes the pipe early; that is not an error.
            let _ = input.write_all(&stdin.bytes).await;
            if let Some(path) = &stdin.file {
                let mut file = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| TransportError::Io(format!("{}: {e}", path.display())))?;
                let _ = tokio::io::copy(&mut file, &mut input).await;
            }
            drop(input);
            Ok::<(), TransportError>(())
        };
        let (fed, output) = tokio::join!(feed, child.wait_with_output());
        fed?;
        let output = output.map_err(io)?;
        Ok(Output {
            status: output.status.code().map(|c| c as u32),
            stdout: output.stdout,
            stderr: output.stderr,
            lost: None,
        })
    }

    async fn connect_tcp(&self, host: &str, port: u16) -> Result<Box<dyn Tunnel>, TransportError> {
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| TransportError::Connect {
                target: format!("{host}:{port}"),
                reason: e.to_string(),
            })?;
        Ok(Box::new(stream))
    }

    fn target(&self) -> String {
        "the local machine".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_with_input_and_status() {
        let output = LocalTransport
            .run(
                "read line; echo \"got $line\"; echo oops >&2; exit 3",
                Stdin::bytes("hello\n"),
            )
            .await
            .unwrap();
        assert_eq!(output.status, Some(3));
        assert_eq!(output.stdout_text(), "got hello\n");
        assert_eq!(output.stderr_tail(1), "oops");
    }

    #[tokio::test]
    async fn streams_a_file_after_the_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("data");
        std::fs::write(&file, vec![b'x'; 1 << 20]).unwrap();
        let mut stdin = Stdin::file(file);
        stdin.bytes = zeroize::Zeroizing::new(b"ab".to_vec());
        let output = LocalTransport.run("wc -c", stdin).await.unwrap();
        assert_eq!(output.stdout_text().trim(), ((1 << 20) + 2).to_string());
    }
}
