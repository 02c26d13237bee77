//! kinit's integration tests that need no lab: the configuration loader, the PKI checked by
//! openssl, a real etcd and a real kubectl. One binary, so the library is linked once.
//!
//! The external programs come from Debian (openssl, etcd-server, etcd-client) and Debian's
//! kubernetes-client for kubectl; `scripts/test` installs them and exports their paths. A test
//! whose program is missing fails and says how to install it.

mod support;

mod cli;
mod config_errors;
mod pki_etcd;
mod pki_files;
mod pki_kubectl;
