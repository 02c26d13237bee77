//! The node-local API load balancer (`kinit node api-proxy`), run on workers of clusters with
//! several control planes and no load balancer of their own: the kubelet and kube-proxy talk
//! to 127.0.0.1:6443, and each connection goes to the first control plane that accepts it,
//! starting from a different one each time. A control plane that refused recently is tried
//! last, so that losing one costs a node at most one connection attempt.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a backend that refused stays at the back of the line.
const PENALTY: Duration = Duration::from_secs(10);

struct Backends {
    addresses: Vec<SocketAddr>,
    failed_at: Mutex<Vec<Option<Instant>>>,
    next: AtomicUsize,
}

impl Backends {
    /// The order to try backends in for one connection.
    fn order(&self) -> Vec<usize> {
        let n = self.addresses.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let failed = self.failed_at.lock().expect("not poisoned");
        let mut order: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
        order.sort_by_key(|i| failed[*i].is_some_and(|at| at.elapsed() < PENALTY));
        order
    }

    fn mark(&self, index: usize, failed: bool) {
        self.failed_at.lock().expect("not poisoned")[index] = failed.then(Instant::now);
    }
}

/// Serves until the listener fails.
pub async fn serve(listen: SocketAddr, backends: Vec<SocketAddr>) -> std::io::Result<()> {
    if backends.is_empty() {
        return Err(std::io::Error::other("no backends given"));
    }
    let listener = TcpListener::bind(listen).await?;
    let backends = Arc::new(Backends {
        failed_at: Mutex::new(vec![None; backends.len()]),
        addresses: backends,
        next: AtomicUsize::new(0),
    });
    loop {
        let (mut client, peer) = listener.accept().await?;
        let backends = backends.clone();
        tokio::spawn(async move {
            for index in backends.order() {
                let address = backends.addresses[index];
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
                    Ok(Ok(mut server)) => {
                        backends.mark(index, false);
                        let _ = server.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        return;
                    }
                    _ => {
                        tracing::warn!(
                            "{address} refused a connection from {peer}; trying the next control plane"
                        );
                        backends.mark(index, true);
                    }
                }
            }
            tracing::error!("no control plane accepted the connection from {peer}");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server(reply: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4];
                    let _ = socket.read_exact(&mut buf).await;
                    let _ = socket.write_all(reply).await;
                });
            }
        });
        address
    }

    #[tokio::test]
    async fn skips_a_dead_backend_and_spreads_connections() {
        // A port nothing listens on: bind, note it, close.
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let a = echo_server(b"a").await;
        let b = echo_server(b"b").await;
        let listen = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        tokio::spawn(serve(listen, vec![dead, a, b]));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut answers = Vec::new();
        for _ in 0..6 {
            let mut client = TcpStream::connect(listen).await.unwrap();
            client.write_all(b"ping").await.unwrap();
            let mut reply = [0u8; 1];
            client.read_exact(&mut reply).await.unwrap();
            answers.push(reply[0]);
        }
        assert!(
            answers.contains(&b'a') && answers.contains(&b'b'),
            "{answers:?}"
        );
    }
}
