//! kinit's web console: day-2 work in the browser (overview, backups, operations with live
//! logs, audit log, users), a thin front end over the same operations library as the `kinit`
//! command line.

pub mod assets;
pub mod auth;
pub mod cluster;
pub mod day2;
pub mod db;
pub mod operations;
pub mod pages;
pub mod server;
pub mod tls;
pub mod web;

pub use web::{Console, router};
