//! A connection to the engine with a negotiated API version.

use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::ListContainersOptions;
use bottle_plan::names;

use crate::labels;

/// How long to wait for the engine to answer before calling it unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The oldest engine API we support (Docker 20.10).
pub const MIN_API: &str = "1.41";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("cannot reach the container engine at `{host}`: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("will not use the container engine at `{host}`: {reason}")]
    Insecure { host: String, reason: String },
    #[error("the container engine did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the container engine refused `{what}`: {reason}")]
    Api { what: &'static str, reason: String },
}

impl EngineError {
    pub fn hint(&self) -> &'static str {
        match self {
            EngineError::Api { reason, .. } if reason.contains("address pool") => {
                "each bottle uses two networks and Docker's default address pools hold about 30 \
                 (15 bottles); stop bottles you do not need (`claude-bottle list running`), \
                 `claude-bottle cleanup` what dead runs left, or give the engine more, smaller \
                 pools (`default-address-pools` in /etc/docker/daemon.json, e.g. base \
                 10.200.0.0/16, size 24)"
            }
            EngineError::Api { reason, .. } if reason.contains("root network namespace") => {
                "gVisor (`runsc`) could not set up its own network stack on this engine (seen \
                 with Docker 20.10 and runsc 2022-12); register it with `\"runtimeArgs\": \
                 [\"--network=host\"]` in /etc/docker/daemon.json (docs/security.md, \"Known \
                 limits\"), or set `runtime: runc` in the bottle"
            }
            EngineError::Api { reason, .. } if reason.contains("ONBUILD triggers") => {
                "use an agent image without ONBUILD triggers (`CLAUDE_BOTTLE_IMAGE`), \
                 or start without `--copy-cwd`"
            }
            EngineError::Api { reason, .. } if reason.contains("No such image") => {
                "the image is not on this engine: `docker pull` it, `docker build` it, or \
                 `claude-bottle build` for the default images"
            }
            EngineError::Api { .. } => {
                "run `claude-bottle doctor`; `claude-bottle cleanup` removes what a failed launch left"
            }
            EngineError::Insecure { .. } => {
                "reach a remote engine through an SSH tunnel to its socket \
                 (`ssh -NL /tmp/docker.sock:/var/run/docker.sock HOST`, then \
                 `DOCKER_HOST=unix:///tmp/docker.sock`), or run the CLI on the engine's host"
            }
            EngineError::Unreachable { reason, .. }
                if reason.to_ascii_lowercase().contains("permission denied") =>
            {
                "this user may not use the engine's socket: add it to the `docker` group \
                 (`sudo usermod -aG docker $USER`, then log in again), or use rootless Docker \
                 and its `DOCKER_HOST`"
            }
            _ => "is Docker running? Check `DOCKER_HOST`, or run `claude-bottle doctor`",
        }
    }
}

/// For `map_err`: the engine answered `what` with an error.
pub(crate) fn api<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> EngineError {
    move |e| EngineError::Api {
        what,
        reason: e.to_string(),
    }
}

/// A negotiated engine connection.
#[derive(Clone, Debug)]
pub struct Engine {
    pub docker: Docker,
}

impl Engine {
    /// Connect as Docker's own tools do (`DOCKER_HOST`, else the local
    /// socket) and negotiate the API version.
    pub async fn connect() -> Result<Engine, EngineError> {
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let var = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty()).is_some();
        if let Some(reason) = insecure(&host, var("DOCKER_TLS_VERIFY") || var("DOCKER_CERT_PATH")) {
            return Err(EngineError::Insecure { host, reason });
        }
        let docker = Docker::connect_with_defaults().map_err(|e| EngineError::Unreachable {
            host: host.clone(),
            reason: e.to_string(),
        })?;
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| EngineError::Timeout(CONNECT_TIMEOUT))?
            .map_err(|e| EngineError::Unreachable {
                host,
                reason: e.to_string(),
            })?;
        Ok(Engine { docker })
    }
}

/// Why an engine address must not be used, if it must not: the bottle's
/// secrets (the sidecar's configuration, every exec's environment) travel
/// to the engine. This build speaks no TLS to an engine, so a `tcp://`
/// engine is plain HTTP: refused when TLS was asked for
/// (`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`, which would otherwise be
/// ignored without a word) and when the engine is not on this machine's
/// loopback.
pub fn insecure(docker_host: &str, tls_asked: bool) -> Option<String> {
    let host = docker_host.trim();
    if !host.starts_with("tcp://") && !host.starts_with("http://") {
        return None;
    }
    if tls_asked {
        return Some(
            "DOCKER_TLS_VERIFY or DOCKER_CERT_PATH asks for TLS, which claude-bottle does not \
             speak to an engine; the bottle's secrets would go in clear"
                .into(),
        );
    }
    let name = tcp_host(host).unwrap_or_default();
    let local = name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback());
    (!local).then(|| {
        "it is reached in plain HTTP over the network, and the bottle's secrets would cross \
         it in clear"
            .into()
    })
}

