//! The values a launch needs and the plan must never show.

use std::collections::BTreeMap;

use bottle_secret::Secret;

/// Values resolved with the plan. No `Serialize`, and `Debug` shows names
/// only. Prompted env values are not here: they are asked at launch.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Literal and forwarded env values, by variable name.
    pub env: BTreeMap<String, Secret>,
    /// Token values by `token_ref` as written (what the sidecar config names).
    pub tokens: BTreeMap<String, Secret>,
    /// Deploy keys by repo name.
    pub ssh_keys: BTreeMap<String, Secret>,
    /// Pinned `known_hosts` lines by repo name (not secret, but only the
    /// sidecar needs them).
    pub known_hosts: BTreeMap<String, String>,
    /// The Anthropic credential is an API key (`sk-ant-api…`) rather than an
    /// OAuth token; decides which header the sidecar injects.
    pub anthropic_is_api_key: bool,
    /// The PEM text of `egress.upstream_ca` (not secret; read on the host
    /// so it travels to the sidecar with the rest of its configuration).
    pub upstream_ca: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("tokens", &self.tokens.keys().collect::<Vec<_>>())
            .field("ssh_keys", &self.ssh_keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}
