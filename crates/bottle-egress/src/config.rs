//! The proxy configuration: YAML or JSON from a file (standalone `proxy`), or a
//! [`RawConfig`] the sidecar deserialises itself and completes with its own
//! secrets. Unknown keys are errors; relative paths are relative to the
//! folder of the file.
//!
//! Secret values never appear in the file: a token names a `token_ref` that a
//! [`SecretSource`] turns into a [`Secret`] at load time (the process
//! environment for standalone, the values handed over on stdin for the
//! sidecar).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use bottle_secret::Secret;
use serde::Deserialize;

use crate::addr::{HostAddresses, HostKind, classify_host};
use crate::error::Error;
use crate::limits::Limits;
use crate::route::{HostPattern, PathRule, Route, RouteTable, Tls};

/// The host name the proxy always answers itself (`/health`, `/ca.pem`,
/// the reverse proxy); see [`OwnNames`].
pub const INTERNAL_HOST: &str = "claude-bottle.local";

/// The default listen address of the standalone proxy.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3128";

/// The file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    #[serde(default)]
    pub allow: Vec<RawRoute>,
    pub dlp: Option<DlpMode>,
    pub log: Option<LogMode>,
    #[serde(default)]
    pub tokens: Vec<RawToken>,
    #[serde(default)]
    pub known_secret_env: Vec<String>,
    pub ca: Option<RawCa>,
    pub upstream_ca: Option<PathBuf>,
    pub upstream_proxy: Option<String>,
    #[serde(default)]
    pub resolve: BTreeMap<String, String>,
    /// The addresses of the machine the bottle runs on; see
    /// [`ProxyConfig::host_addresses`].
    #[serde(default)]
    pub host_addresses: Vec<String>,
    pub audit: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub host: String,
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub tls: Option<Tls>,
    pub ports: Option<Vec<u16>>,
    /// The injected scheme, as the plan JSON shows it. Informational only:
    /// `tokens` decide what is injected.
    pub auth: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub kind: TokenKind,
    pub token_ref: String,
    pub host: Option<String>,
    pub scheme: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCa {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DlpMode {
    #[default]
    Block,
    Redact,
    Log,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogMode {
    Off,
    #[default]
    Events,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Anthropic,
    Openai,
    Http,
}

impl<'de> Deserialize<'de> for Tls {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "intercept" => Ok(Tls::Intercept),
            "passthrough" => Ok(Tls::Passthrough),
            other => Err(serde::de::Error::custom(format!(
                "tls: {other:?} is not intercept or passthrough"
            ))),
        }
    }
}

/// How an `http` token is put on the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Bearer <v>`
    Bearer,
    /// `Authorization: token <v>` (GitHub style)
    Token,
    /// `Authorization: Basic base64(<v>)`, the value being `user:password`
    Basic,
    /// `<Name>: <v>`
    Header(http::HeaderName),
}

impl AuthScheme {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "Bearer" | "bearer" => Ok(AuthScheme::Bearer),
            "token" | "Token" => Ok(AuthScheme::Token),
            "basic" | "Basic" => Ok(AuthScheme::Basic),
            _ => match s.strip_prefix("header:") {
                Some(name) => http::HeaderName::from_bytes(name.trim().as_bytes())
                    .map(AuthScheme::Header)
                    .map_err(|_| format!("scheme {s:?}: bad header name")),
                None => Err(format!(
                    "scheme {s:?}: want Bearer, token, basic or header:<Name>"
                )),
            },
        }
    }

    /// The header this scheme sets (and strips from the agent's request).
    pub fn header(&self) -> http::HeaderName {
        match self {
            AuthScheme::Header(h) => h.clone(),
            _ => http::header::AUTHORIZATION,
        }
    }
}

/// A credential held by the proxy.
#[derive(Debug, Clone)]
pub enum Token {
    Anthropic(Secret),
    Openai(Secret),
    Http {
        host: HostPattern,
        scheme: AuthScheme,
        secret: Secret,
    },
}

/// Where a name is pinned by the `resolve` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    pub ip: IpAddr,
    /// Replaces the request's port when set.
    pub port: Option<u16>,
}

