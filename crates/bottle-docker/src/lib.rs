//! The Docker backend: talks to the engine through its HTTP API (bollard),
//! never by running the `docker` CLI.
//!
//! The plan's read-only questions ([`facts`]), images ([`image`]), then
//! [`launch`]: networks, the [`sidecar`], the hardened [`agent`] and its
//! [`provision`]ing (with [`skills`] and the [`derived`] `--copy-cwd` image);
//! at the end what teardown saves first (the [`outbox`], the sidecar's
//! [`auditlog`]) and label-driven [`teardown`].

#![forbid(unsafe_code)]

pub mod agent;
pub mod attach;
pub mod auditlog;
pub mod derived;
pub mod engine;
pub mod exec;
pub mod facts;
pub mod gitconfig;
pub mod helper;
pub mod image;
pub mod labels;
pub mod launch;
pub mod network;
pub mod outbox;
pub mod owner;
pub mod provision;
pub mod sidecar;
pub mod skills;
pub mod teardown;

pub use engine::{Engine, EngineError};
pub use facts::{RunningBottle, engine_facts, running};
