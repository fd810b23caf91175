//! The git gate of a bottle: the agent's only way to a git upstream.
//!
//! Per configured repo the gate keeps a bare mirror and serves it over smart
//! HTTP (`/<name>.git`) with the real `git http-backend`. Fetches refresh the
//! mirror from the upstream first (fail closed); pushes go through a
//! pre-receive hook that applies the branch policy, DLP-scans every new
//! commit, and forwards a clean push upstream with the gate's credential,
//! which reaches git only through a child's environment.
//!
//! The sidecar builds a [`Gate`] (before it reports ready) and serves it;
//! its binary's hook subcommand calls
//! [`hook::main`]. See the crate README for the wiring.

pub mod audit;
pub mod cgi;
pub mod config;
pub mod credentials;
pub mod guard;
pub mod hook;
pub mod limits;
pub mod mirror;
pub mod policy;
pub mod scan;
pub mod server;
pub mod stalled;
pub mod tips;
pub mod trees;

pub use audit::{AuditSink, Event};
pub use config::{GateConfig, GateSecrets, RepoConfig, from_sidecar_json, from_sidecar_parts};
pub use limits::Limits;
pub use server::{Gate, Options};

/// Errors of setting the gate up. Never contains a secret value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("git gate configuration: {0}")]
    Config(String),
    #[error("git gate: {0}")]
    Io(String),
}