/// The interception CA: files to load, or PEM text handed over directly.
#[derive(Debug, Clone)]
pub enum CaSource {
    Files { cert: PathBuf, key: PathBuf },
    Pem { cert: String, key: Secret },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    Stdout,
    File(PathBuf),
    /// Kept in memory; for tests and embedding.
    Memory,
}

/// An upstream proxy (`http://host:port`) that every upstream is reached through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamProxy {
    pub host: String,
    pub port: u16,
}

/// Everything the proxy needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub routes: RouteTable,
    pub dlp: DlpMode,
    pub log: LogMode,
    pub tokens: Vec<Token>,
    pub known_secrets: Vec<Secret>,
    pub ca: Option<CaSource>,
    pub upstream_ca: Option<PathBuf>,
    pub upstream_proxy: Option<UpstreamProxy>,
    pub resolve: HashMap<String, Pin>,
    /// The addresses of the machine the bottle runs on: refused after
    /// resolving like the fixed private ranges, unless a route or `resolve`
    /// names the address. A container on an ordinary bridge reaches its
    /// host at every host address as local traffic (the sidecar's own
    /// connections included), public ones too, which no fixed range
    /// covers. The CLI fills it in for a local engine.
    pub host_addresses: HostAddresses,
    pub audit: AuditTarget,
    pub limits: Limits,
    /// The names (and addresses) that are the proxy itself. Not part of the
    /// file: the sidecar adds its own (`sidecar`, the names its DNS answers
    /// and the addresses it gives for them); see [`ProxyConfig::is_own`].
    pub own_names: OwnNames,
}

/// The host names the proxy answers itself: an absolute-form request to one
/// of them (`GET http://sidecar:3128/anthropic/...`, from a client whose
/// `HTTP_PROXY` also covers the proxy's own URL) is served exactly like the
/// origin-form request (`/health`, `/ca.pem`, the reverse proxy; anything
/// else `no-route`) and is never forwarded, whatever the routes or the
/// `resolve` table say; a `CONNECT` to one is refused (`no-route`).
/// [`INTERNAL_HOST`] (`claude-bottle.local`) always is one.
///
/// It also holds the proxy's own IP addresses (the sidecar's address on the
/// internal network, which its DNS gives for its names): an address is the
/// proxy only together with the listen port, see [`ProxyConfig::is_own`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnNames {
    names: Vec<String>,
    addrs: Vec<IpAddr>,
}

impl OwnNames {
    /// Adds `name` (any case, trailing dot allowed). An IP literal or a
    /// numeric-looking name is an error: own names are names (addresses go
    /// through [`OwnNames::add_addr`]).
    pub fn add(&mut self, name: &str) -> Result<(), Error> {
        match classify_host(name) {
            HostKind::Name(n) if !n.is_empty() => {
                if !self.contains(&n) {
                    self.names.push(n);
                }
                Ok(())
            }
            _ => Err(Error::Invalid(format!(
                "own name {name:?} is not a host name"
            ))),
        }
    }

    /// Adds an address others reach the proxy at; true if it was taken.
    /// The unspecified address (`0.0.0.0`, `::`) names no one, and a
    /// loopback address is everyone's own: neither is taken here (a
    /// loopback listen address counts through [`ProxyConfig::is_own`]).
    pub fn add_addr(&mut self, ip: IpAddr) -> bool {
        let ip = crate::addr::canonical(ip);
        if ip.is_unspecified() || ip.is_loopback() {
            return false;
        }
        if !self.addrs.contains(&ip) {
            self.addrs.push(ip);
        }
        true
    }

    /// Whether `name`, as [`classify_host`] gives it (lower case, no
    /// trailing dot), is the proxy itself.
    pub fn contains(&self, name: &str) -> bool {
        name == INTERNAL_HOST || self.names.iter().any(|n| n == name)
    }

    /// Whether `ip` is one of the added addresses (whatever the port).
    pub fn contains_addr(&self, ip: IpAddr) -> bool {
        self.addrs.contains(&crate::addr::canonical(ip))
    }
}

