//! The engine: runs playbooks on hosts. It knows hosts, connections, tasks, files, templates
//! and services, and nothing of Kubernetes; operations give it an inventory, playbooks and
//! variables.

pub mod assets;
pub mod events;
pub mod facts;
pub mod inventory;
pub mod journal;
pub mod modules;
pub mod playbook;
pub mod probe;
pub mod runner;
pub mod templates;
pub mod transport;
