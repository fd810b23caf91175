//! Route matching: which host, port, method and path may pass. Pure: no I/O,
//! no async, so every rule is unit-tested directly.
//!
//! Paths are matched after percent-decoding and dot-segment removal, because
//! the upstream will decode them too: matching the raw string would let
//! `/allowed/%2e%2e/admin` through a prefix rule for `/allowed/`. Encoded
//! slashes, backslashes and NUL have no single meaning across servers, so a
//! path containing them is refused instead of guessed at.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use regex::Regex;

use crate::addr::{HostKind, classify_host};
use crate::error::{Deny, Failure};

/// How a host of a route is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`: any DNS name (never an IP literal).
    Any,
    /// `example.com` exactly.
    Exact(String),
    /// `*.example.com`: stored as `.example.com`; any depth, never the apex.
    Suffix(String),
    /// A route naming an address: the only way an IP literal passes.
    Ip(IpAddr),
}

impl HostPattern {
    pub fn parse(host: &str) -> Result<Self, String> {
        let host = host.trim();
        if host == "*" {
            return Ok(HostPattern::Any);
        }
        if let Some(rest) = host.strip_prefix("*.") {
            return match classify_host(rest) {
                HostKind::Name(n) if valid_name(&n) => Ok(HostPattern::Suffix(format!(".{n}"))),
                _ => Err(format!("bad host pattern {host:?}")),
            };
        }
        match classify_host(host) {
            HostKind::Name(n) if valid_name(&n) => Ok(HostPattern::Exact(n)),
            HostKind::Ip(ip) => Ok(HostPattern::Ip(ip)),
            _ => Err(format!("bad host {host:?}")),
        }
    }

    /// How specifically this pattern matches `host`, or `None`: exact and
    /// IP beat every `*.x`, a longer `*.x` beats a shorter one
    /// (`*.api.example.com` over `*.example.com`, whatever their order in
    /// the config), and every `*.x` beats `*`. Route choice, the rules a
    /// token's implied route keeps and the token chosen for a host all
    /// rank by this, so they cannot disagree.
    pub(crate) fn matches(&self, host: &HostKind) -> Option<(u8, usize)> {
        match (self, host) {
            (HostPattern::Ip(a), HostKind::Ip(b)) if a == b => Some((3, 0)),
            (HostPattern::Exact(a), HostKind::Name(b)) if a == b => Some((3, 0)),
            (HostPattern::Suffix(s), HostKind::Name(b)) if b.ends_with(s.as_str()) => {
                Some((2, s.len()))
            }
            (HostPattern::Any, HostKind::Name(_)) => Some((1, 0)),
            _ => None,
        }
    }
}

/// A DNS name the proxy is willing to handle: LDH labels (plus `_`), each 1-63
/// bytes, 253 bytes total.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    Intercept,
    Passthrough,
}

#[derive(Debug, Clone)]
pub enum PathRule {
    Prefix(String),
    Regex(Regex),
}

impl PathRule {
    pub fn parse(rule: &str) -> Result<Self, String> {
        match rule.strip_prefix("re:") {
            Some(re) => Regex::new(re)
                .map(PathRule::Regex)
                .map_err(|e| format!("bad path regex {re:?}: {e}")),
            None if rule.starts_with('/') => Ok(PathRule::Prefix(rule.to_string())),
            None => Err(format!("path {rule:?} must start with / or re:")),
        }
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathRule::Prefix(p) => path.starts_with(p.as_str()),
            PathRule::Regex(r) => r.is_match(path),
        }
    }
}

/// One allowed destination.
#[derive(Debug, Clone)]
pub struct Route {
    /// As written in the config, for audit events (`rule`).
    pub name: String,
    pub pattern: HostPattern,
    /// Upper-case method names; `None` allows any.
    pub methods: Option<Vec<String>>,
    /// `None` allows any path.
    pub paths: Option<Vec<PathRule>>,
    /// `None`: 80 for http, 443 for https.
    pub ports: Option<Vec<u16>>,
    pub tls: Tls,
}