impl ProxyConfig {
    /// Whether a request's host and port are the proxy itself: one of its
    /// own names on any port, or one of its own addresses on the listen
    /// port. An own address is [`OwnNames::add_addr`]'s, or the listen
    /// address itself when that is a concrete one (not `0.0.0.0`/`::`);
    /// loopback counts only that way. Any other port on an own address is
    /// another service (the sidecar's DNS, its git gate): an ordinary
    /// destination, an IP literal refused unless a route names it, as
    /// before. With listen port 0 (not yet bound) no address is ours.
    pub fn is_own(&self, host: &HostKind, port: u16) -> bool {
        match host {
            HostKind::Name(n) => self.own_names.contains(n),
            HostKind::Ip(ip) => {
                if port == 0 || port != self.listen.port() {
                    return false;
                }
                let ip = crate::addr::canonical(*ip);
                let listen_ip = crate::addr::canonical(self.listen.ip());
                self.own_names.contains_addr(ip) || (!listen_ip.is_unspecified() && ip == listen_ip)
            }
            HostKind::BadNumeric => false,
        }
    }
}

/// Turns a `token_ref` (or a `known_secret_env` name) into its value.
pub trait SecretSource {
    fn get(&self, name: &str) -> Option<Secret>;
}

/// Reads `token_ref`s from the process environment; `file:PATH` reads the
/// first line of a file (relative to the config's folder).
#[derive(Debug, Clone, Default)]
pub struct EnvSecrets {
    pub base: PathBuf,
}

impl SecretSource for EnvSecrets {
    fn get(&self, name: &str) -> Option<Secret> {
        if let Some(path) = name.strip_prefix("file:") {
            let text = std::fs::read_to_string(self.base.join(path)).ok()?;
            let line = text.lines().next().unwrap_or("").trim().to_string();
            return (!line.is_empty()).then(|| Secret::new(line));
        }
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret::new)
    }
}

/// Values handed over directly (the sidecar's `secrets.tokens`).
#[derive(Debug, Clone, Default)]
pub struct MapSecrets(pub HashMap<String, Secret>);

impl SecretSource for MapSecrets {
    fn get(&self, name: &str) -> Option<Secret> {
        self.0.get(name).cloned()
    }
}

