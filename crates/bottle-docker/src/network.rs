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
    let request = NetworkCreateRequest {
        name: name.to_string(),
        driver: Some("bridge".into()),
        internal: Some(internal),
        attachable: Some(false),
        options: Some(if internal {
            internal_options()
        } else {
            HashMap::new()
        }),
        labels: Some(labels),
        ..Default::default()
    };
    let created = engine
        .docker
        .create_network(request)
        .await
        .map_err(api("create network"))?;
    Ok(created.id)
}
