//! The bottle's two networks (see `docker.md`, Topology).

use std::collections::HashMap;

use bollard::models::{NetworkCreateRequest, NetworkInspect};
use bollard::query_parameters::InspectNetworkOptions;

use crate::engine::{Engine, EngineError, api};

/// Options for the internal network: no route out (`internal`), and no host
/// address on its bridge, so neither gateway, the host's services, nor the
/// metadata address answer from inside. Newer engines also take
/// `gateway_mode_ipv4=isolated`; 20.10 ignores unknown options.
pub fn internal_options() -> HashMap<String, String> {
    HashMap::from([(
        "com.docker.network.bridge.inhibit_ipv4".to_string(),
        "true".to_string(),
    )])
}

/// Creates a network; the internal one is read back and refused when the
/// engine did not keep its isolation (see [`isolation_problem`]).
pub async fn create(
    engine: &Engine,
    name: &str,
    internal: bool,
    labels: HashMap<String, String>,
) -> Result<String, EngineError> {
    let created = engine
        .docker
        .create_network(request(name, internal, labels))
        .await
        .map_err(api("create network"))?;
    if internal {
        let kept = engine
            .docker
            .inspect_network(&created.id, None::<InspectNetworkOptions>)
            .await
            .map_err(api("inspect network"))?;
        if let Some(problem) = isolation_problem(&kept) {
            // The network carries the bottle's labels: teardown removes it.
            return Err(EngineError::Api {
                what: "create network",
                reason: format!(
                    "the engine did not keep the internal network `{name}` isolated: \
                     {problem}; a bottle on it could reach the host, so it is not started"
                ),
            });
        }
    }
    Ok(created.id)
}

/// What is missing from the internal network's isolation as the engine
/// reports it. An engine that accepts the request but ignores an option
/// (a Docker-compatible engine need not know `inhibit_ipv4`) would give
/// the bridge a host address the agent could reach; only Docker is tested.
pub fn isolation_problem(n: &NetworkInspect) -> Option<&'static str> {
    if n.internal != Some(true) {
        return Some("it is not internal (it has a route out)");
    }
    if n.enable_ipv6 == Some(true) {
        return Some("it has IPv6");
    }
    let inhibit = n
        .options
        .as_ref()
        .and_then(|o| o.get("com.docker.network.bridge.inhibit_ipv4"));
    if inhibit.map(String::as_str) != Some("true") {
        return Some("its bridge has a host address (`inhibit_ipv4` was not kept)");
    }
    None
}

fn request(name: &str, internal: bool, labels: HashMap<String, String>) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: name.to_string(),
        driver: Some("bridge".into()),
        internal: Some(internal),
        attachable: Some(false),
        // Said, not left to the engine's defaults: a daemon with IPv6 on
        // by default would give the bridge a host address that
        // `inhibit_ipv4` does not cover.
        enable_ipv6: Some(false),
        options: Some(if internal {
            internal_options()
        } else {
            HashMap::new()
        }),
        labels: Some(labels),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_networks_say_no_ipv6_and_only_the_internal_one_is_internal() {
        let internal = request("n", true, HashMap::new());
        assert_eq!(internal.enable_ipv6, Some(false));
        assert_eq!(internal.internal, Some(true));
        assert_eq!(
            internal.options.unwrap()["com.docker.network.bridge.inhibit_ipv4"],
            "true"
        );
        let egress = request("n", false, HashMap::new());
        assert_eq!(egress.enable_ipv6, Some(false));
        assert_eq!(egress.internal, Some(false));
    }

    /// As Docker reports the internal network (checked by hand on this
    /// machine's engine), and as an engine that dropped a part of it.
    #[test]
    fn an_internal_network_must_come_back_isolated() {
        let inspect = |json: &str| -> NetworkInspect { serde_json::from_str(json).unwrap() };
        let kept = r#"{"Internal": true, "EnableIPv6": false,
            "Options": {"com.docker.network.bridge.inhibit_ipv4": "true"}}"#;
        assert_eq!(isolation_problem(&inspect(kept)), None);
        for (json, says) in [
            (
                r#"{"Internal": true, "EnableIPv6": false, "Options": {}}"#,
                "inhibit_ipv4",
            ),
            (r#"{"Internal": true, "EnableIPv6": false}"#, "inhibit_ipv4"),
            (
                r#"{"Internal": false, "Options": {"com.docker.network.bridge.inhibit_ipv4": "true"}}"#,
                "not internal",
            ),
            (
                r#"{"Internal": true, "EnableIPv6": true, "Options": {"com.docker.network.bridge.inhibit_ipv4": "true"}}"#,
                "IPv6",
            ),
        ] {
            let problem = isolation_problem(&inspect(json)).unwrap_or_default();
            assert!(problem.contains(says), "{json}: {problem}");
        }
    }
}
