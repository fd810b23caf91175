//! Credential injection: the agent's copy of a credential header is removed
//! and the real one set, so the agent never needs (or sees) the real value.
//!
//! Header values built here are marked sensitive, so hyper's and http's
//! `Debug` output never show them.

use bottle_secret::Secret;
use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::addr::HostKind;
use crate::config::{AuthScheme, Token};

/// The index in `tokens` of the `http` token whose host pattern matches
/// `host`, most specific first.
pub fn http_token(tokens: &[Token], host: &HostKind) -> Option<usize> {
    let mut best: Option<((u8, usize), usize)> = None;
    for (i, t) in tokens.iter().enumerate() {
        let Token::Http { host: pat, .. } = t else {
            continue;
        };
        let Some(score) = pat.matches(host) else {
            continue;
        };
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, i));
        }
    }
    best.map(|(_, i)| i)
}

/// Removes `name` and its spellings with `_` for `-` and `-` for `_`: CGI, Rack and
/// PHP-FPM read `X_Api_Key` as `X-Api-Key`, so the upstream would see the
/// agent's value beside the injected one, and take either.
fn remove_every_spelling(headers: &mut HeaderMap, name: &HeaderName) {
    headers.remove(name);
    let want = name.as_str().as_bytes();
    let alike = |h: &HeaderName| {
        let h = h.as_str().as_bytes();
        h.len() == want.len()
            && h.iter()
                .zip(want)
                .all(|(&a, &b)| a == b || (matches!(a, b'_' | b'-') && matches!(b, b'_' | b'-')))
    };
    let others: Vec<HeaderName> = headers.keys().filter(|h| alike(h)).cloned().collect();
    for h in others {
        headers.remove(&h);
    }
}

fn sensitive(v: &str) -> Option<HeaderValue> {
    let mut h = HeaderValue::from_str(v).ok()?;
    h.set_sensitive(true);
    Some(h)
}

/// Replaces the header of `scheme` with the real credential. Returns false
/// when the secret cannot be a header value (then the agent's header is
/// still removed and nothing is set).
pub fn apply_http_token(headers: &mut HeaderMap, scheme: &AuthScheme, secret: &Secret) -> bool {
    let name = scheme.header();
    remove_every_spelling(headers, &name);
    let value = match scheme {
        AuthScheme::Bearer => format!("Bearer {}", secret.expose()),
        AuthScheme::Token => format!("token {}", secret.expose()),
        AuthScheme::Basic => format!("Basic {}", base64(secret.expose().as_bytes())),
        AuthScheme::Header(_) => secret.expose().to_string(),
    };
    match sensitive(&value) {
        Some(v) => {
            headers.insert(name, v);
            true
        }
        None => false,
    }
}

/// The headers a model API credential may travel in; all removed before injecting.
pub const MODEL_AUTH_HEADERS: [HeaderName; 2] =
    [header::AUTHORIZATION, HeaderName::from_static("x-api-key")];

/// Anthropic: an API key (`sk-ant-api…`) goes in `x-api-key`; anything else
/// (the OAuth `sk-ant-oat…` token) as `Authorization: Bearer`.
pub fn apply_anthropic(headers: &mut HeaderMap, secret: &Secret) -> bool {
    for h in &MODEL_AUTH_HEADERS {
        remove_every_spelling(headers, h);
    }
    let v = secret.expose();
    if v.starts_with("sk-ant-api") {
        sensitive(v)
            .map(|v| headers.insert(HeaderName::from_static("x-api-key"), v))
            .is_some()
    } else {
        sensitive(&format!("Bearer {v}"))
            .map(|v| headers.insert(header::AUTHORIZATION, v))
            .is_some()
    }
}

/// OpenAI: always `Authorization: Bearer`.
pub fn apply_openai(headers: &mut HeaderMap, secret: &Secret) -> bool {
    for h in &MODEL_AUTH_HEADERS {
        remove_every_spelling(headers, h);
    }
    sensitive(&format!("Bearer {}", secret.expose()))
        .map(|v| headers.insert(header::AUTHORIZATION, v))
        .is_some()
}

