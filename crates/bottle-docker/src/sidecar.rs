//! The sidecar container: created with stdin open for one attach, started
//! on both networks, handed its whole configuration (secrets included) on
//! stdin, then waited on until it says `ready`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, NetworkConnectRequest,
    NetworkingConfig,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, InspectContainerOptions, StartContainerOptions,
};
use bottle_plan::Plan;
use bottle_plan::resolve::{GATE_PORT, PROXY_PORT, SIDECAR_HOST};
use bottle_secret::Secret;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::engine::{Engine, EngineError, api};

/// Most the sidecar may print on stdout before `ready` (its CA).
const MAX_BEFORE_READY: usize = 64 * 1024;

/// Once a complete `ready` line has arrived: the certificate block printed
/// before it, if there was one (`None` until then).
fn ca_before_ready(stdout: &str) -> Option<Option<String>> {
    let ready = if stdout.starts_with("ready ") {
        0
    } else {
        stdout.find("\nready ")? + 1
    };
    if !stdout[ready..].contains('\n') {
        return None;
    }
    let before = &stdout[..ready];
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = before.find(BEGIN);
    let end = before.find(END).map(|e| e + END.len());
    Some(match (start, end) {
        (Some(s), Some(e)) if e > s => Some(format!("{}\n", &before[s..e])),
        _ => None,
    })
}

/// How long the sidecar may take to say `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The sidecar's configuration document, secrets included. It only ever
/// travels over the attach stream.
///
/// Every part listens on `listen_ip`, the sidecar's internal address only:
/// the egress side (and through it the host) must never reach a proxy that
/// injects the bottle's credentials.
///
/// `host_addresses` are the addresses of the machine the engine runs on:
/// the proxy and the gate refuse them as they refuse private ones, since
/// the sidecar's connections reach the host there as local traffic.
pub fn config(
    plan: &Plan,
    secrets: &bottle_plan::Secrets,
    listen_ip: &str,
    dns_names: &HashMap<String, String>,
    host_addresses: &[IpAddr],
) -> Secret {
    let allow: Vec<Value> = plan
        .egress
        .allow
        .iter()
        .map(|r| {
            let mut v = json!({"host": r.host, "tls": r.tls});
            // Unlisted ports stay unlisted: the proxy then allows 80 for
            // plain HTTP and 443 for CONNECT, each for its own scheme.
            if r.ports_given {
                v["ports"] = json!(r.ports);
            }
            if let Some(m) = &r.methods {
                v["methods"] = json!(m);
            }
            if let Some(p) = &r.paths {
                v["paths"] = json!(p);
            }
            v
        })
        .collect();
    let tokens: Vec<Value> = plan
        .tokens
        .iter()
        .map(|t| {
            let mut v = json!({"kind": t.kind, "token_ref": t.token_ref});
            if let Some(h) = &t.host {
                v["host"] = json!(h);
            }
            if let Some(s) = &t.scheme {
                v["scheme"] = json!(s);
            }
            v
        })
        .collect();
    let repos: serde_json::Map<String, Value> = plan
        .git
        .repos
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                json!({"url": r.url, "auth": r.auth, "token_ref": r.token_ref, "push": r.push, "protect": r.protect}),
            )
        })
        .collect();
    let token_values: serde_json::Map<String, Value> = secrets
        .tokens
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.expose())))
        .collect();
    let ssh_keys: serde_json::Map<String, Value> = secrets
        .ssh_keys
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.expose())))
        .collect();
    let mut doc = json!({
        "listen": format!("{listen_ip}:{PROXY_PORT}"),
        "allow": allow,
        "dlp": plan.egress.dlp,
        "log": plan.egress.log,
        "tokens": tokens,
        "resolve": plan.egress.resolve,
        "host_addresses": host_addresses,
        "dns": {"listen": format!("{listen_ip}:53"), "names": dns_names},
        "upstream_proxy": plan.egress.upstream_proxy,
        "gate": {"listen": format!("{listen_ip}:{GATE_PORT}"), "state_dir": "/tmp/gate", "repos": repos,
                 "resolve": plan.egress.resolve, "upstream_proxy": plan.egress.upstream_proxy,
                 "host_addresses": host_addresses},
        "secrets": {"tokens": token_values, "ssh_keys": ssh_keys, "known_hosts": secrets.known_hosts},
    });
    if let Some(pem) = &secrets.upstream_ca {
        doc["upstream_ca_pem"] = json!(pem);
    }
    let text = Secret::new(doc.to_string());
    // security.md: secrets are wiped from memory on drop where practical;
    // the text handed on is a `Secret`, wiped in turn.
    bottle_secret::wipe_json(&mut doc);
    text
}

