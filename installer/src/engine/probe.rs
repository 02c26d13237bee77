//! Readiness probes for `wait_for`: a TCP connection, or an HTTP(S) GET answered with 2xx,
//! made through the host's transport (so an address such as 127.0.0.1:6443 means the host's
//! own loopback, reached over SSH) and verified against a CA the operator holds.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::transport::{Transport, Tunnel};

/// A parsed `http(s)://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("{text:?} is not an http or https URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => (
                host.trim_start_matches('[').trim_end_matches(']'),
                port.parse::<u16>()
                    .map_err(|_| format!("{text:?}: bad port {port:?}"))?,
            ),
            _ => (authority, if https { 443 } else { 80 }),
        };
        Ok(Url {
            https,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

/// TLS settings for an https probe.
pub struct TlsFiles<'a> {
    pub ca: Option<&'a Path>,
    pub client_cert: Option<&'a Path>,
    pub client_key: Option<&'a Path>,
}

fn tls_config(files: &TlsFiles<'_>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = files
        .ca
        .ok_or("an https probe needs `ca`, the PEM file of the CA that signs the server")?;
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match (files.client_cert, files.client_key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("{}: {e}", cert.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

async fn get(
    stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin),
    url: &Url,
) -> Result<u16, String> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: kinit\r\n\r\n",
        url.path, url.host
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP answer: {:?}",
                line.lines().next().unwrap_or_default()
            )
        })
}

/// One HTTP(S) GET; returns the status code.
pub async fn http_status(
    transport: &dyn Transport,
    url: &Url,
    tls: &TlsFiles<'_>,
) -> Result<u16, String> {
    let mut stream: Box<dyn Tunnel> = transport
        .connect_tcp(&url.host, url.port)
        .await
        .map_err(|e| e.to_string())?;
    if !url.https {
        return get(&mut stream, url).await;
    }
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(tls)?));
    let name = ServerName::try_from(url.host.clone()).map_err(|e| format!("{}: {e}", url.host))?;
    let mut tls_stream = connector
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    get(&mut tls_stream, url).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let url = Url::parse("https://127.0.0.1:6443/readyz").unwrap();
        assert_eq!(
            url,
            Url {
                https: true,
                host: "127.0.0.1".into(),
                port: 6443,
                path: "/readyz".into()
            }
        );
        assert_eq!(Url::parse("http://node1").unwrap().port, 80);
        assert_eq!(Url::parse("https://[::1]:6443/x").unwrap().host, "::1");
        assert!(Url::parse("ftp://x").is_err());
    }
}