/// Which door a request came through; decides the default port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl Route {
    fn port_allowed(&self, port: u16, scheme: Scheme) -> bool {
        match &self.ports {
            Some(ports) => ports.contains(&port),
            None => port == scheme.default_port(),
        }
    }

    /// Method and path rules, applied to plain HTTP and to requests inside an
    /// intercepted tunnel. `path` is the raw request path, with its query
    /// (read for `_method`) or without.
    ///
    /// The path goes upstream as the agent wrote it, so a path the rules
    /// judge must mean the same to every server: on a route with path rules
    /// one with dot segments is refused rather than matched in its cleaned
    /// form (servers that keep `..`, that do not merge `//` before removing
    /// dot segments, or that read `..;` as `..` would serve another path).
    /// Headers some frameworks take as the real method or path are held to
    /// the same rules.
    pub fn check_request(&self, method: &str, path: &str, headers: &HeaderMap) -> Result<(), Deny> {
        if let Some(methods) = &self.methods {
            let allowed = |m: &str| methods.iter().any(|a| a == m);
            let overrides = method_overrides(headers, path)
                .into_iter()
                .all(|v| v.is_some_and(|v| allowed(&v.trim().to_ascii_uppercase())));
            if !allowed(method) || !overrides {
                return Err(Deny::Method);
            }
        }
        if let Some(rules) = &self.paths {
            let (norm, dotted) = normalize(path)?;
            if dotted || has_path_override(headers) || !rules.iter().any(|r| r.matches(&norm)) {
                return Err(Deny::Path);
            }
        }
        Ok(())
    }

    /// Whether this route has request-level rules that need decryption.
    pub fn has_request_rules(&self) -> bool {
        self.methods.is_some() || self.paths.is_some()
    }
}

/// All routes of a proxy.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Shared so a request can hold its route without copying regexes.
    pub routes: Vec<Arc<Route>>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        Self {
            routes: routes.into_iter().map(Arc::new).collect(),
        }
    }

    /// The most specific route for a host and port, or why there is none.
    /// A wrong port names the route that matched the host: the refusal then
    /// says which rule refused.
    ///
    /// A name that is no DNS name once its one trailing dot is gone is
    /// refused (`malformed`) before any route is looked at:
    /// `api.github.com..` matched no exact route, so `*` took it while it
    /// still resolved to api.github.com (lifting the stricter route's
    /// rules), and `.example.com` was the apex under `*.example.com`.
    /// Route patterns are held to the same rule ([`valid_name`]).
    pub fn find(&self, host: &HostKind, port: u16, scheme: Scheme) -> Result<&Arc<Route>, Failure> {
        match host {
            HostKind::BadNumeric => return Err(Deny::IpLiteral.into()),
            HostKind::Name(n) if !valid_name(n) => return Err(Deny::Malformed.into()),
            _ => {}
        }
        let mut best: Option<((u8, usize), &Arc<Route>)> = None;
        for r in &self.routes {
            if let Some(score) = r.pattern.matches(host)
                && best.is_none_or(|(s, _)| score > s)
            {
                best = Some((score, r));
            }
        }
        match best {
            Some((_, r)) if r.port_allowed(port, scheme) => Ok(r),
            Some((_, r)) => Err(Failure::with_rule(Deny::Port, r.name.clone())),
            None if matches!(host, HostKind::Ip(_)) => Err(Deny::IpLiteral.into()),
            None => Err(Deny::NoRoute.into()),
        }
    }

    /// True when some route names this IP address (so the SSRF guard lets it pass).
    pub fn names_ip(&self, ip: IpAddr) -> bool {
        let ip = crate::addr::canonical(ip);
        self.routes.iter().any(|r| r.pattern == HostPattern::Ip(ip))
    }

    /// Whether a name that resolves to `ip` may reach it on `port`: a
    /// route names the address with nothing narrower than the port (no
    /// `methods`, no `paths`; `ports` listing this one, or none and the
    /// port 80 or 443). A request by name is judged by the name's route,
    /// so an address route's own rules would not apply to it: with `*`
    /// also allowed, a name the agent points at the address would lift
    /// them. Such an address is reached by its literal (its route applies)
    /// or through a `resolve` pin.
    pub fn opens_ip_to_names(&self, ip: IpAddr, port: u16) -> bool {
        let ip = crate::addr::canonical(ip);
        self.routes.iter().any(|r| {
            r.pattern == HostPattern::Ip(ip)
                && !r.has_request_rules()
                && match &r.ports {
                    Some(ports) => ports.contains(&port),
                    None => port == 80 || port == 443,
                }
        })
    }
}