impl ProxyConfig {
    /// Loads a YAML or JSON file, secrets from the environment.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let base = base_dir(path);
        Self::load_with(path, &EnvSecrets { base })
    }

    pub fn load_with(path: &Path, secrets: &dyn SecretSource) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw = parse_text(&text).map_err(|source| Error::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_raw(raw, &base_dir(path), secrets)
    }

    /// Checks and resolves a parsed config. `base` is the folder relative
    /// paths are taken from.
    pub fn from_raw(
        raw: RawConfig,
        base: &Path,
        secrets: &dyn SecretSource,
    ) -> Result<Self, Error> {
        let listen = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen
            .parse()
            .map_err(|_| Error::Invalid(format!("listen: {listen:?} is not ADDR:PORT")))?;
        let dlp = raw.dlp.unwrap_or_default();

        let mut tokens = Vec::new();
        for t in &raw.tokens {
            let secret = secrets
                .get(&t.token_ref)
                .ok_or_else(|| Error::MissingSecret(t.token_ref.clone()))?;
            tokens.push(match t.kind {
                TokenKind::Anthropic => Token::Anthropic(secret),
                TokenKind::Openai => Token::Openai(secret),
                TokenKind::Http => {
                    let host = t.host.as_deref().ok_or_else(|| {
                        Error::Invalid(format!("token {}: kind http needs host", t.token_ref))
                    })?;
                    let scheme = t.scheme.as_deref().ok_or_else(|| {
                        Error::Invalid(format!("token {}: kind http needs scheme", t.token_ref))
                    })?;
                    let pattern = HostPattern::parse(host).map_err(Error::Invalid)?;
                    // A token goes to exactly one host, as in a bottle: a
                    // wildcard would send it to any server under the
                    // domain, one the agent may own among them.
                    if !matches!(pattern, HostPattern::Exact(_) | HostPattern::Ip(_)) {
                        return Err(Error::Invalid(format!(
                            "token {}: host `{host}` is a wildcard; an http token goes to \
                             exactly one host",
                            t.token_ref
                        )));
                    }
                    Token::Http {
                        host: pattern,
                        scheme: AuthScheme::parse(scheme).map_err(Error::Invalid)?,
                        secret,
                    }
                }
            });
        }
        let token_hosts: Vec<&HostPattern> = tokens
            .iter()
            .filter_map(|t| match t {
                Token::Http { host, .. } => Some(host),
                _ => None,
            })
            .collect();

        let mut routes = Vec::new();
        for r in &raw.allow {
            routes.push(build_route(r, dlp, &token_hosts)?);
        }
        // An http token implies an intercepted route for its host, with
        // the rules of the most specific wildcard route that covers it: the
        // implied route wins at lookup, and without them it would lift a
        // `methods: [GET]` on `*.example.com` for the one host the token
        // writes to.
        for host in &token_hosts {
            if !routes.iter().any(|r: &Route| &&r.pattern == host) {
                let kind = match host {
                    HostPattern::Exact(n) => Some(HostKind::Name(n.clone())),
                    HostPattern::Ip(ip) => Some(HostKind::Ip(*ip)),
                    _ => None,
                };
                let covering = kind.as_ref().and_then(|k| {
                    routes
                        .iter()
                        .filter_map(|r: &Route| Some((r.pattern.matches(k)?, r)))
                        // The first of equals, as `RouteTable::find` picks
                        // for every other host under it.
                        .rev()
                        .max_by_key(|(key, _)| *key)
                        .map(|(_, r)| r.clone())
                });
                routes.push(Route {
                    name: raw_host_name(host),
                    pattern: (*host).clone(),
                    methods: covering.as_ref().and_then(|r| r.methods.clone()),
                    paths: covering.as_ref().and_then(|r| r.paths.clone()),
                    ports: covering.as_ref().and_then(|r| r.ports.clone()),
                    tls: Tls::Intercept,
                });
            }
        }

        let mut known_secrets = Vec::new();
        for name in &raw.known_secret_env {
            known_secrets.push(
                secrets
                    .get(name)
                    .ok_or_else(|| Error::MissingSecret(name.clone()))?,
            );
        }

        let mut resolve = HashMap::new();
        for (host, target) in &raw.resolve {
            let name = match classify_host(host) {
                HostKind::Name(n) => n,
                _ => {
                    return Err(Error::Invalid(format!(
                        "resolve: {host:?} is not a host name"
                    )));
                }
            };
            resolve.insert(name, parse_pin(target)?);
        }

        let host_addresses = HostAddresses::parse(&raw.host_addresses)
            .map_err(|e| Error::Invalid(format!("host_addresses: {e}")))?;

        let upstream_proxy = raw
            .upstream_proxy
            .as_deref()
            .map(parse_upstream_proxy)
            .transpose()?;
        Ok(ProxyConfig {
            listen,
            routes: RouteTable::new(routes),
            dlp,
            log: raw.log.unwrap_or_default(),
            tokens,
            known_secrets,
            ca: raw.ca.map(|c| CaSource::Files {
                cert: base.join(c.cert),
                key: base.join(c.key),
            }),
            upstream_ca: raw.upstream_ca.map(|p| base.join(p)),
            upstream_proxy,
            resolve,
            host_addresses,
            audit: raw
                .audit
                .map_or(AuditTarget::Stdout, |p| AuditTarget::File(base.join(p))),
            limits: Limits::default(),
            own_names: OwnNames::default(),
        })
    }
}

fn raw_host_name(p: &HostPattern) -> String {
    match p {
        HostPattern::Any => "*".into(),
        HostPattern::Exact(h) => h.clone(),
        HostPattern::Suffix(s) => format!("*{s}"),
        HostPattern::Ip(ip) => ip.to_string(),
    }
}