/// The host of a `tcp://`, `http://` or `https://` engine address
/// (`[v6]` without its brackets); `None` for any other kind.
pub fn tcp_host(docker_host: &str) -> Option<&str> {
    let rest = ["tcp://", "http://", "https://"]
        .iter()
        .find_map(|p| docker_host.trim().strip_prefix(p))?;
    let authority = rest.split('/').next().unwrap_or("");
    Some(match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    })
}

/// What `doctor` reports about the engine.
#[derive(Debug, Clone)]
pub struct EngineVersion {
    pub version: String,
    pub api_version: String,
    pub os: String,
    /// Docker Engine on Linux, 20.10 or newer: the kind CI runs.
    pub tested_kind: bool,
    /// API 1.41 or newer.
    pub api_supported: bool,
}

impl Engine {
    pub async fn version(&self) -> Result<EngineVersion, EngineError> {
        let v = self.docker.version().await.map_err(api("version"))?;
        let version = v.version.unwrap_or_default();
        let api_version = v.api_version.unwrap_or_default();
        let os = v.os.unwrap_or_default();
        let is_docker = v
            .components
            .unwrap_or_default()
            .iter()
            .any(|c| c.name == "Engine");
        Ok(EngineVersion {
            tested_kind: is_docker && os == "linux" && version_at_least(&version, (20, 10)),
            api_supported: version_at_least(&api_version, (1, 41)),
            version,
            api_version,
            os,
        })
    }
}

/// `"20.10.24+dfsg1"` >= (20, 10).
pub fn version_at_least(v: &str, min: (u32, u32)) -> bool {
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts
        .next()
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(0);
    major.is_some_and(|m| (m, minor) >= min)
}

impl Engine {
    /// A bottle's containers, stopped ones too: those carrying every label
    /// in `wanted` (`KEY` or `KEY=VALUE`) and the name the CLI gives a
    /// bottle's container of their slug. The labels alone do not prove it:
    /// a container run from the `--copy-cwd` image inherits the image's
    /// labels, and teardown must not remove (nor `attach` pick) the
    /// user's own container.
    pub async fn labelled_containers(
        &self,
        wanted: Vec<String>,
    ) -> Result<Vec<ContainerSummary>, EngineError> {
        let filters = std::collections::HashMap::from([("label".to_string(), wanted)]);
        let mut found = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(api("list containers"))?;
        found.retain(named_for_its_slug);
        // A container taken by the pinned-name label alone must carry it
        // as its own, not inherited from its image: a container run from
        // a `docker commit` of the agent (whose labels the image copied)
        // under the same name is the user's.
        let mut kept = Vec::with_capacity(found.len());
        for c in found {
            if named_by_the_cli(&c) || !self.label_from_its_image(&c).await {
                kept.push(c);
            }
        }
        Ok(kept)
    }

    /// Whether the container's image carries the container's own
    /// [`labels::NAME`] value (so the container inherited it). An image
    /// that cannot be read counts as carrying it: the container is left.
    async fn label_from_its_image(&self, c: &ContainerSummary) -> bool {
        let own = c.labels.as_ref().and_then(|l| l.get(labels::NAME));
        let Some(image) = c.image_id.as_deref() else {
            return true;
        };
        match self.docker.inspect_image(image).await {
            Ok(img) => {
                let from_image = img
                    .config
                    .and_then(|cfg| cfg.labels)
                    .and_then(|l| l.get(labels::NAME).cloned());
                from_image.is_some() && from_image.as_ref() == own
            }
            Err(_) => true,
        }
    }

    /// SIGKILL to a container's main process.
    pub async fn kill(&self, container: &str) -> Result<(), EngineError> {
        self.docker
            .kill_container(
                container,
                None::<bollard::query_parameters::KillContainerOptions>,
            )
            .await
            .map_err(api("kill container"))
    }