/// Percent-decodes a request path, removes dot segments and empty segments.
/// Refuses (as `malformed`) encoded `/`, `\`, NUL, bad escapes, non-UTF-8,
/// anything not starting with `/`, and a path that decoded once still holds
/// an escape of `.`, `/`, `\` or `%` (double encoding: a server that decodes
/// twice would see a different path than the one the route matched).
pub fn normalize_path(raw: &str) -> Result<String, Deny> {
    normalize(raw).map(|(norm, _)| norm)
}

/// Headers that frameworks (Rails, Laravel, Express middleware, Google
/// APIs) read as the request's method in place of the request line's.
pub(crate) const METHOD_OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Whether header `name` is one of `names` as servers that map `_` to
/// `-` read it (Rack, CGI, PHP: `X_HTTP_Method_Override` is
/// `HTTP_X_HTTP_METHOD_OVERRIDE` to them, as the dashed name is). Compared
/// in place: it runs for every header of every request on a route with
/// rules.
fn is_one_of(name: &str, names: &[&str]) -> bool {
    let dashed = |b: u8| if b == b'_' { b'-' } else { b };
    names
        .iter()
        .any(|n| n.len() == name.len() && n.bytes().zip(name.bytes()).all(|(a, b)| a == dashed(b)))
}

/// The methods a request names besides its request line, for the
/// frameworks that take them instead: the headers of [`METHOD_OVERRIDES`]
/// in either spelling, and `_method` in the query (`path` may carry it;
/// Laravel and Symfony read it there, and Rails from a form body, which is
/// not read here). `None` stands for a value that is not text, which no
/// rule allows.
pub(crate) fn method_overrides(headers: &HeaderMap, path: &str) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = headers
        .iter()
        .filter(|(k, _)| is_one_of(k.as_str(), METHOD_OVERRIDES))
        .map(|(_, v)| v.to_str().ok().map(str::to_string))
        .collect();
    if let Some((_, query)) = path.split_once('?') {
        let query = query.split('#').next().unwrap_or_default();
        for pair in query.split(['&', ';']) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            // Read as PHP and Rack read a field name, as for form bodies.
            // Bytes, not text: PHP ends a name at a NUL, so
            // `_method%00%ff` is `_method` to it.
            let key = percent_decoded_bytes(&key.replace('+', " "));
            if crate::form_method::names_method(key.trim_ascii()) {
                out.push(percent_decoded(&value.replace('+', " ")));
            }
        }
    }
    out
}

/// `%XX` escapes decoded; `None` when the result is not UTF-8. A `%` that
/// starts no escape stays as it is.
fn percent_decoded(s: &str) -> Option<String> {
    String::from_utf8(percent_decoded_bytes(s)).ok()
}

/// `%XX` escapes decoded, as bytes.
fn percent_decoded_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Headers that some servers (IIS, older Symfony) route by in place of the
/// request line's path.
const PATH_OVERRIDES: &[&str] = &["x-original-url", "x-rewrite-url"];

/// Whether a header some frameworks take as the real path is present.
pub fn has_path_override(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|k| is_one_of(k.as_str(), PATH_OVERRIDES))
}

