//! Operations: what kinit does, as library calls that both front ends (the `kinit` command line
//! and the web console) use. Each combines the PKI, the configuration and, for work on hosts,
//! the engine.

pub mod api_proxy;
pub mod backup;
pub mod bootstrap;
pub mod certs;
pub mod cluster;
pub mod etcd_snapshot;
pub mod inventory;
pub mod local;
pub mod lock;
pub mod node;
pub mod preflight;
pub mod schedule;
pub mod sealed;
pub mod status;
pub mod upgrade;
pub mod upload_certs;
