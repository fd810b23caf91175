//! The reverse proxy for model APIs: `/anthropic/...` and `/openai/...` on
//! the proxy's own address go to the real API with the real credential.
//!
//! The agent is pointed here through `ANTHROPIC_BASE_URL` / `OPENAI_BASE_URL`
//! with a placeholder token; only the path prefix and the credential change.

use http::HeaderMap;

use crate::error::Deny;
use crate::route::{has_path_override, method_overrides};

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

/// The API endpoints the reverse proxy forwards: method and path prefix
/// (whole segments). The real credential can do much more than a coding
/// agent needs (Anthropic's OAuth token can ask for a new API key, an
/// OpenAI key can mint client secrets or manage the organisation), and the
/// agent would read what such an endpoint returns: only model calls pass.
const ANTHROPIC_ENDPOINTS: &[(&[&str], &str)] =
    &[(&["POST"], "/v1/messages"), (&["GET"], "/v1/models")];

const OPENAI_ENDPOINTS: &[(&[&str], &str)] = &[
    (&["POST"], "/v1/chat/completions"),
    (&["POST"], "/v1/completions"),
    (&["POST", "GET"], "/v1/responses"),
    (&["POST"], "/v1/embeddings"),
    (&["POST"], "/v1/moderations"),
    (&["GET"], "/v1/models"),
];

impl Provider {
    fn endpoints(self) -> &'static [(&'static [&'static str], &'static str)] {
        match self {
            Provider::Anthropic => ANTHROPIC_ENDPOINTS,
            Provider::Openai => OPENAI_ENDPOINTS,
        }
    }

    /// Whether `path_and_query` is one of the model calls a client makes
    /// on every turn, whose bodies the API reads whole; other endpoints
    /// under the allowed prefixes (`/v1/messages/batches/ID/cancel`) may
    /// not read a body, and a request with one gets a connection of its own
    /// (`server::exchange`).
    pub fn reads_body(self, path_and_query: &str) -> bool {
        let path = path_and_query
            .split_once('?')
            .map_or(path_and_query, |(p, _)| p);
        let calls: &[&str] = match self {
            Provider::Anthropic => &["/v1/messages", "/v1/messages/count_tokens"],
            Provider::Openai => &[
                "/v1/chat/completions",
                "/v1/completions",
                "/v1/responses",
                "/v1/embeddings",
                "/v1/moderations",
            ],
        };
        calls.contains(&path)
    }

    /// The name of the refusal's rule.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::Openai => "openai",
        }
    }

    /// Whether `method` on the upstream `path_and_query` is a model call.
    /// Paths are taken as written: one with dot segments, an escape, a
    /// backslash or an empty segment is no model endpoint (the API's own
    /// paths have none), so no spelling reaches another endpoint through
    /// the upstream's normalisation.
    pub fn allows(self, method: &str, path_and_query: &str) -> Result<(), Deny> {
        let path = path_and_query
            .split_once('?')
            .map_or(path_and_query, |(p, _)| p);
        let odd = path.contains(['%', '\\', ';'])
            || path
                .split('/')
                .skip(1)
                .any(|seg| seg.is_empty() || seg == "." || seg == "..");
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        let mut found = false;
        for (methods, prefix) in self.endpoints() {
            if odd || !under(prefix) {
                continue;
            }
            if methods.contains(&method) {
                return Ok(());
            }
            found = true;
        }
        Err(if found { Deny::Method } else { Deny::Path })
    }

    /// [`Provider::allows`] for a request, also for the headers some
    /// frameworks take as its real method or path, as routes are held to
    /// them ([`crate::route::Route::check_request`]).
    pub fn check_request(
        self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Result<(), Deny> {
        self.allows(method, path_and_query)?;
        if has_path_override(headers) {
            return Err(Deny::Path);
        }
        for v in method_overrides(headers, path_and_query) {
            let m = v.ok_or(Deny::Method)?;
            self.allows(&m.trim().to_ascii_uppercase(), path_and_query)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_model_endpoints_pass() {
        let a = Provider::Anthropic;
        assert_eq!(a.allows("POST", "/v1/messages?beta=true"), Ok(()));
        assert_eq!(a.allows("POST", "/v1/messages/count_tokens"), Ok(()));
        assert_eq!(a.allows("GET", "/v1/models/claude-x"), Ok(()));
        assert_eq!(a.allows("GET", "/v1/messages"), Err(Deny::Method));
        assert_eq!(a.allows("DELETE", "/v1/models"), Err(Deny::Method));
        for path in [
            "/api/oauth/claude_cli/create_api_key",
            "/v1/messages/../../api/oauth/claude_cli/create_api_key",
            "/v1/messages/%2e%2e/%2e%2e/api/oauth/x",
            "/v1/messages/..%2f..%2fapi",
            "/v1/messages\\..\\..\\api",
            "/v1/messages/./x",
            "/v1//messages",
            "/v1/messages;x",
            "/v1/messagesx",
            "/v1/organizations/x",
            "/",
            "",
        ] {
            assert_eq!(a.allows("POST", path), Err(Deny::Path), "{path}");
        }
        let o = Provider::Openai;
        assert_eq!(o.allows("POST", "/v1/chat/completions"), Ok(()));
        assert_eq!(o.allows("GET", "/v1/responses/resp_1"), Ok(()));
        for path in [
            "/v1/realtime/client_secrets",
            "/v1/realtime/sessions",
            "/v1/organization/admin_api_keys",
            "/v1/chat/completions/../../organization/invites",
        ] {
            assert_eq!(o.allows("POST", path), Err(Deny::Path), "{path}");
        }
    }

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