/// [`normalize_path`], and whether the path had a dot segment (`.`, `..`,
/// or one of them with `;` parameters, which Tomcat and Jetty read as the
/// segment alone).
fn normalize(raw: &str) -> Result<(String, bool), Deny> {
    let raw = raw.split(['?', '#']).next().unwrap_or("");
    if !raw.starts_with('/') {
        return Err(Deny::Malformed);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16));
            let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(Deny::Malformed);
            };
            let d = (hi * 16 + lo) as u8;
            if d == b'/' || d == b'\\' || d == 0 {
                return Err(Deny::Malformed);
            }
            out.push(d);
            i += 3;
        } else {
            if b == 0 {
                return Err(Deny::Malformed);
            }
            // Some servers treat `\` as `/`; match as they would.
            out.push(if b == b'\\' { b'/' } else { b });
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).map_err(|_| Deny::Malformed)?;
    if double_encoded(&decoded) {
        return Err(Deny::Malformed);
    }
    let mut segs: Vec<&str> = Vec::new();
    let mut dotted = false;
    for seg in decoded.split('/') {
        match seg {
            "" => {}
            "." => dotted = true,
            ".." => {
                dotted = true;
                segs.pop();
            }
            s => {
                dotted |= matches!(s.split(';').next(), Some("." | ".."));
                segs.push(s);
            }
        }
    }
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut norm = String::with_capacity(decoded.len());
    for s in &segs {
        norm.push('/');
        norm.push_str(s);
    }
    if trailing || norm.is_empty() {
        norm.push('/');
    }
    Ok((norm, dotted))
}

