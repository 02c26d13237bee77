//! The cluster the console works on, as pages need it without slowing down: its configuration,
//! read again only when the file changes, and its health, observed in the background (over
//! SSH, as `kinit status` does) so a page never waits for a host that does not answer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use kinit::config::LoadedCluster;
use kinit::ops::status::ClusterStatus;
use tokio::sync::Notify;

use crate::operations::Clock;

/// The configuration file, parsed once per change (size and modification time).
pub struct Configuration {
    path: PathBuf,
    cached: Mutex<Option<(SystemTime, u64, Arc<LoadedCluster>)>>,
}

impl Configuration {
    pub fn new(path: PathBuf) -> Configuration {
        Configuration {
            path,
            cached: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cluster, or why the file cannot be used (each problem with its line and column).
    pub fn load(&self) -> Result<Arc<LoadedCluster>, String> {
        let unusable = |e: &dyn std::fmt::Display| {
            format!(
                "The cluster configuration {} cannot be used: {e}",
                self.path.display()
            )
        };
        let meta = std::fs::metadata(&self.path).map_err(|e| unusable(&e))?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((modified, len, loaded)) = cached.as_ref()
            && (*modified, *len) == stamp
        {
            return Ok(loaded.clone());
        }
        let loaded = Arc::new(kinit::config::load(&self.path).map_err(|e| unusable(&e))?);
        *cached = Some((stamp.0, stamp.1, loaded.clone()));
        Ok(loaded)
    }
}

/// One look at the cluster's health.
pub struct Observation {
    /// Unix seconds.
    pub at: i64,
    pub status: Result<ClusterStatus, String>,
}

/// The latest observation of the cluster's health, refreshed every `every` and at once when
/// an operation asks (after it changed the cluster).
pub struct Health {
    latest: RwLock<Option<Arc<Observation>>>,
    wake: Notify,
}

/// How long one look may take; a host that does not answer is reported by then.
const LOOK_TIMEOUT: Duration = Duration::from_secs(60);

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health {
            latest: RwLock::new(None),
            wake: Notify::new(),
        })
    }

    pub fn latest(&self) -> Option<Arc<Observation>> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Looks again now rather than at the next tick.
    pub fn refresh(&self) {
        self.wake.notify_one();
    }

    /// Starts looking at the cluster in the background, now and then every `every`.
    pub fn watch(
        self: &Arc<Self>,
        configuration: Arc<Configuration>,
        clock: Clock,
        every: Duration,
    ) {
        let health = self.clone();
        tokio::spawn(async move {
            loop {
                let status = match configuration.load() {
                    Ok(loaded) => look(&loaded).await,
                    Err(e) => Err(e),
                };
                *health.latest.write().unwrap_or_else(|e| e.into_inner()) =
                    Some(Arc::new(Observation {
                        at: clock.now(),
                        status,
                    }));
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = health.wake.notified() => {}
                }
            }
        });
    }
}

async fn look(loaded: &LoadedCluster) -> Result<ClusterStatus, String> {
    let looked = tokio::time::timeout(
        LOOK_TIMEOUT,
        kinit::ops::cluster::status(
            &loaded.cluster,
            kinit::engine::runner::RunOptions::default(),
            &kinit::engine::assets::Assets::default(),
        ),
    )
    .await;
    match looked {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "the hosts did not answer within {} s",
            LOOK_TIMEOUT.as_secs()
        )),
    }
}