fn build_route(r: &RawRoute, dlp: DlpMode, token_hosts: &[&HostPattern]) -> Result<Route, Error> {
    let pattern = HostPattern::parse(&r.host).map_err(Error::Invalid)?;
    let methods = r
        .methods
        .as_ref()
        .map(|ms| ms.iter().map(|m| m.trim().to_ascii_uppercase()).collect());
    let paths = match &r.paths {
        Some(ps) => Some(
            ps.iter()
                .map(|p| PathRule::parse(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(Error::Invalid)?,
        ),
        None => None,
    };
    let has_token = token_hosts.contains(&&pattern);
    let needs_intercept = methods.is_some() || paths.is_some() || has_token || dlp != DlpMode::Off;
    let tls = match r.tls {
        Some(Tls::Passthrough) if methods.is_some() || paths.is_some() || has_token => {
            return Err(Error::Invalid(format!(
                "route {}: tls passthrough cannot enforce methods, paths or a token",
                r.host
            )));
        }
        Some(t) => t,
        None if needs_intercept => Tls::Intercept,
        None => Tls::Passthrough,
    };
    if let Some(ports) = &r.ports
        && (ports.is_empty() || ports.contains(&0))
    {
        return Err(Error::Invalid(format!("route {}: bad ports", r.host)));
    }
    Ok(Route {
        name: r.host.clone(),
        pattern,
        methods,
        paths,
        ports: r.ports.clone(),
        tls,
    })
}

fn parse_pin(s: &str) -> Result<Pin, Error> {
    let bad = || Error::Invalid(format!("resolve: {s:?} is not ADDRESS or ADDRESS:PORT"));
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(Pin {
            ip: crate::addr::canonical(sa.ip()),
            port: Some(sa.port()),
        });
    }
    match classify_host(s) {
        HostKind::Ip(ip) => Ok(Pin { ip, port: None }),
        _ => Err(bad()),
    }
}

fn parse_upstream_proxy(s: &str) -> Result<UpstreamProxy, Error> {
    let bad = || Error::Invalid(format!("upstream_proxy: {s:?} is not http://HOST:PORT"));
    let rest = s.strip_prefix("http://").ok_or_else(bad)?;
    let rest = rest.trim_end_matches('/');
    if rest.contains('@') || rest.contains('/') {
        return Err(bad());
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|_| bad())?)
        }
        _ => (rest, 3128),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok(UpstreamProxy {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
    })
}