/// The sidecar's memory bound (bytes, swap included): the proxy's buffers
/// are small, but the git gate's `index-pack` and `pack-objects` on a
/// large push need room.
pub const SIDECAR_MEMORY: i64 = 2 * 1024 * 1024 * 1024;
/// Most processes and threads in the sidecar (runtime threads, the gate's
/// git and ssh children).
pub const SIDECAR_PIDS: i64 = 512;

/// The sidecar's log (its audit events): this many files of this size at
/// most, the oldest dropped first (512 MiB in all, about two million
/// events).
pub const SIDECAR_LOG_FILE_SIZE: &str = "64m";
pub const SIDECAR_LOG_FILES: u32 = 8;

/// The sidecar's user and group (its image's `USER`, set again at create
/// so an image built otherwise cannot change it); see sidecar.Dockerfile
/// for why this number.
pub const SIDECAR_USER: &str = "65200:65200";

/// The sidecar's CPU bound in billionths of a CPU: the agent's `cpus`, at
/// least one.
fn sidecar_nano_cpus(cpus: f64) -> i64 {
    let cpus = if cpus.is_finite() { cpus.max(1.0) } else { 1.0 };
    (cpus * 1e9) as i64
}

/// Create the sidecar on the internal network (alias `sidecar`) and the
/// egress network, and start it. Returns its id and internal address.
pub async fn start(
    engine: &Engine,
    plan: &Plan,
    labels: HashMap<String, String>,
) -> Result<(String, String), EngineError> {
    let internal = &plan.networks[0];
    let egress = &plan.networks[1];
    let host = HostConfig {
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges:true".into()]),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_string(),
            // `exec`: Docker mounts tmpfs `noexec` by default, and git
            // silently skips a hook it cannot execute.
            "rw,nosuid,nodev,exec,size=256m,mode=1777".to_string(),
        )])),
        // Port 53 without a capability: the bound is lowered inside the
        // sidecar's own network namespace only. And no routing: the
        // sidecar is on both networks, and a new namespace copies the
        // host's `ip_forward` (1 wherever Docker runs), so it would
        // forward a packet the agent got to it (a source route, a future
        // engine's routing) onto the egress network past the proxy.
        sysctls: Some(HashMap::from(
            [
                ("net.ipv4.ip_unprivileged_port_start", "0"),
                ("net.ipv4.ip_forward", "0"),
                ("net.ipv4.conf.all.accept_source_route", "0"),
                ("net.ipv4.conf.default.accept_source_route", "0"),
                ("net.ipv4.conf.all.send_redirects", "0"),
                ("net.ipv4.conf.default.send_redirects", "0"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )),
        network_mode: Some(internal.clone()),
        init: Some(true),
        // The agent drives the sidecar's work (connections, pushes, git
        // children): bounded, so it cannot take the host's memory or
        // processes; past a bound the sidecar fails, and with it the
        // bottle's only way out (closed, not open).
        memory: Some(SIDECAR_MEMORY),
        memory_swap: Some(SIDECAR_MEMORY),
        pids_limit: Some(SIDECAR_PIDS),
        // CPU too: fetches, pushes and inflated bodies are work the agent
        // asks for, and without a bound it could take every core of the
        // host (and from other bottles). The bottle's own share, or one
        // core if that is less, so a small agent does not slow its proxy.
        nano_cpus: Some(sidecar_nano_cpus(plan.resources.cpus)),
        ulimits: Some(vec![crate::agent::no_core_dumps()]),
        // The audit log is the sidecar's stdout, one line per decision, and
        // the agent chooses how many decisions there are (a flood of
        // refused requests or DNS queries): rotated at a bound, so it
        // cannot fill the host's disk. json-file whatever the engine's
        // default, since teardown and `logs` read it through the logs API.
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_string(), SIDECAR_LOG_FILE_SIZE.to_string()),
                ("max-file".to_string(), SIDECAR_LOG_FILES.to_string()),
            ])),
        }),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(plan.sidecar.image.clone()),
        user: Some(SIDECAR_USER.into()),
        open_stdin: Some(true),
        stdin_once: Some(true),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        labels: Some(labels),
        host_config: Some(host),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                internal.clone(),
                EndpointSettings {
                    aliases: Some(vec![SIDECAR_HOST.to_string()]),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    };
    let created = engine
        .docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(plan.sidecar.container.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(api("create sidecar"))?;
    // API 1.41 takes one network at create; the second is connected before start.
    engine
        .docker
        .connect_network(
            egress,
            NetworkConnectRequest {
                container: created.id.clone(),
                endpoint_config: None,
            },
        )
        .await
        .map_err(api("connect sidecar to egress network"))?;
    engine
        .docker
        .start_container(&created.id, None::<StartContainerOptions>)
        .await
        .map_err(api("start sidecar"))?;
    let inspected = engine
        .docker
        .inspect_container(&created.id, None::<InspectContainerOptions>)
        .await
        .map_err(api("inspect sidecar"))?;
    let ip = inspected
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get(internal).and_then(|e| e.ip_address.clone()))
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| EngineError::Api {
            what: "inspect sidecar",
            reason: "no address on the internal network".into(),
        })?;
    Ok((created.id, ip))
}

