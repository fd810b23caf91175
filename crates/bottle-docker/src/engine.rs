//! A connection to the engine with a negotiated API version.

use std::time::Duration;

use bollard::Docker;

/// How long to wait for the engine to answer before calling it unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The oldest engine API we support (Docker 20.10).
pub const MIN_API: &str = "1.41";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("cannot reach the container engine at `{host}`: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("the container engine did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the container engine refused `{what}`: {reason}")]
    Api { what: &'static str, reason: String },
}

impl EngineError {
    pub fn hint(&self) -> &'static str {
        "is Docker running? Check `DOCKER_HOST`, or run `claude-bottle doctor`"
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
