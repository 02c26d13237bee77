//! `kinit-console -c cluster.yaml [--listen ADDR]`: serves the console over HTTPS.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use axum::extract::ConnectInfo;
use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;

use kinit_console::{Console, db::Db, router, tls};

/// kinit's web console: day-2 operations on one cluster, in the browser.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The cluster configuration file (as for `kinit -c`).
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        env = "KINIT_CONFIG",
        default_value = "cluster.yaml"
    )]
    config: PathBuf,
    /// Address and port to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The console's directory: its database, and its certificate when generated
    /// [default: console/ in the cluster's state directory].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The server certificate (PEM) to serve instead of one signed by a generated console CA.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The server certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kinit_console=info".into()),
        )
        .init();
    let args = Args::parse();
    let loaded = kinit::config::load(&args.config)?;
    let dir = args.dir.unwrap_or_else(|| {
        kinit::state::StateDir::beside(&loaded.path, loaded.cluster.name())
            .root()
            .join("console")
    });
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    let (cert, key) = tls::certificate(
        args.tls_cert.zip(args.tls_key),
        &dir,
        &tls::names_for(args.listen.ip()),
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(&cert, &key)?);
    let db = Db::open(&dir.join("console.db"))?;
    let app = router(Console::new(db, args.config.clone()));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(
        "serving https://{} (certificate {}); first visit sets up the administrator",
        args.listen,
        cert.display()
    );
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accepting a connection: {e}");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone().layer(axum::Extension(ConnectInfo(peer)));
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(app))
                .await;
            if let Err(e) = served {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
}