/// `%2e`, `%2f`, `%5c` or `%25` (any case) left after one decoding.
fn double_encoded(once: &str) -> bool {
    once.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1].to_ascii_lowercase(), w[2].to_ascii_lowercase()),
                (b'2', b'e') | (b'2', b'f') | (b'5', b'c') | (b'2', b'5')
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn double_encoded_path_tricks_are_refused() {
        for p in [
            "/public/%252e%252e/private",
            "/public/%252E%252E/private",
            "/a/%252fb",
            "/a/%255c..",
            "/a/%25252e",
        ] {
            assert_eq!(normalize_path(p), Err(Deny::Malformed), "{p}");
        }
        // A literal percent sign that does not form such an escape is fine.
        assert_eq!(normalize_path("/a/100%25/b").unwrap(), "/a/100%/b");
        assert_eq!(normalize_path("/q/%2541").unwrap(), "/q/%41");
    }

    fn none() -> HeaderMap {
        HeaderMap::new()
    }

    fn route(host: &str, methods: Option<&[&str]>, paths: Option<&[&str]>) -> Route {
        Route {
            name: host.into(),
            pattern: HostPattern::parse(host).unwrap(),
            methods: methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
            paths: paths.map(|p| p.iter().map(|s| PathRule::parse(s).unwrap()).collect()),
            ports: None,
            tls: Tls::Intercept,
        }
    }

    fn find<'a>(t: &'a RouteTable, host: &str, port: u16) -> Result<&'a str, Deny> {
        t.find(&classify_host(host), port, Scheme::Https)
            .map(|r| r.name.as_str())
            .map_err(|m| m.deny)
    }

    #[test]
    fn exact_and_wildcard_hosts() {
        let t = RouteTable::new(vec![
            route("api.github.com", None, None),
            route("*.example.com", None, None),
        ]);
        assert_eq!(find(&t, "api.github.com", 443), Ok("api.github.com"));
        assert_eq!(find(&t, "API.GitHub.com.", 443), Ok("api.github.com"));
        assert_eq!(find(&t, "a.example.com", 443), Ok("*.example.com"));
        assert_eq!(find(&t, "a.b.c.example.com", 443), Ok("*.example.com"));
        // The apex of a wildcard is not covered; neither are look-alikes.
        assert_eq!(find(&t, "example.com", 443), Err(Deny::NoRoute));
        assert_eq!(find(&t, "evilexample.com", 443), Err(Deny::NoRoute));
        assert_eq!(find(&t, "example.com.evil.net", 443), Err(Deny::NoRoute));
        assert_eq!(find(&t, "github.com", 443), Err(Deny::NoRoute));
        assert_eq!(find(&t, "x.api.github.com", 443), Err(Deny::NoRoute));
    }

    /// A deeper wildcard is more specific than a shallower one in either
    /// order: otherwise `*.example.com` listed first would lift the
    /// `methods: [GET]` written for `*.internal.example.com`.
    #[test]
    fn deeper_wildcard_wins_whatever_the_order() {
        let broad = route("*.example.com", None, None);
        let narrow = route("*.internal.example.com", Some(&["GET"]), None);
        for routes in [
            vec![broad.clone(), narrow.clone()],
            vec![narrow.clone(), broad.clone()],
        ] {
            let t = RouteTable::new(routes);
            assert_eq!(
                find(&t, "db.internal.example.com", 443),
                Ok("*.internal.example.com")
            );
            assert_eq!(find(&t, "www.example.com", 443), Ok("*.example.com"));
            // `*` still loses to both, exact still beats both.
            let mut with_any = vec![
                route("*", None, None),
                route("db.internal.example.com", None, None),
            ];
            with_any.extend(t.routes.iter().map(|r| (**r).clone()));
            let t = RouteTable::new(with_any);
            assert_eq!(
                find(&t, "x.internal.example.com", 443),
                Ok("*.internal.example.com")
            );
            assert_eq!(
                find(&t, "db.internal.example.com", 443),
                Ok("db.internal.example.com")
            );
        }
    }

    #[test]
    fn ports_default_by_scheme() {
        let mut r = route("h.test", None, None);
        let t = RouteTable::new(vec![r.clone()]);
        let find = |t: &RouteTable, port, scheme| {
            t.find(&classify_host("h.test"), port, scheme).map(|_| ())
        };
        // A wrong port names the route that matched the host.
        let port = Err(Failure::with_rule(Deny::Port, "h.test"));
        assert_eq!(find(&t, 443, Scheme::Https), Ok(()));
        assert_eq!(find(&t, 80, Scheme::Http), Ok(()));
        assert_eq!(find(&t, 22, Scheme::Https), port);
        assert_eq!(find(&t, 80, Scheme::Https), port);
        r.ports = Some(vec![8443]);
        let t = RouteTable::new(vec![r]);
        assert_eq!(find(&t, 8443, Scheme::Https), Ok(()));
        assert_eq!(find(&t, 443, Scheme::Https), port);
    }

    #[test]
    fn star_never_admits_ip_literals() {
        let t = RouteTable::new(vec![route("*", None, None)]);
        assert_eq!(find(&t, "anything.test", 443), Ok("*"));
        for ip in [
            "127.0.0.1",
            "2130706433",
            "0x7f.1",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "1.2.3.09",
        ] {
            assert_eq!(find(&t, ip, 443), Err(Deny::IpLiteral), "{ip}");
        }
    }

    #[test]
    fn a_route_naming_an_ip_admits_every_spelling_of_it() {
        let t = RouteTable::new(vec![route("10.0.0.5", None, None)]);
        for ip in [
            "10.0.0.5",
            "167772165",
            "0x0a000005",
            "012.5",
            "[::ffff:10.0.0.5]",
        ] {
            assert_eq!(find(&t, ip, 443), Ok("10.0.0.5"), "{ip}");
        }
        assert_eq!(find(&t, "10.0.0.6", 443), Err(Deny::IpLiteral));
        assert!(t.names_ip("::ffff:10.0.0.5".parse().unwrap()));
    }

    #[test]
    fn most_specific_route_wins() {
        let t = RouteTable::new(vec![
            route("*", None, None),
            route("*.github.com", Some(&["GET"]), None),
            route("api.github.com", Some(&["POST"]), None),
        ]);
        assert_eq!(find(&t, "api.github.com", 443), Ok("api.github.com"));
        assert_eq!(find(&t, "raw.github.com", 443), Ok("*.github.com"));
        assert_eq!(find(&t, "other.org", 443), Ok("*"));
    }

    #[test]
    fn methods_and_paths() {
        let r = route(
            "h",
            Some(&["GET", "HEAD"]),
            Some(&["/repos/acme/", "re:^/user$"]),
        );
        assert_eq!(r.check_request("GET", "/repos/acme/app", &none()), Ok(()));
        assert_eq!(r.check_request("GET", "/user", &none()), Ok(()));
        assert_eq!(r.check_request("GET", "/user?x=1", &none()), Ok(()));
        assert_eq!(
            r.check_request("POST", "/repos/acme/app", &none()),
            Err(Deny::Method)
        );
        assert_eq!(
            r.check_request("get", "/repos/acme/app", &none()),
            Err(Deny::Method)
        );
        assert_eq!(r.check_request("GET", "/users", &none()), Err(Deny::Path));
        assert_eq!(
            r.check_request("GET", "/repos/other/", &none()),
            Err(Deny::Path)
        );
    }

    #[test]
    fn traversal_tricks_do_not_escape_a_prefix() {
        let r = route("h", None, Some(&["/repos/acme/"]));
        for p in [
            "/repos/acme/../../admin",
            "/repos/acme/%2e%2e/%2E%2E/admin",
            "/repos/acme/.%2e/x",
            "/repos/acme/..\\..\\admin",
            "/repos/acme/%2e%2e\\admin",
            "/repos/./acme/../other/",
        ] {
            assert!(r.check_request("GET", p, &none()).is_err(), "{p}");
        }
        for p in [
            "/repos/acme/%2fadmin",
            "/repos/acme/%5c..%5cadmin",
            "/repos/acme/%00",
            "/repos/acme/%zz",
        ] {
            assert_eq!(
                r.check_request("GET", p, &none()),
                Err(Deny::Malformed),
                "{p}"
            );
        }
        assert_eq!(r.check_request("GET", "//repos//acme//y", &none()), Ok(()));
        assert_eq!(r.check_request("GET", "/repos/%61cme/y", &none()), Ok(()));
    }

    /// The path goes upstream as written: one whose cleaned form matches
    /// while a server could read it as another path is refused.
    #[test]
    fn paths_a_server_could_read_differently_are_refused() {
        let r = route("h", None, Some(&["/repos/myorg/"]));
        for p in [
            // Routed as `victim/private` by servers that keep `..`.
            "/repos/victim/private/../../myorg/x",
            // RFC 3986 dot removal without merging `//` first.
            "/repos/victim/r/contents/a//..//..//..//../myorg/x",
            // Tomcat and Spring read `..;` as `..`.
            "/repos/myorg/x/..;/..;/victim/private",
            "/repos/myorg/x/..%3B/..%3b/victim/private",
            "/repos/myorg/x/.;jsessionid=1/y",
            "/repos/myorg/x/../y",
            "/repos/myorg/./x",
            "/repos/myorg/x/%2e%2e/y",
        ] {
            assert_eq!(r.check_request("GET", p, &none()), Err(Deny::Path), "{p}");
        }
        // A name that merely starts with dots is a name.
        assert_eq!(
            r.check_request("GET", "/repos/myorg/...x/..y;z", &none()),
            Ok(())
        );
    }

    #[test]
    fn method_and_path_override_headers_are_held_to_the_rules() {
        let r = route("h", Some(&["GET", "POST"]), Some(&["/repos/myorg/"]));
        let with = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.append(name, http::HeaderValue::from_static(value));
            h
        };
        let path = "/repos/myorg/x";
        for (h, v) in [
            ("x-http-method-override", "DELETE"),
            ("x-http-method", "put"),
            ("x-method-override", "PATCH"),
        ] {
            assert_eq!(
                r.check_request("POST", path, &with(h, v)),
                Err(Deny::Method),
                "{h}"
            );
        }
        assert_eq!(
            r.check_request("POST", path, &with("x-http-method-override", " get ")),
            Ok(())
        );
        for h in ["x-original-url", "x-rewrite-url"] {
            assert_eq!(
                r.check_request("GET", path, &with(h, "/admin")),
                Err(Deny::Path),
                "{h}"
            );
        }
        // Attack: the underscore spellings, which Rack, CGI and PHP read as
        // the dashed names.
        for (h, v) in [
            ("x_http_method_override", "DELETE"),
            ("x-http_method", "PUT"),
        ] {
            assert_eq!(
                r.check_request("POST", path, &with(h, v)),
                Err(Deny::Method),
                "{h}"
            );
        }
        assert_eq!(
            r.check_request("GET", path, &with("x_original_url", "/admin")),
            Err(Deny::Path)
        );
        // Attack: `_method` in the query (Laravel, Symfony), any case or
        // escape of its name and value.
        for q in [
            "?_method=DELETE",
            "?a=1&_METHOD=delete",
            "?%5Fmethod=PUT",
            "?_method=DEL%45TE",
            "?x;_method=PATCH",
            "?_method=%ff",
            // PHP's spellings of the name, as in form bodies.
            "?.method=DELETE",
            "?+_method=DELETE",
            "?%20_method=DELETE",
            "?_method[]=DELETE",
            // PHP ends a name at a NUL; the rest need not be text.
            "?_method%00=DELETE",
            "?_method%00%ff=DELETE",
        ] {
            assert_eq!(
                r.check_request("POST", &format!("{path}{q}"), &none()),
                Err(Deny::Method),
                "{q}"
            );
        }
        assert_eq!(
            r.check_request(
                "POST",
                &format!("{path}?_method=get&method=DELETE"),
                &none()
            ),
            Ok(())
        );
        // Without rules for them, the headers are the upstream's business.
        let open = route("h", None, None);
        assert_eq!(
            open.check_request("GET", "/x/../y", &with("x-original-url", "/a")),
            Ok(())
        );
    }

    #[test]
    fn normalize_examples() {
        assert_eq!(normalize_path("/").unwrap(), "/");
        assert_eq!(normalize_path("/a/b/../c/./d/").unwrap(), "/a/c/d/");
        assert_eq!(normalize_path("/../../..").unwrap(), "/");
        assert_eq!(normalize_path("/a/..").unwrap(), "/");
        assert_eq!(normalize_path("/a/%2e").unwrap(), "/a/");
        assert_eq!(normalize_path("*"), Err(Deny::Malformed));
        assert_eq!(normalize_path("http://x/"), Err(Deny::Malformed));
    }

    #[test]
    fn host_pattern_errors() {
        assert!(HostPattern::parse("*.").is_err());
        assert!(HostPattern::parse("a b").is_err());
        assert!(HostPattern::parse("*.1.2.3.4").is_err());
        assert!(HostPattern::parse("").is_err());
    }

    proptest! {
        #[test]
        fn normalized_paths_have_no_dot_segments(p in "(/(\\.|\\.\\.|%2e|%2E%2e|[a-z]{1,3}|\\\\)){0,8}") {
            let raw = if p.is_empty() { "/".to_string() } else { p };
            if let Ok(n) = normalize_path(&raw) {
                prop_assert!(n.starts_with('/'));
                prop_assert!(!n.split('/').any(|s| s == ".." || s == "."));
                prop_assert!(!n.contains('\\'));
                // Normalising is idempotent: what we matched is what a second pass sees.
                prop_assert_eq!(normalize_path(&n).ok(), Some(n.clone()));
            }
        }
    }
}
