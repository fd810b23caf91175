//! Manifest model + host facts → the resolved launch plan, its preflight
//! text and its JSON.
//!
//! Pure: no I/O and no async. The caller gathers [`Facts`] (the engine's
//! answers included) and supplies a [`Host`] for env and file lookups.
//! Secrets come out separately from the plan ([`Secrets`]), so a plan can
//! be printed, logged or serialised without a second thought.

#![forbid(unsafe_code)]

pub mod error;
pub mod host;
pub mod names;
pub mod plan;
pub mod preflight;
pub mod resolve;
pub mod secrets;

pub use error::{Error, NamedBy};
pub use host::{EngineFacts, Facts, Host, StandIn};
pub use plan::Plan;
pub use resolve::{Options, Resolved, bottle_env, resolve};
pub use secrets::Secrets;

#[cfg(test)]
mod tests;