/// Write the configuration on the sidecar's stdin, close it, and wait for
/// the `ready` line. Returns the bottle CA's certificate, which the sidecar
/// prints before it; the sidecar's own output on failure.
pub async fn configure(engine: &Engine, id: &str, config: Secret) -> Result<String, EngineError> {
    let attached = engine
        .docker
        .attach_container(
            id,
            Some(AttachContainerOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                stream: true,
                ..Default::default()
            }),
        )
        .await
        .map_err(api("attach sidecar"))?;
    let mut input = attached.input;
    let mut output = attached.output;
    input
        .write_all(config.expose().as_bytes())
        .await
        .map_err(api("configure sidecar"))?;
    input.shutdown().await.map_err(api("configure sidecar"))?;
    drop(config);
    // What came before `ready` on stdout (the CA), and everything it said,
    // kept for the error when it stops early; both bounded.
    let mut stdout = String::new();
    let mut seen = String::new();
    let wait = async {
        while let Some(item) = output.next().await {
            let (message, is_stdout) = match item {
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                    (message, true)
                }
                Ok(LogOutput::StdErr { message }) => (message, false),
                Ok(_) => continue,
                Err(_) => return None,
            };
            let text = String::from_utf8_lossy(&message);
            if is_stdout && stdout.len() < MAX_BEFORE_READY {
                stdout.push_str(&text);
                if let Some(ca) = ca_before_ready(&stdout) {
                    return Some(ca.ok_or("it said `ready` without its CA certificate"));
                }
            }
            seen.push_str(&text);
            if seen.len() > 64 * 1024 {
                // On a character boundary: a lossy U+FFFD is three bytes,
                // and a cut inside one panics.
                let mut cut = 32 * 1024;
                while !seen.is_char_boundary(cut) {
                    cut += 1;
                }
                seen.drain(..cut);
            }
        }
        None
    };
    match tokio::time::timeout(READY_TIMEOUT, wait).await {
        Ok(Some(Ok(ca))) => Ok(ca),
        Ok(Some(Err(why))) => Err(EngineError::Api {
            what: "start sidecar",
            reason: format!("{why} (an image of another version? `claude-bottle build`)"),
        }),
        Ok(None) => Err(EngineError::Api {
            what: "start sidecar",
            reason: format!("it exited before it was ready: {}", seen.trim()),
        }),
        Err(_) => Err(EngineError::Timeout(READY_TIMEOUT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A host with no environment and no files: enough for a bottle
    /// without credentials.
    struct NoHost;
    impl bottle_plan::Host for NoHost {
        fn env(&self, _: &str) -> Option<String> {
            None
        }
        fn read_secret_file(&self, _: &Path) -> std::io::Result<String> {
            Err(std::io::ErrorKind::NotFound.into())
        }
        fn dir_exists(&self, _: &Path) -> bool {
            false
        }
    }

    /// The sidecar document for an agent of a bottle with this front matter.
    fn document(front: &str) -> Value {
        document_on(front, &[])
    }

    /// The same, for an engine on a machine with these addresses.
    fn document_on(front: &str, host_addresses: &[IpAddr]) -> Value {
        let home = Path::new("/home/u");
        let agent = bottle_manifest::agent::parse(
            "a",
            &home.join(".claude-bottle/agents/a.md"),
            bottle_manifest::Source::Home,
            home,
            "---\nbottle: b\n---\n",
        )
        .unwrap();
        let text = format!("---\n{front}---\n");
        let merged = bottle_manifest::merge("b", |n: &str| {
            if n != "b" {
                return Ok(None);
            }
            bottle_manifest::bottle::parse(
                n,
                &home.join(".claude-bottle/bottles/b.md"),
                home,
                &text,
            )
            .map(Some)
        })
        .unwrap();
        let facts = bottle_plan::Facts {
            home: home.into(),
            bottle_home: home.join(".claude-bottle"),
            version: "0.1.0".into(),
            engine: Some(bottle_plan::EngineFacts::default()),
        };
        let r =
            bottle_plan::resolve(&agent, &merged, &facts, &Default::default(), &NoHost).unwrap();
        let doc = config(
            &r.plan,
            &r.secrets,
            "10.0.0.2",
            &HashMap::new(),
            host_addresses,
        );
        serde_json::from_str(doc.expose()).unwrap()
    }

    /// sidecar.md: with `upstream_proxy` the sidecar reaches every upstream
    /// through it, the proxy's and the gate's.
    #[test]
    fn the_upstream_proxy_reaches_the_proxy_and_the_gate() {
        let doc = document(
            "egress:\n  upstream_proxy: http://proxy.corp:3128\n  allow:\n    - host: example.com\n",
        );
        assert_eq!(doc["upstream_proxy"], "http://proxy.corp:3128");
        assert_eq!(doc["gate"]["upstream_proxy"], "http://proxy.corp:3128");
        let doc = document("egress:\n  allow:\n    - host: example.com\n");
        assert!(doc["upstream_proxy"].is_null());
    }

    /// Attack: a wildcard route and a name resolving to the host's public
    /// address, which the sidecar reaches as local traffic. The host's
    /// addresses go to the proxy and to the gate (which dials upstreams
    /// itself); with none known, both lists are empty, not missing.
    #[test]
    fn the_hosts_addresses_reach_the_proxy_and_the_gate() {
        let front = "egress:\n  allow:\n    - host: \"*\"\n";
        let host: Vec<IpAddr> = vec![
            "198.51.100.7".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        ];
        let doc = document_on(front, &host);
        let want = json!(["198.51.100.7", "2001:db8::7"]);
        assert_eq!(doc["host_addresses"], want, "{doc}");
        assert_eq!(doc["gate"]["host_addresses"], want, "{doc}");
        let doc = document(front);
        assert_eq!(doc["host_addresses"], json!([]));
        assert_eq!(doc["gate"]["host_addresses"], json!([]));
    }

    /// manifest.md: ports default to "80 (http) and 443 (https)", each for
    /// its scheme. Sending `[80, 443]` would let the agent open a CONNECT
    /// tunnel to port 80 and send plain HTTP to port 443.
    #[test]
    fn unlisted_ports_keep_their_schemes() {
        let doc = document("egress:\n  allow:\n    - host: example.com\n");
        assert_eq!(doc["allow"][0]["host"], "example.com");
        assert!(doc["allow"][0].get("ports").is_none(), "{doc}");
        let doc = document("egress:\n  allow:\n    - host: example.com\n      ports: [8443]\n");
        assert_eq!(doc["allow"][0]["ports"], json!([8443]));
    }

    #[test]
    fn the_ca_comes_before_ready() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        let out = format!("{pem}\nready proxy 10.0.0.2:3128\n");
        assert_eq!(
            ca_before_ready(&out),
            Some(Some(format!("{pem}\n"))),
            "complete"
        );
        assert_eq!(
            ca_before_ready(&out[..out.len() - 1]),
            None,
            "ready line not ended"
        );
        assert_eq!(ca_before_ready(&format!("{pem}\n")), None, "not ready yet");
        assert_eq!(
            ca_before_ready("ready proxy 10.0.0.2:3128\n"),
            Some(None),
            "ready without a CA is an answer, not a wait"
        );
        let late = format!("ready proxy x\n{pem}\n");
        assert_eq!(
            ca_before_ready(&late),
            Some(None),
            "only what came before counts"
        );
    }
}
