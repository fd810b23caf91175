//! The egress proxy of claude-bottle: an HTTP/1.1 forward proxy with a
//! default-deny L7 allowlist, TLS interception with the bottle's own CA,
//! credential injection, a reverse proxy for model APIs, DLP on everything
//! leaving, a DNS responder that answers only the bottle's own names, and
//! JSON-line audit events for every decision.
//!
//! Used by the sidecar (through [`serve`]) and by `claude-bottle proxy`
//! (through [`run_standalone`]).

// The address rules are shared with the git gate, in their own crate.
pub use bottle_addr as addr;
pub mod audit;
pub mod ca;
pub mod client_hello;
pub mod config;
pub mod connect;
pub mod dlp;
pub mod dns;
pub mod echo;
pub mod error;
pub mod form_method;
#[doc(hidden)]
pub mod fuzzing;
pub mod idle;
pub mod inflate;
pub mod inject;
pub mod limits;
pub mod reverse;
pub mod route;
pub mod scan;
pub mod server;
pub mod standalone;
pub mod upstream;
pub mod websocket;

pub use config::ProxyConfig;
pub use error::{Deny, Error};
pub use server::{Options, Proxy, serve, serve_sharded};
pub use standalone::run_standalone;
