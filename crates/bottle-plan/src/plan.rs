//! The plan: everything resolved for one launch, names only.
//!
//! This is what `start --dry-run --format json` prints and what a backend
//! consumes. By construction it holds no secret and no env value: those live
//! in [`crate::Secrets`], which has no `Serialize`.

use std::collections::BTreeMap;

use serde::Serialize;

/// Bumped when a field is removed or changes meaning.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plan {
    pub schema: u32,
    pub slug: String,
    pub engine_reached: bool,
    pub warnings: Vec<String>,
    pub agent: AgentPlan,
    pub bottle: BottlePlan,
    pub backend: String,
    /// `runc`, `runsc` (gVisor), or `None` when the engine was not reached
    /// (`cli.md`'s plan JSON).
    pub runtime: Option<String>,
    /// The name the engine takes for that runtime: gVisor may be registered
    /// under another name than `runsc`. Not in the plan JSON.
    #[serde(skip)]
    pub engine_runtime: Option<String>,
    /// The engine's default runtime, when the bottle leaves the choice to
    /// it (`auto` without gVisor, a default known to isolate more than
    /// runc). Not in the plan JSON, whose `runtime` says `runc` then.
    #[serde(skip)]
    pub engine_default_runtime: Option<String>,
    pub container: String,
    pub sidecar: SidecarPlan,
    pub networks: Vec<String>,
    pub image: String,
    pub derived_image: Option<String>,
    pub copy_cwd: bool,
    pub keep: bool,
    pub forward_oauth_token: bool,
    pub env: EnvPlan,
    pub tokens: Vec<TokenPlan>,
    pub egress: EgressPlan,
    pub git: GitPlan,
    pub resources: ResourcesPlan,
}

impl Plan {
    /// The same plan under another slug: every name made from the slug
    /// follows it, names the user pinned (`CLAUDE_BOTTLE_CONTAINER`,
    /// `CLAUDE_BOTTLE_DERIVED_IMAGE`) stay. For a start that lost its slug
    /// to another start of the same agent at the same moment.
    pub fn with_slug(&self, slug: &str) -> Plan {
        use crate::names;
        let old = &self.slug;
        let mut p = self.clone();
        if p.container == names::agent_container(old) {
            p.container = names::agent_container(slug);
        }
        if p.derived_image.as_deref() == Some(names::derived_image(old).as_str()) {
            p.derived_image = Some(names::derived_image(slug));
        }
        p.sidecar.container = names::sidecar_container(slug);
        p.networks = vec![names::internal_network(slug), names::egress_network(slug)];
        p.slug = slug.to_string();
        p
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgentPlan {
    pub name: String,
    pub source: String,
    pub file: String,
    pub skills: Vec<String>,
    pub prompt_first_line: Option<String>,
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BottlePlan {
    pub name: String,
    pub lineage: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SidecarPlan {
    pub container: String,
    pub image: String,
}

/// Env variable names by where their value comes from.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct EnvPlan {
    pub literal: Vec<String>,
    pub forwarded: Vec<String>,
    pub prompted: Vec<String>,
    /// Every name the CLI itself sets in the agent.
    pub set_by_bottle: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenPlan {
    pub kind: String,
    pub token_ref: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The sidecar path the agent calls (`/anthropic`), for model APIs.
    pub route: Option<String>,
    pub upstream: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EgressPlan {
    pub allow: Vec<RoutePlan>,
    pub dlp: String,
    pub log: String,
    pub resolve: BTreeMap<String, String>,
    pub upstream_ca: Option<String>,
    pub upstream_proxy: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RoutePlan {
    pub host: String,
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub ports: Vec<u16>,
    /// The bottle listed `ports`. Without them `ports` shows the defaults,
    /// 80 and 443, but each belongs to one scheme (80 for plain HTTP, 443
    /// for CONNECT), and the sidecar must keep that pairing: the plan
    /// JSON's `[80, 443]` alone would also open `CONNECT host:80`.
    #[serde(skip)]
    pub ports_given: bool,
    pub tls: String,
    /// The injected scheme, when a token is attached.
    pub auth: Option<String>,
}

impl RoutePlan {
    pub fn intercepts(&self) -> bool {
        self.tls == "intercept"
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GitPlan {
    pub user: GitUserPlan,
    pub repos: Vec<RepoPlan>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GitUserPlan {
    pub name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RepoPlan {
    pub name: String,
    pub url: String,
    /// `ssh-key` or `token`.
    pub auth: String,
    /// With `auth: token`: the token's reference (a name, not a value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ref: Option<String>,
    pub push: Vec<String>,
    pub protect: Vec<String>,
    pub gate_url: String,
    pub clone_to: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResourcesPlan {
    pub memory: String,
    /// A whole number is written as one (`2`, as cli.md shows it), not `2.0`.
    #[serde(serialize_with = "whole_as_integer")]
    pub cpus: f64,
    pub pids: u32,
}

fn whole_as_integer<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    // Manifest cpus are bounded (0.01 to 1024), far inside what u64 holds.
    if v.fract() == 0.0 && *v >= 0.0 && *v <= u32::MAX as f64 {
        s.serialize_u64(*v as u64)
    } else {
        s.serialize_f64(*v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_are_written_as_integers_when_whole() {
        let r = |cpus| ResourcesPlan {
            memory: "4g".into(),
            cpus,
            pids: 1,
        };
        let json = |cpus| serde_json::to_value(r(cpus)).unwrap()["cpus"].to_string();
        assert_eq!(json(2.0), "2");
        assert_eq!(json(1.5), "1.5");
        assert_eq!(json(0.01), "0.01");
    }
}
