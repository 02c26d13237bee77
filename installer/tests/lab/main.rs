//! Tests on the lab: real node containers with systemd and sshd under a real docker engine.
//! They need root and Debian 12 (kinit installs docker.io and debootstrap when missing) and
//! run one at a time (`scripts/test` runs this binary with one test thread), since they share
//! the machine's docker daemon and kernel settings.

mod support;

mod backup;
mod bundle_lab;
mod cluster;
mod console;
mod engine;
mod lab_lifecycle;
mod upgrade;
mod vagrant;