    /// The gateway address of every network the engine has: addresses of
    /// this host (bridges), sorted, without duplicates.
    pub async fn gateway_addresses(&self) -> Result<Vec<String>, EngineError> {
        let nets = self
            .docker
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .map_err(api("list networks"))?;
        let mut out: Vec<String> = nets
            .iter()
            .filter_map(|n| n.ipam.as_ref()?.config.as_ref())
            .flatten()
            .filter_map(|c| c.gateway.clone())
            .filter(|g| !g.is_empty())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Whether a container's name is one the CLI gives a bottle of the slug
/// it is labelled with (`claude-bottle-<slug>` or `…-sidecar`), or, for an
/// agent, the name the user pinned, which its own label repeats
/// ([`labels::NAME`]; `labelled_containers` also checks the label is not
/// inherited).
pub fn named_for_its_slug(c: &ContainerSummary) -> bool {
    let Some(l) = c.labels.as_ref() else {
        return false;
    };
    named_by_the_cli(c)
        || (l.get(labels::ROLE).is_some_and(|r| r == "agent")
            && l.get(labels::NAME) == Some(&container_name(c)))
}

/// Whether a container has a name the CLI derives from its slug label.
fn named_by_the_cli(c: &ContainerSummary) -> bool {
    let Some(slug) = c.labels.as_ref().and_then(|l| l.get(labels::SLUG)) else {
        return false;
    };
    let name = container_name(c);
    name == names::agent_container(slug) || name == names::sidecar_container(slug)
}

/// A container's name without the engine's leading `/`.
pub fn container_name(c: &ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attack: a user who asked for TLS (`DOCKER_TLS_VERIFY=1`), or whose
    /// engine is across the network, would send the bottle's secrets in
    /// clear to whoever answers plain HTTP on the way.
    #[test]
    fn plain_http_to_an_engine_elsewhere_or_with_tls_asked_is_refused() {
        for (host, tls) in [
            ("tcp://buildbox:2376", true),
            ("tcp://127.0.0.1:2375", true),
            ("tcp://buildbox:2375", false),
            ("tcp://10.0.0.5:2375", false),
            ("http://[2001:db8::1]:2375", false),
        ] {
            assert!(insecure(host, tls).is_some(), "{host} {tls}");
        }
        for host in [
            "unix:///var/run/docker.sock",
            "tcp://127.0.0.1:2375",
            "tcp://localhost:2375",
            "tcp://[::1]:2375",
            "ssh://me@buildbox",
            "npipe:////./pipe/docker_engine",
        ] {
            assert_eq!(insecure(host, false), None, "{host}");
        }
        let e = EngineError::Insecure {
            host: "tcp://buildbox:2376".into(),
            reason: insecure("tcp://buildbox:2376", true).unwrap(),
        };
        assert!(e.to_string().contains("TLS"), "{e}");
        assert!(e.hint().contains("ssh -NL"), "{}", e.hint());
    }

    #[test]
    fn exhausted_address_pools_get_their_own_hint() {
        let e = EngineError::Api {
            what: "create network",
            reason: "Docker responded with status code 404: could not find an available, \
                     non-overlapping IPv4 address pool among the defaults to assign to the network"
                .into(),
        };
        assert!(e.hint().contains("default-address-pools"), "{}", e.hint());
        let other = EngineError::Api {
            what: "create network",
            reason: "conflict".into(),
        };
        assert!(!other.hint().contains("default-address-pools"));
    }

    #[test]
    fn a_denied_socket_and_a_missing_image_get_their_own_hints() {
        let e = EngineError::Unreachable {
            host: "unix:///var/run/docker.sock".into(),
            reason: "error trying to connect: Permission denied (os error 13)".into(),
        };
        assert!(e.hint().contains("`docker` group"), "{}", e.hint());
        let e = EngineError::Api {
            what: "create agent container",
            reason: "Docker responded with status code 404: No such image: my/agent:1".into(),
        };
        assert!(e.hint().contains("docker pull"), "{}", e.hint());
    }

    #[test]
    fn gvisor_without_its_network_stack_gets_its_own_hint() {
        // The engine's words when runsc (2022-12) met Docker 20.10 here.
        let e = EngineError::Api {
            what: "start agent container",
            reason: "Docker responded with status code 500: OCI runtime start failed: starting \
                     container: setting up network: creating interfaces from net namespace \
                     \"/proc/4695/ns/net\": cannot run with network enabled in root network \
                     namespace: unknown"
                .into(),
        };
        assert!(e.hint().contains("--network=host"), "{}", e.hint());
        assert!(e.hint().contains("runtime: runc"), "{}", e.hint());
    }

    #[test]
    fn versions() {
        assert!(version_at_least("20.10.24+dfsg1", (20, 10)));
        assert!(version_at_least("28.2.2", (20, 10)));
        assert!(!version_at_least("19.03.15", (20, 10)));
        assert!(version_at_least("1.41", (1, 41)));
        assert!(version_at_least("1.47", (1, 41)));
        assert!(!version_at_least("1.40", (1, 41)));
        assert!(!version_at_least("", (1, 41)));
    }
}
