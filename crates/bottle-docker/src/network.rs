//! The bottle's two networks (see `docker.md`, Topology).

use std::collections::HashMap;

use bollard::models::NetworkCreateRequest;

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
    Ok(created.id)
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
}
