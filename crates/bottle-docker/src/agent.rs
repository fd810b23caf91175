//! The agent container: hardened, on the internal network only, kept alive
//! by an init and a waiting shell so the agent itself runs as an exec.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, NetworkingConfig,
    ResourcesUlimits,
};
use bollard::query_parameters::{CreateContainerOptions, StartContainerOptions};

use crate::engine::{Engine, EngineError, api};

/// Where the bottle's own files go in the agent (a tmpfs).
pub const RUN_DIR: &str = "/run/claude-bottle";

#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub name: String,
    pub image: String,
    pub network: String,
    /// The sidecar's address on the internal network, the only resolver.
    pub dns: Option<String>,
    /// Non-secret variables (proxies, base URLs, placeholders, CA paths).
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub memory: String,
    pub cpus: f64,
    pub pids: u32,
    /// `runc` or `runsc`.
    pub runtime: Option<String>,
}

/// `4g`, `512m`, `1.5g`, `1024k`, `1073741824` to bytes.
/// The manifest's bound (`bottle_manifest::bottle::MAX_MEMORY_BYTES`),
/// checked again here: past it the byte count saturates to no limit.
const MAX_MEMORY_BYTES: f64 = (1u64 << 50) as f64;

pub fn memory_bytes(m: &str) -> Option<i64> {
    let m = m.trim().to_ascii_lowercase();
    let (num, mult) = match m.chars().last()? {
        'k' => (&m[..m.len() - 1], 1024f64),
        'm' => (&m[..m.len() - 1], 1024f64 * 1024.0),
        'g' => (&m[..m.len() - 1], 1024f64 * 1024.0 * 1024.0),
        'b' => (&m[..m.len() - 1], 1f64),
        _ => (&m[..], 1f64),
    };
    let v = num.parse::<f64>().ok()? * mult;
    (v.is_finite() && (6.0 * 1024.0 * 1024.0..=MAX_MEMORY_BYTES).contains(&v)).then_some(v as i64)
}

/// A core size limit of 1 byte. A crashing process's memory (its
/// environment included: the sidecar's git children hold the gate's
/// credential there) would otherwise go to the host's crash handler,
/// outside the bottle's state folder and past its teardown. Not 0: when
/// the host's `core_pattern` is a pipe (systemd-coredump, apport) the
/// kernel ignores the limit and runs the handler anyway, which logs the
/// process's environment to the host's journal; a limit of exactly 1 is
/// the one it treats as "never" (and no core file is that small). The
/// agent can still lower its own soft limit to 0 (docs/security.md).
pub fn no_core_dumps() -> ResourcesUlimits {
    ResourcesUlimits {
        name: Some("core".into()),
        soft: Some(1),
        hard: Some(1),
    }
}

/// Create and start the agent container.
pub async fn start(engine: &Engine, spec: &AgentSpec) -> Result<String, EngineError> {
    let memory = memory_bytes(&spec.memory).ok_or_else(|| EngineError::Api {
        what: "create agent",
        reason: format!("memory `{}` is not a size from 6m to 1 PiB", spec.memory),
    })?;
    let host = HostConfig {
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges:true".into()]),
        init: Some(true),
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some((spec.cpus * 1e9) as i64),
        pids_limit: Some(i64::from(spec.pids)),
        network_mode: Some(spec.network.clone()),
        dns: spec.dns.clone().map(|d| vec![d]),
        // With only the nameserver set, the engine copies the host's
        // `search` line into the agent's resolv.conf: the host's domains
        // (a company's, a cloud region's, a tailnet's) would be the
        // agent's to read and would go with every short name it looks up.
        // `.` writes none.
        dns_search: spec.dns.as_ref().map(|_| vec![".".to_string()]),
        tmpfs: Some(HashMap::from([(
            RUN_DIR.to_string(),
            "rw,nosuid,nodev,mode=0700,uid=1000,gid=1000,size=16m".to_string(),
        )])),
        runtime: spec.runtime.clone(),
        // Nothing reads the agent container's own output (sessions and
        // `--prompt` runs are execs), and its init runs as the agent user:
        // `> /proc/1/fd/1` would write straight into the engine's log of
        // the container, which by default has no size bound, until the
        // host's disk is full. So no log at all.
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        ulimits: Some(vec![no_core_dumps()]),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        user: Some("1000".into()),
        // Kept alive by `sleep` where the image has one that takes
        // `infinity`, else by the shell waiting on a stdin that stays open
        // and that nobody writes to: the image needs no `sleep` (`docker.md`
        // asks only for a shell), and a common image does not depend on the
        // engine keeping that stdin open. SIGTERM from the init ends either.
        entrypoint: Some(vec![
            "sh".into(),
            "-c".into(),
            "sleep infinity 2>/dev/null; read _".into(),
        ]),
        cmd: Some(vec![]),
        open_stdin: Some(true),
        env: Some(spec.env.clone()),
        labels: Some(spec.labels.clone()),
        working_dir: Some("/workspace".into()),
        host_config: Some(host),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                spec.network.clone(),
                EndpointSettings::default(),
            )])),
        }),
        ..Default::default()
    };
    let created = engine
        .docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(spec.name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(api("create agent container"))?;
    engine
        .docker
        .start_container(&created.id, None::<StartContainerOptions>)
        .await
        .map_err(api("start agent container"))?;
    Ok(created.id)
}

/// Name and home of the first `passwd` line with `uid`: how provisioning
/// reads the agent user from the image, never assuming `node`.
pub(crate) fn passwd_user(passwd: &str, uid: &str) -> Option<(String, String)> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        match (f.first(), f.get(2), f.get(5)) {
            (Some(name), Some(u), Some(home))
                if *u == uid && !name.is_empty() && !home.is_empty() =>
            {
                Some((name.to_string(), home.to_string()))
            }
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(memory_bytes("4g"), Some(4 * 1024 * 1024 * 1024));
        assert_eq!(memory_bytes("512M"), Some(512 * 1024 * 1024));
        assert_eq!(memory_bytes("1.5g"), Some(1024 * 1024 * 1536));
        assert_eq!(memory_bytes("1073741824"), Some(1073741824));
        assert_eq!(memory_bytes("1k"), None, "too small for the engine");
        assert_eq!(memory_bytes("lots"), None);
        assert_eq!(memory_bytes(""), None);
        assert_eq!(memory_bytes("1e30g"), None, "would saturate to no limit");
        assert_eq!(memory_bytes("1048576g"), Some(1 << 50));
    }

    #[test]
    fn the_agent_user_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      weird line\n\
                      nohome:x:1000:1000::\n\
                      node:x:1000:1000::/home/node:/bin/sh\n";
        assert_eq!(
            passwd_user(passwd, "1000"),
            Some(("node".into(), "/home/node".into()))
        );
        assert_eq!(passwd_user(passwd, "1001"), None);
        assert_eq!(passwd_user("", "1000"), None);
        assert_eq!(passwd_user("x:x:10000:1:::/h", "1000"), None);
    }
}
