//! etcd's snapshot stream (the gRPC call `Maintenance.Snapshot`), read through a host's
//! transport: for SSH, a direct-tcpip channel to the member's 127.0.0.1:2379, so the member's
//! port never has to be reachable from the operator's machine.
//!
//! The stream is written straight into the operator's file while it is hashed. etcd ends the
//! stream with the sha256 of the database it sent; that trailing checksum stays in the file
//! (as in `etcdctl snapshot save`'s files, which `etcdctl snapshot restore` checks) and is
//! compared here against what arrived. Taking the snapshot, copying it and checking its
//! checksum is therefore one pass over the data instead of three.
//!
//! Only the two messages of this one call are declared here, with prost's derive macros: the
//! etcd-client crate generates its whole API from .proto files at build time, which needs
//! `protoc` on every machine that builds kinit.

use std::io::Write;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::engine::probe::{TlsFiles, tls_config};
use crate::engine::transport::{Transport, Tunnel};

/// etcdserverpb.SnapshotRequest: no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotRequest {}

/// etcdserverpb.ResponseHeader.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    #[prost(int64, tag = "3")]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

/// etcdserverpb.SnapshotResponse.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(uint64, tag = "2")]
    pub remaining_bytes: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub blob: Vec<u8>,
}

/// What was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Bytes written, etcd's trailing checksum included.
    pub size: u64,
    /// sha256 of the whole file as written.
    pub sha256: String,
    /// The revision in the stream's first header (0 when the member sent none).
    pub revision: i64,
}

/// The length of etcd's trailing checksum.
const CHECKSUM_LEN: usize = 32;

/// Hashes a stream whose last 32 bytes are the sha256 of everything before them, in one pass:
/// the newest 32 bytes are held back until more arrive.
#[derive(Default)]
pub(crate) struct TrailingChecksum {
    body: Sha256,
    held: Vec<u8>,
    size: u64,
}

impl TrailingChecksum {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        let total = self.held.len() + bytes.len();
        if total <= CHECKSUM_LEN {
            self.held.extend_from_slice(bytes);
            return;
        }
        let release = total - CHECKSUM_LEN;
        let from_held = release.min(self.held.len());
        self.body.update(&self.held[..from_held]);
        let from_bytes = release - from_held;
        self.body.update(&bytes[..from_bytes]);
        let mut held = self.held.split_off(from_held);
        held.extend_from_slice(&bytes[from_bytes..]);
        self.held = held;
    }

    /// The whole stream's sha256, or what is wrong with its trailing checksum.
    pub(crate) fn finish(self) -> Result<(String, u64), String> {
        if self.held.len() < CHECKSUM_LEN {
            return Err(format!(
                "the stream ended after {} bytes, before etcd's checksum",
                self.size
            ));
        }
        let body = self.body.clone().finalize();
        if body.as_slice() != self.held.as_slice() {
            return Err(format!(
                "etcd's checksum {} does not match the {} bytes received, whose sha256 is {}",
                hex::encode(&self.held),
                self.size - CHECKSUM_LEN as u64,
                hex::encode(body)
            ));
        }
        let mut whole = self.body;
        whole.update(&self.held);
        Ok((hex::encode(whole.finalize()), self.size))
    }
}

/// Streams a snapshot from the etcd member listening on `127.0.0.1:2379` as seen from
/// `transport`'s host into `out`, with mutual TLS from `tls` (the member's certificate must
/// name `localhost`, as kubeadm's etcd server certificates do).
pub async fn stream(
    transport: &dyn Transport,
    tls: &TlsFiles<'_>,
    out: &mut (dyn Write + Send),
) -> Result<Snapshot, String> {
    let tunnel: Box<dyn Tunnel> = transport
        .connect_tcp("127.0.0.1", 2379)
        .await
        .map_err(|e| format!("connecting to etcd's client port: {e}"))?;
    let mut config = tls_config(tls)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from("localhost").expect("a valid name");
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, tunnel)
        .await
        .map_err(|e| format!("TLS with etcd: {e}"))?;

    // tonic dials through a connector; this one hands out the connection made above, once.
    let ready = Arc::new(Mutex::new(Some(hyper_util::rt::TokioIo::new(stream))));
    let connector = tower::service_fn(move |_: http::Uri| {
        let connection = ready.lock().expect("not poisoned").take();
        async move { connection.ok_or_else(|| std::io::Error::other("etcd's connection was lost")) }
    });
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("gRPC with etcd: {e}"))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| format!("gRPC with etcd: {e}"))?;
    let mut responses = grpc
        .server_streaming(
            tonic::Request::new(SnapshotRequest {}),
            http::uri::PathAndQuery::from_static("/etcdserverpb.Maintenance/Snapshot"),
            tonic_prost::ProstCodec::<SnapshotRequest, SnapshotResponse>::default(),
        )
        .await
        .map_err(|status| format!("etcd refused the snapshot: {}", status.message()))?
        .into_inner();

    let mut checksum = TrailingChecksum::default();
    let mut revision = None;
    loop {
        let message = responses
            .message()
            .await
            .map_err(|status| format!("the snapshot stream broke: {}", status.message()))?;
        let Some(message) = message else { break };
        if revision.is_none() {
            revision = message.header.as_ref().map(|h| h.revision);
        }
        out.write_all(&message.blob)
            .map_err(|e| format!("writing the snapshot: {e}"))?;
        checksum.update(&message.blob);
    }
    let (sha256, size) = checksum.finish()?;
    Ok(Snapshot {
        size,
        sha256,
        revision: revision.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_checksum(body: &[u8]) -> Vec<u8> {
        let mut stream = body.to_vec();
        stream.extend_from_slice(&Sha256::digest(body));
        stream
    }

    #[test]
    fn the_trailing_checksum_is_checked_however_the_stream_is_cut() {
        let body: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let stream = with_checksum(&body);
        let whole = hex::encode(Sha256::digest(&stream));
        for chunk in [1, 5, 31, 32, 33, 64, 4096, stream.len()] {
            let mut checksum = TrailingChecksum::default();
            for piece in stream.chunks(chunk) {
                checksum.update(piece);
            }
            assert_eq!(
                checksum.finish(),
                Ok((whole.clone(), stream.len() as u64)),
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn a_damaged_or_truncated_stream_is_refused() {
        let mut stream = with_checksum(b"an etcd database");
        stream[3] ^= 1;
        let mut checksum = TrailingChecksum::default();
        checksum.update(&stream);
        assert!(checksum.finish().unwrap_err().contains("does not match"));

        let mut checksum = TrailingChecksum::default();
        checksum.update(&[0; 20]);
        assert!(
            checksum
                .finish()
                .unwrap_err()
                .contains("before etcd's checksum")
        );
    }
}
