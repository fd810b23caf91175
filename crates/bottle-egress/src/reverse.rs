//! The reverse proxy for model APIs: `/anthropic/...` and `/openai/...` on
//! the proxy's own address go to the real API with the real credential.
//!
//! The agent is pointed here through `ANTHROPIC_BASE_URL` / `OPENAI_BASE_URL`
//! with a placeholder token; only the path prefix and the credential change.

/// A model API the proxy fronts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Anthropic,
    Openai,
}

impl Provider {
    pub fn host(self) -> &'static str {
        match self {
            Provider::Anthropic => "api.anthropic.com",
            Provider::Openai => "api.openai.com",
        }
    }

    pub fn prefix(self) -> &'static str {
        match self {
            Provider::Anthropic => "/anthropic",
            Provider::Openai => "/openai",
        }
    }
}

/// Splits an origin-form target into the provider and the upstream path+query.
/// `/anthropic` alone maps to `/`; `/anthropicx` is not a match.
pub fn route(path_and_query: &str) -> Option<(Provider, String)> {
    for p in [Provider::Anthropic, Provider::Openai] {
        if let Some(rest) = path_and_query.strip_prefix(p.prefix()) {
            let upstream = match rest.chars().next() {
                None => "/".to_string(),
                Some('/') => rest.to_string(),
                Some('?') => format!("/{rest}"),
                Some(_) => continue,
            };
            return Some((p, upstream));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_map_to_upstream_paths() {
        assert_eq!(
            route("/anthropic/v1/messages?beta=true"),
            Some((Provider::Anthropic, "/v1/messages?beta=true".into()))
        );
        assert_eq!(
            route("/openai/v1/chat/completions"),
            Some((Provider::Openai, "/v1/chat/completions".into()))
        );
        assert_eq!(route("/anthropic"), Some((Provider::Anthropic, "/".into())));
        assert_eq!(
            route("/anthropic?x=1"),
            Some((Provider::Anthropic, "/?x=1".into()))
        );
        assert_eq!(route("/anthropicx/v1"), None);
        assert_eq!(route("/other"), None);
    }
}
