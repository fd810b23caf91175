//! The Docker backend: talks to the engine through its HTTP API (bollard),
//! never by running the `docker` CLI.
//!
//! Today this crate answers the plan's read-only questions ([`facts`]);
//! launching, provisioning, attach and teardown follow in later work.

#![forbid(unsafe_code)]

pub mod engine;
pub mod facts;
pub mod labels;

pub use engine::{Engine, EngineError};
pub use facts::{RunningBottle, engine_facts, running};
