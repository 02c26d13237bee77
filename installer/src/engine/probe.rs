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

/// Accepts any server certificate. Only for the first fetch of join discovery, whose answer is
/// trusted because it is signed with the bootstrap token and carries the pinned CA.
#[derive(Debug)]
struct UnverifiedServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for UnverifiedServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn unverified_config() -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(UnverifiedServer(provider)))
            .with_no_client_auth(),
    )
}

pub fn tls_config(files: &TlsFiles<'_>) -> Result<rustls::ClientConfig, String> {
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

/// Reads a whole HTTP/1.1 response (the request said `Connection: close`): status and body,
/// with chunked transfer decoded.
async fn read_response(stream: &mut (impl AsyncReadExt + Unpin)) -> Result<(u16, Vec<u8>), String> {
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| e.to_string())?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("an HTTP answer without headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP answer: {:?}",
                head.lines().next().unwrap_or_default()
            )
        })?;
    if head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    }) {
        let mut decoded = Vec::new();
        let mut rest = body.as_slice();
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("a damaged chunked body")?;
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..line_end])
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim(),
                16,
            )
            .map_err(|_| "a damaged chunked body")?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(rest.get(..size).ok_or("a truncated chunked body")?);
            rest = rest.get(size + 2..).unwrap_or_default();
        }
        body = decoded;
    }
    Ok((status, body))
}

/// An HTTPS GET through `transport`: the status and the body. With `unverified`, the server's
/// certificate is not checked (see [`UnverifiedServer`]).
pub async fn http_get(
    transport: &dyn Transport,
    url: &Url,
    tls: &TlsFiles<'_>,
    unverified: bool,
    bearer: Option<&str>,
) -> Result<(u16, Vec<u8>), String> {
    let stream: Box<dyn Tunnel> = transport
        .connect_tcp(&url.host, url.port)
        .await
        .map_err(|e| e.to_string())?;
    let config = if unverified {
        unverified_config()?
    } else {
        tls_config(tls)?
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(url.host.clone()).map_err(|e| format!("{}: {e}", url.host))?;
    let mut stream = connector
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let authorization = bearer
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n{authorization}Connection: close\r\nUser-Agent: kinit\r\n\r\n",
        url.path, url.host
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    read_response(&mut stream).await
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
