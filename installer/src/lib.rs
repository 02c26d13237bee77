//! kinit's library: the cluster configuration, the operations that install and run clusters,
//! and the pieces they are built from. The `kinit` binary and the web console are thin front
//! ends over [`ops`].

pub mod bundle;
pub mod config;
pub mod engine;
pub mod kubeconfig;
pub mod lab;
pub mod ops;
pub mod state;
pub mod topology;
pub mod yaml;