fn base_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Why a config text could not be parsed: the parser's own error, so the
/// caller renders it the way it renders every YAML error (the CLI uses the
/// manifest's wording, location and hints).
#[derive(Debug)]
pub enum ParseError {
    Json(serde_json::Error),
    Yaml(Box<serde_saphyr::Error>),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Json(e) => e.fmt(f),
            ParseError::Yaml(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ParseError {}

/// JSON when it looks like JSON, YAML otherwise.
pub fn parse_text(text: &str) -> Result<RawConfig, ParseError> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(ParseError::Json)
    } else if text.trim().is_empty() {
        Ok(RawConfig::default())
    } else {
        serde_saphyr::from_str(text).map_err(|e| ParseError::Yaml(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(pairs: &[(&str, &str)]) -> MapSecrets {
        MapSecrets(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Secret::new(*v)))
                .collect(),
        )
    }

    const SPEC_EXAMPLE: &str = r#"
listen: 127.0.0.1:3128     # the default
allow:
  - host: "*"
  - host: api.github.com
    methods: [GET, head]
    paths: ["/repos/acme/", "re:^/user$"]
    ports: [443, 8443]
dlp: block
log: events
tokens:
  - kind: anthropic
    token_ref: CLAUDE_BOTTLE_OAUTH_TOKEN
  - kind: http
    host: api.github.com
    scheme: Bearer
    token_ref: file:gh.txt
known_secret_env: [MY_SECRET]
ca: {cert: ca.pem, key: ca-key.pem}
upstream_ca: extra-roots.pem
upstream_proxy: http://proxy.corp:3128
resolve:
  example.com: 127.0.0.1:18443
  git.internal: 10.0.0.5
host_addresses: [198.51.100.7, "2001:db8::7"]
audit: audit.jsonl
"#;

    #[test]
    fn spec_example_loads_with_paths_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gh.txt"), "ghp_fromfile\nsecond line\n").unwrap();
        let path = dir.path().join("proxy.yaml");
        std::fs::write(&path, SPEC_EXAMPLE).unwrap();
        let src = EnvSecrets {
            base: dir.path().to_path_buf(),
        };
        // Combine env-style file lookups with a map for the rest.
        struct Both(EnvSecrets, MapSecrets);
        impl SecretSource for Both {
            fn get(&self, n: &str) -> Option<Secret> {
                self.1.get(n).or_else(|| self.0.get(n))
            }
        }
        let both = Both(
            src,
            secrets(&[
                ("CLAUDE_BOTTLE_OAUTH_TOKEN", "sk-ant-oat01-x"),
                ("MY_SECRET", "s3"),
            ]),
        );
        let c = ProxyConfig::load_with(&path, &both).unwrap();
        assert_eq!(c.listen, "127.0.0.1:3128".parse().unwrap());
        assert_eq!(c.routes.routes.len(), 2);
        let gh = &c.routes.routes[1];
        assert_eq!(
            gh.methods.as_deref(),
            Some(&["GET".to_string(), "HEAD".to_string()][..])
        );
        assert_eq!(gh.tls, Tls::Intercept);
        assert_eq!(gh.ports, Some(vec![443, 8443]));
        assert!(
            matches!(&c.tokens[1], Token::Http { secret, scheme: AuthScheme::Bearer, .. } if secret.expose() == "ghp_fromfile")
        );
        assert_eq!(c.known_secrets[0].expose(), "s3");
        match &c.ca {
            Some(CaSource::Files { cert, .. }) => assert_eq!(cert, &dir.path().join("ca.pem")),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.upstream_ca, Some(dir.path().join("extra-roots.pem")));
        assert_eq!(c.audit, AuditTarget::File(dir.path().join("audit.jsonl")));
        assert_eq!(
            c.upstream_proxy,
            Some(UpstreamProxy {
                host: "proxy.corp".into(),
                port: 3128
            })
        );
        assert_eq!(
            c.resolve["example.com"],
            Pin {
                ip: "127.0.0.1".parse().unwrap(),
                port: Some(18443)
            }
        );
        assert!(c.host_addresses.contains("198.51.100.7".parse().unwrap()));
        assert!(c.host_addresses.contains("2001:db8::7".parse().unwrap()));
        assert_eq!(c.host_addresses.len(), 2);
        assert_eq!(
            c.resolve["git.internal"],
            Pin {
                ip: "10.0.0.5".parse().unwrap(),
                port: None
            }
        );
        // The Debug form of the whole config never shows a secret.
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("sk-ant-oat01-x") && !shown.contains("ghp_fromfile"),
            "{shown}"
        );
    }

    #[test]
    fn json_works_and_defaults_apply() {
        let raw = parse_text(r#"{"allow": [{"host": "pypi.org"}], "dlp": "off"}"#).unwrap();
        let c = ProxyConfig::from_raw(raw, Path::new("/x"), &secrets(&[])).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.routes.routes[0].tls, Tls::Passthrough);
        assert_eq!(c.log, LogMode::Events);
        assert_eq!(c.audit, AuditTarget::Stdout);
        let raw = parse_text("allow: [{host: pypi.org}]").unwrap();
        let c = ProxyConfig::from_raw(raw, Path::new("/x"), &secrets(&[])).unwrap();
        assert_eq!(c.dlp, DlpMode::Block);
        assert_eq!(
            c.routes.routes[0].tls,
            Tls::Intercept,
            "DLP on means intercept"
        );
    }

    #[test]
    fn plan_shaped_routes_load() {
        // `egress.allow` entries as the plan JSON renders them.
        let raw = parse_text(
            r#"{"allow": [{"host": "api.github.com", "methods": ["GET","HEAD"], "paths": ["/repos/acme/"], "ports": [80, 443], "tls": "intercept", "auth": null}]}"#,
        )
        .unwrap();
        let c = ProxyConfig::from_raw(raw, Path::new("/"), &secrets(&[])).unwrap();
        assert_eq!(c.routes.routes[0].ports, Some(vec![80, 443]));
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(parse_text("allwo: []").is_err());
        assert!(parse_text("allow: [{host: a.com, method: [GET]}]").is_err());
        assert!(parse_text(r#"{"allow": [], "extra": 1}"#).is_err());
        assert!(parse_text("dlp: maybe").is_err());
        assert!(parse_text("allow: [{host: a.com, tls: sometimes}]").is_err());
    }

    #[test]
    fn invalid_values_are_errors() {
        let s = secrets(&[("T", "v")]);
        for text in [
            "listen: nowhere",
            "allow: [{host: 'a b'}]",
            "allow: [{host: a.com, paths: [nope]}]",
            "allow: [{host: a.com, paths: ['re:(']}]",
            "allow: [{host: a.com, methods: [GET], tls: passthrough}]",
            "allow: [{host: a.com, ports: []}]",
            "tokens: [{kind: http, token_ref: T}]",
            "tokens: [{kind: http, token_ref: T, host: a.com, scheme: magic}]",
            "tokens: [{kind: anthropic, token_ref: UNSET}]",
            "known_secret_env: [UNSET]",
            "resolve: {a.com: not-an-ip}",
            "upstream_proxy: https://x",
            "host_addresses: [host.example]",
            "host_addresses: ['198.51.100.7:80']",
        ] {
            let raw = parse_text(text).unwrap();
            assert!(
                ProxyConfig::from_raw(raw, Path::new("/"), &s).is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn missing_token_error_names_the_ref_not_a_value() {
        let raw = parse_text("tokens: [{kind: anthropic, token_ref: NOPE_TOKEN}]").unwrap();
        let e = ProxyConfig::from_raw(raw, Path::new("/"), &secrets(&[])).unwrap_err();
        assert!(e.to_string().contains("NOPE_TOKEN"));
    }

    #[test]
    fn own_names_are_normalised_names_and_always_include_the_internal_host() {
        let mut own = OwnNames::default();
        assert!(own.contains(INTERNAL_HOST));
        assert!(!own.contains("sidecar"));
        own.add("SideCar.").unwrap();
        own.add("sidecar").unwrap();
        assert_eq!(own.names, vec!["sidecar".to_string()]);
        assert!(own.contains("sidecar"));
        assert!(!own.contains("sidecar.example"));
        for bad in ["10.0.0.2", "[::1]", "1.2.3.09", ""] {
            assert!(own.add(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_addresses_count_on_the_listen_port_only() {
        let cfg = |listen: &str| {
            let raw = parse_text(&format!("listen: '{listen}'")).unwrap();
            ProxyConfig::from_raw(raw, Path::new("/"), &secrets(&[])).unwrap()
        };
        let own = |c: &ProxyConfig, host: &str, port: u16| c.is_own(&classify_host(host), port);

        // Names: on any port, as before.
        let mut c = cfg("0.0.0.0:3128");
        c.own_names.add("sidecar").unwrap();
        assert!(own(&c, "SIDECAR.", 3128) && own(&c, "sidecar", 8418));
        assert!(!own(&c, "sidecar.example", 3128));

        // Added addresses: the listen port only; canonical forms match.
        assert!(c.own_names.add_addr("10.0.0.2".parse().unwrap()));
        assert!(c.own_names.add_addr("fd00::2".parse().unwrap()));
        for (host, port) in [
            ("10.0.0.2", 3128),
            ("[::ffff:10.0.0.2]", 3128),
            ("[fd00::2]", 3128),
        ] {
            assert!(own(&c, host, port), "{host}:{port}");
        }
        for (host, port) in [
            ("10.0.0.2", 53),
            ("10.0.0.2", 8418),
            ("10.0.0.2", 80),
            ("10.0.0.3", 3128),
            // A wildcard listen address makes no address ours, loopback
            // and the wildcard itself included.
            ("0.0.0.0", 3128),
            ("127.0.0.1", 3128),
            ("[::1]", 3128),
            ("[::]", 3128),
        ] {
            assert!(!own(&c, host, port), "{host}:{port}");
        }
        // Neither the wildcard nor loopback can be added.
        for bad in ["0.0.0.0", "::", "127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            assert!(!c.own_names.add_addr(bad.parse().unwrap()), "{bad}");
        }
        assert!(!own(&c, "127.0.0.1", 3128));

        // A concrete listen address is ours, on its port; loopback too, then.
        let c = cfg("127.0.0.1:3128");
        assert!(own(&c, "127.0.0.1", 3128) && own(&c, "[::ffff:127.0.0.1]", 3128));
        assert!(!own(&c, "127.0.0.1", 3129) && !own(&c, "127.0.0.2", 3128));
        let c = cfg("[fd00::9]:8080");
        assert!(own(&c, "[fd00::9]", 8080) && !own(&c, "[fd00::9]", 3128));
        // Not bound yet: nothing is ours by address.
        let c = cfg("10.0.0.9:0");
        assert!(!own(&c, "10.0.0.9", 0));
    }

    #[test]
    fn http_token_implies_an_intercepted_route() {
        let raw = parse_text(
            "dlp: off\ntokens: [{kind: http, token_ref: T, host: api.github.com, scheme: 'header:X-Api-Key'}]",
        )
        .unwrap();
        let c = ProxyConfig::from_raw(raw, Path::new("/"), &secrets(&[("T", "v")])).unwrap();
        assert_eq!(c.routes.routes.len(), 1);
        assert_eq!(c.routes.routes[0].tls, Tls::Intercept);
        assert!(
            matches!(&c.tokens[0], Token::Http { scheme: AuthScheme::Header(h), .. } if h == "x-api-key")
        );
    }

    /// The route a token implies keeps the rules of the most specific
    /// wildcard route over its host; a wildcard token host is refused.
    #[test]
    fn a_token_under_a_wildcard_route_keeps_its_rules() {
        let raw = parse_text(
            "dlp: off\nallow: [{host: '*', methods: [GET, HEAD]}, {host: '*.github.com', methods: [GET], paths: ['/repos/']}]\n\
             tokens: [{kind: http, token_ref: T, host: api.github.com, scheme: Bearer}]",
        )
        .unwrap();
        let c = ProxyConfig::from_raw(raw, Path::new("/"), &secrets(&[("T", "v")])).unwrap();
        let implied = c
            .routes
            .routes
            .iter()
            .find(|r| r.pattern == HostPattern::Exact("api.github.com".into()))
            .unwrap();
        assert_eq!(implied.methods.as_ref().map(|m| m.len()), Some(1));
        assert!(implied.paths.is_some());
        assert_eq!(implied.tls, Tls::Intercept);
        // Two routes that are one pattern (`*.Example.com` from one
        // manifest, `*.example.com` from another): the implied route keeps
        // the first's rules, as every other host under them gets.
        let raw = parse_text(
            "dlp: off\nallow: [{host: '*.Example.com', methods: [GET]}, {host: '*.example.com'}]\n\
             tokens: [{kind: http, token_ref: T, host: api.example.com, scheme: Bearer}]",
        )
        .unwrap();
        let c = ProxyConfig::from_raw(raw, Path::new("/"), &secrets(&[("T", "v")])).unwrap();
        let find = |host: &str| {
            c.routes
                .find(
                    &crate::addr::classify_host(host),
                    443,
                    crate::route::Scheme::Https,
                )
                .unwrap()
                .methods
                .clone()
        };
        assert_eq!(find("www.example.com"), Some(vec!["GET".to_string()]));
        assert_eq!(find("api.example.com"), Some(vec!["GET".to_string()]));
        for wild in ["'*'", "'*.herokuapp.com'"] {
            let raw = parse_text(&format!(
                "tokens: [{{kind: http, token_ref: T, host: {wild}, scheme: Bearer}}]"
            ))
            .unwrap();
            let e = ProxyConfig::from_raw(raw, Path::new("/"), &secrets(&[("T", "v")]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("wildcard"), "{wild}: {e}");
        }
    }
}
