//! The Docker backend: talks to the engine through its HTTP API (bollard),
//! never by running the `docker` CLI.
//!
//! Today: the plan's read-only questions ([`facts`]), images ([`image`]),
//! networks, owners and label-driven teardown. Launching the sidecar and
//! agent, provisioning and attach follow.

#![forbid(unsafe_code)]

pub mod agent;
pub mod attach;
pub mod engine;
pub mod exec;
pub mod facts;
pub mod image;
pub mod labels;
pub mod launch;
pub mod network;
pub mod owner;
pub mod provision;
pub mod sidecar;
pub mod teardown;

pub use engine::{Engine, EngineError};
pub use facts::{RunningBottle, engine_facts, running};
