//! `kinit-console -c cluster.yaml [--listen ADDR]`: serves the console over HTTPS.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

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
    /// Seal the backups the console takes with the key in FILE (`kinit backup keygen FILE`),
    /// and open them with it for restores.
    #[arg(long, value_name = "FILE", env = "KINIT_BACKUP_KEY_FILE")]
    backup_key_file: Option<PathBuf>,
    /// How often the overview looks at the cluster's health, in seconds.
    #[arg(long, default_value_t = 20)]
    health_interval: u64,
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
    let dir = args
        .dir
        .unwrap_or_else(|| loaded.state_dir().root().join("console"));
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    let (cert, key) = tls::certificate(
        args.tls_cert.zip(args.tls_key),
        &dir,
        &tls::names_for(args.listen.ip()),
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(&cert, &key)?);
    let db = Db::open(&dir.join("console.db"))?;
    let console = Console::with_backup_key(db, args.config.clone(), args.backup_key_file);
    console.watch_health(std::time::Duration::from_secs(args.health_interval.max(1)));
    let app = router(console);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(
        "serving https://{} (certificate {}); first visit sets up the administrator",
        args.listen,
        cert.display()
    );
    kinit_console::server::serve(listener, acceptor, app).await;
    Ok(())
}