/// Standard base64 with padding (for `Basic`).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::classify_host;
    use crate::route::HostPattern;

    /// The agent's own value under the underscore spelling a CGI, Rack or
    /// PHP upstream reads as the same header never goes along.
    #[test]
    fn every_spelling_of_the_credential_header_is_replaced() {
        let secret = Secret::new("real-value-123");
        let mut h = HeaderMap::new();
        h.insert("x_api_key", HeaderValue::from_static("agents"));
        h.insert("x-api_key", HeaderValue::from_static("agents"));
        h.insert("x-other", HeaderValue::from_static("kept"));
        let scheme = AuthScheme::Header(HeaderName::from_static("x-api-key"));
        assert!(apply_http_token(&mut h, &scheme, &secret));
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-other", "x-api-key"], "{h:?}");
        let mut h = HeaderMap::new();
        h.insert("x_api_key", HeaderValue::from_static("agents"));
        assert!(apply_anthropic(&mut h, &Secret::new("sk-ant-api03-x")));
        assert_eq!(h.get_all("x-api-key").iter().count(), 1);
        assert!(h.get("x_api_key").is_none());
        let mut h = HeaderMap::new();
        h.insert("x_api_key", HeaderValue::from_static("agents"));
        assert!(apply_openai(&mut h, &secret));
        assert!(h.get("x_api_key").is_none());
        // And the other way: the configured name has the underscore.
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("agents"));
        let scheme = AuthScheme::Header(HeaderName::from_static("x_api_key"));
        assert!(apply_http_token(&mut h, &scheme, &secret));
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x_api_key"], "{h:?}");
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn schemes_replace_what_the_agent_sent() {
        let s = Secret::new("real");
        for (scheme, name, want) in [
            (AuthScheme::Bearer, "authorization", "Bearer real"),
            (AuthScheme::Token, "authorization", "token real"),
            (AuthScheme::Basic, "authorization", "Basic cmVhbA=="),
            (
                AuthScheme::parse("header:X-Api-Token").unwrap(),
                "x-api-token",
                "real",
            ),
        ] {
            let mut h = HeaderMap::new();
            h.append(name, HeaderValue::from_static("agent-fake"));
            h.append(name, HeaderValue::from_static("agent-fake-2"));
            assert!(apply_http_token(&mut h, &scheme, &s));
            let got: Vec<_> = h.get_all(name).iter().collect();
            assert_eq!(got, vec![want], "{scheme:?}");
            assert!(
                !format!("{h:?}").contains("real"),
                "sensitive values are hidden"
            );
        }
    }

    #[test]
    fn anthropic_key_kinds() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer placeholder"),
        );
        h.insert("x-api-key", HeaderValue::from_static("placeholder"));
        apply_anthropic(&mut h, &Secret::new("sk-ant-api03-abc"));
        assert_eq!(h.get("x-api-key").unwrap(), "sk-ant-api03-abc");
        assert!(h.get("authorization").is_none());
        apply_anthropic(&mut h, &Secret::new("sk-ant-oat01-abc"));
        assert_eq!(h.get("authorization").unwrap(), "Bearer sk-ant-oat01-abc");
        assert!(h.get("x-api-key").is_none());
        apply_openai(&mut h, &Secret::new("sk-proj-1"));
        assert_eq!(h.get("authorization").unwrap(), "Bearer sk-proj-1");
    }

    #[test]
    fn token_lookup_by_host() {
        let tokens = vec![
            Token::Http {
                host: HostPattern::parse("*.github.com").unwrap(),
                scheme: AuthScheme::Token,
                secret: Secret::new("w"),
            },
            Token::Http {
                host: HostPattern::parse("api.github.com").unwrap(),
                scheme: AuthScheme::Bearer,
                secret: Secret::new("e"),
            },
        ];
        let secret = |tokens: &[Token], i: usize| match &tokens[i] {
            Token::Http { scheme, secret, .. } => (scheme.clone(), secret.expose().to_string()),
            _ => unreachable!(),
        };
        let i = http_token(&tokens, &classify_host("api.github.com")).unwrap();
        assert_eq!(secret(&tokens, i), (AuthScheme::Bearer, "e".to_string()));
        let i = http_token(&tokens, &classify_host("raw.github.com")).unwrap();
        assert_eq!(secret(&tokens, i).1, "w");
        assert!(http_token(&tokens, &classify_host("github.com")).is_none());
        // The deeper wildcard's token wins in either order.
        let deep = Token::Http {
            host: HostPattern::parse("*.gist.github.com").unwrap(),
            scheme: AuthScheme::Bearer,
            secret: Secret::new("g"),
        };
        let mut first = vec![deep.clone()];
        first.extend(tokens.iter().cloned());
        for tokens in [first, [tokens, vec![deep]].concat()] {
            let i = http_token(&tokens, &classify_host("a.gist.github.com")).unwrap();
            assert_eq!(secret(&tokens, i).1, "g");
        }
    }
}
