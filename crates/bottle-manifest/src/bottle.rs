//! A bottle file: the grants (env, tokens, egress, git, resources, runtime).
//!
//! Reading checks everything one file can check on its own; the rules that
//! need the whole lineage (merged routes against tokens, say) are checked by
//! the plan after `extends` is resolved.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::host;
use crate::name;
use crate::node::{self, Node, Value};
use crate::read::{Reader, index, join};

pub const BOTTLE_KEYS: &[&str] = &[
    "extends",
    "image",
    "env",
    "tokens",
    "egress",
    "git",
    "resources",
    "runtime",
];
const TOKEN_KEYS: &[&str] = &["kind", "token_ref", "host", "scheme"];
const EGRESS_KEYS: &[&str] = &[
    "upstream_proxy",
    "allow",
    "dlp",
    "log",
    "resolve",
    "upstream_ca",
];
const ROUTE_KEYS: &[&str] = &["host", "methods", "paths", "tls", "ports"];
const GIT_KEYS: &[&str] = &["user", "repos"];
pub(crate) const GIT_USER_KEYS: &[&str] = &["name", "email"];
const REPO_KEYS: &[&str] = &[
    "url",
    "identity",
    "host_key",
    "token_ref",
    "push",
    "protect",
];
const RESOURCE_KEYS: &[&str] = &["memory", "cpus", "pids"];

/// Env names the CLI sets in the agent itself; a bottle may not set them.
pub const RESERVED_ENV: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];

/// Proxy variables the CLI does not set but a bottle may not set either:
/// tools that read them would send the agent's traffic to another proxy
/// instead of the sidecar's. Their refusal says so, not that the CLI sets
/// them.
pub const PROXY_BYPASS_ENV: &[&str] = &["ALL_PROXY", "all_proxy"];

#[derive(Debug, Clone, PartialEq)]
pub struct Bottle {
    pub name: String,
    pub file: PathBuf,
    /// Parent names, each with the line it is named on.
    pub extends: Vec<(String, u32)>,
    pub image: Option<String>,
    pub env: Vec<EnvEntry>,
    pub tokens: Vec<Token>,
    pub egress: Egress,
    pub git: Git,
    pub resources: Resources,
    pub runtime: Option<Runtime>,
    /// The line of `runtime`, 0 when unset.
    pub runtime_line: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnvEntry {
    pub name: String,
    pub value: EnvValue,
    pub file: PathBuf,
    pub line: u32,
}

/// Where an env value comes from. The literal text is kept here but never
/// shown: the plan lists env by name and kind only.
#[derive(Clone, PartialEq, Eq)]
pub enum EnvValue {
    Literal(String),
    /// `${NAME}`: copied from the host's environment at launch.
    Forward(String),
    /// `?` or `?Question`: asked on the terminal at launch.
    Prompt(Option<String>),
}

impl std::fmt::Debug for EnvValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvValue::Literal(_) => f.write_str("Literal(..)"),
            EnvValue::Forward(v) => write!(f, "Forward({v})"),
            EnvValue::Prompt(q) => write!(f, "Prompt({q:?})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub token_ref: TokenRef,
    pub host: Option<String>,
    pub scheme: Option<Scheme>,
    pub file: PathBuf,
    pub line: u32,
    /// The entry's key path in its file (`tokens[1]`), for errors found
    /// once the lineage is merged and the position is lost.
    pub key: String,
    /// The line of `token_ref`.
    pub ref_line: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TokenKind {
    Anthropic,
    Http,
    Openai,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Anthropic => "anthropic",
            TokenKind::Http => "http",
            TokenKind::Openai => "openai",
        }
    }
}

/// Where a token's value is read from when the plan is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRef {
    Env(String),
    /// `file:PATH`, already resolved against home and the manifest's folder.
    File {
        written: String,
        path: PathBuf,
    },
}

impl TokenRef {
    /// As the user wrote it; safe to show (a name or a path, never a value).
    pub fn shown(&self) -> &str {
        match self {
            TokenRef::Env(name) => name,
            TokenRef::File { written, .. } => written,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    Basic,
    Bearer,
    Header(String),
    Token,
}

impl Scheme {
    pub fn shown(&self) -> String {
        match self {
            Scheme::Basic => "basic".into(),
            Scheme::Bearer => "Bearer".into(),
            Scheme::Header(h) => format!("header:{h}"),
            Scheme::Token => "token".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Egress {
    pub upstream_proxy: Option<String>,
    pub allow: Vec<Route>,
    pub dlp: Option<Dlp>,
    pub log: Option<Log>,
    /// Name and target (`address` or `address:port`), in file order.
    pub resolve: Vec<(String, String)>,
    pub upstream_ca: Option<PathBuf>,
    /// The line of `upstream_ca`, 0 when unset.
    pub upstream_ca_line: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: String,
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub tls: Option<Tls>,
    pub ports: Option<Vec<u16>>,
    pub file: PathBuf,
    pub line: u32,
    /// The entry's key path in its file (`egress.allow[0]`).
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    Intercept,
    Passthrough,
}

impl Tls {
    pub fn as_str(self) -> &'static str {
        match self {
            Tls::Intercept => "intercept",
            Tls::Passthrough => "passthrough",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dlp {
    Block,
    Log,
    Off,
    Redact,
}

impl Dlp {
    pub fn as_str(self) -> &'static str {
        match self {
            Dlp::Block => "block",
            Dlp::Log => "log",
            Dlp::Off => "off",
            Dlp::Redact => "redact",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    Events,
    Full,
    Off,
}

impl Log {
    pub fn as_str(self) -> &'static str {
        match self {
            Log::Events => "events",
            Log::Full => "full",
            Log::Off => "off",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Git {
    pub user: GitUser,
    pub repos: Vec<Repo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GitUser {
    pub name: Option<String>,
    pub email: Option<String>,
}

impl GitUser {
    /// `other`'s fields win where set.
    pub fn overlay(&self, other: &GitUser) -> GitUser {
        GitUser {
            name: other.name.clone().or_else(|| self.name.clone()),
            email: other.email.clone().or_else(|| self.email.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub name: String,
    pub url: String,
    pub identity: Option<PathBuf>,
    pub host_key: Option<String>,
    pub token_ref: Option<TokenRef>,
    pub push: Option<Vec<String>>,
    pub protect: Option<Vec<String>>,
    pub file: PathBuf,
    pub line: u32,
    /// The lines of `url`, `identity` and `token_ref` (0 when unset), for
    /// the plan's errors about them.
    pub url_line: u32,
    pub identity_line: u32,
    pub token_ref_line: u32,
}

impl Repo {
    pub fn is_ssh(&self) -> bool {
        !self.url.starts_with("https://")
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resources {
    pub memory: Option<String>,
    pub cpus: Option<f64>,
    pub pids: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Auto,
    Runc,
    Runsc,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Auto => "auto",
            Runtime::Runc => "runc",
            Runtime::Runsc => "runsc",
        }
    }
}

/// Parse one bottle file's text. `name` is the file's stem, already checked.
pub fn parse(name: &str, file: &Path, home: &Path, text: &str) -> Result<Bottle, Error> {
    let fm = crate::split_file(file, text)?;
    let root = node::parse(fm.yaml, fm.yaml_line).map_err(|e| Error::yaml(file, e))?;
    let r = Reader { file, home };
    let top = r.map(&root, "front matter")?;
    r.check_keys(top, "", BOTTLE_KEYS, &[], "a bottle")?;
    let mut bottle = Bottle {
        name: name.to_string(),
        file: file.to_path_buf(),
        extends: Vec::new(),
        image: None,
        env: Vec::new(),
        tokens: Vec::new(),
        egress: Egress::default(),
        git: Git::default(),
        resources: Resources::default(),
        runtime: None,
        runtime_line: 0,
    };
    for (k, v) in top {
        let key = k.name.as_str();
        match key {
            "extends" => bottle.extends = read_extends(&r, v)?,
            "image" => {
                let image = r.string(v, key)?;
                if image.is_empty() || image.chars().any(char::is_whitespace) {
                    return Err(Error::invalid(
                        file,
                        v.line,
                        key,
                        "must be an image reference",
                    ));
                }
                bottle.image = Some(image);
            }
            "env" => bottle.env = read_env(&r, v)?,
            "tokens" => bottle.tokens = read_tokens(&r, v)?,
            "egress" => bottle.egress = read_egress(&r, v)?,
            "git" => bottle.git = read_git(&r, v)?,
            "resources" => bottle.resources = read_resources(&r, v)?,
            "runtime" => {
                bottle.runtime = Some(match r.string(v, key)?.as_str() {
                    "auto" => Runtime::Auto,
                    "runc" => Runtime::Runc,
                    "runsc" => Runtime::Runsc,
                    _ => return Err(one_of(&r, v, key, "`auto`, `runsc` or `runc`")),
                });
                bottle.runtime_line = v.line;
            }
            _ => {}
        }
    }
    Ok(bottle)
}

fn one_of(r: &Reader, node: &Node, key: &str, choices: &str) -> Error {
    Error::invalid(r.file, node.line, key, format!("must be one of {choices}"))
}

fn read_extends(r: &Reader, node: &Node) -> Result<Vec<(String, u32)>, Error> {
    let mut out = Vec::new();
    for parent in r.items(node, "extends")? {
        if !name::is_valid(&parent.text) {
            return Err(Error::invalid(
                r.file,
                parent.line,
                &parent.key,
                format!(
                    "`{}` is not a bottle name ({})",
                    parent.text,
                    name::NAME_RULE
                ),
            ));
        }
        out.push((parent.text, parent.line));
    }
    Ok(out)
}

fn read_env(r: &Reader, node: &Node) -> Result<Vec<EnvEntry>, Error> {
    let mut out = Vec::new();
    for (k, v) in r.map(node, "env")? {
        let key = join("env", &k.name);
        if !name::is_env_name(&k.name) {
            return Err(Error::invalid(
                r.file,
                k.line,
                &key,
                "is not a valid environment variable name",
            )
            .with_hint("use letters, digits and `_`, not starting with a digit"));
        }
        if let Some((why, hint)) = reserved_env(&k.name) {
            return Err(Error::invalid(r.file, k.line, &key, why).with_hint(hint));
        }
        let value = match &v.value {
            Value::Str(s) => parse_env_string(r, &key, v.line, s)?,
            Value::Map(entries) => {
                let lit = entries
                    .iter()
                    .find(|(ek, _)| ek.name == "literal")
                    .filter(|_| entries.len() == 1)
                    .ok_or_else(|| {
                        Error::invalid(
                            r.file,
                            v.line,
                            &key,
                            "a mapping value must be exactly `{literal: \"...\"}`",
                        )
                    })?;
                EnvValue::Literal(r.scalar_text(&lit.1, &join(&key, "literal"))?)
            }
            Value::Null => {
                return Err(Error::invalid(r.file, v.line, &key, "has no value")
                    .with_hint("write `\"\"` for an empty value, or `\"?\"` to be asked"));
            }
            _ => EnvValue::Literal(r.scalar_text(v, &key)?),
        };
        out.push(EnvEntry {
            name: k.name.clone(),
            value,
            file: r.file.to_path_buf(),
            line: k.line,
        });
    }
    Ok(out)
}

/// Why a bottle may not set env `name`, and what to do instead; `None`
/// when it may.
fn reserved_env(name: &str) -> Option<(&'static str, &'static str)> {
    if PROXY_BYPASS_ENV.contains(&name) {
        return Some((
            "is reserved: it would send the agent's traffic around the sidecar's proxy",
            "remove it; the agent's traffic goes through the sidecar, whose egress can go \
             through another proxy with `egress.upstream_proxy`",
        ));
    }
    RESERVED_ENV.contains(&name).then_some((
        "is set by claude-bottle itself for the agent and cannot be set in a bottle",
        "remove it; proxies, model API endpoints and CA paths are wired by the CLI",
    ))
}

fn parse_env_string(r: &Reader, key: &str, line: u32, s: &str) -> Result<EnvValue, Error> {
    if let Some(q) = s.strip_prefix('?') {
        let q = q.trim();
        return Ok(EnvValue::Prompt((!q.is_empty()).then(|| q.to_string())));
    }
    // Only a value that is one `${...}` as a whole is a reference: with a
    // brace or `$` inside (`${A}-${B}`) it is longer text, and the spec has
    // no interpolation, so it is a literal. One reference with a bad name
    // (`${1BAD}`, `${}`, `${A:-x}`) is refused: it was meant as a reference
    // and would otherwise reach the agent as text nobody wanted.
    if let Some(inner) = s
        .strip_prefix("${")
        .and_then(|x| x.strip_suffix('}'))
        .filter(|inner| !inner.contains(['{', '}', '$']))
    {
        if !name::is_env_name(inner) {
            return Err(Error::invalid(
                r.file,
                line,
                key,
                "`${...}` must hold one environment variable name",
            )
            .with_hint(
                "`${NAME}` is only recognised as the whole value; use `{literal: ...}` for text",
            ));
        }
        return Ok(EnvValue::Forward(inner.to_string()));
    }
    Ok(EnvValue::Literal(s.to_string()))
}

fn read_token_ref(r: &Reader, node: &Node, key: &str) -> Result<TokenRef, Error> {
    let raw = r.string(node, key)?;
    if let Some(path) = raw.strip_prefix("file:") {
        if path.is_empty() {
            return Err(Error::invalid(
                r.file,
                node.line,
                key,
                "`file:` needs a path",
            ));
        }
        let resolved = crate::read::resolve_path(path, r.file, r.home);
        return Ok(TokenRef::File {
            written: raw.clone(),
            path: resolved,
        });
    }
    if !name::is_env_name(&raw) {
        return Err(Error::invalid(
            r.file,
            node.line,
            key,
            "must be an environment variable name or `file:PATH`",
        )
        .with_hint("never put the token itself in a manifest; name the variable that holds it"));
    }
    Ok(TokenRef::Env(raw))
}

fn read_tokens(r: &Reader, node: &Node) -> Result<Vec<Token>, Error> {
    let mut out: Vec<Token> = Vec::new();
    for (i, item) in r.seq(node, "tokens")?.iter().enumerate() {
        let prefix = index("tokens", i);
        let entries = r.map(item, &prefix)?;
        r.check_keys(entries, &prefix, TOKEN_KEYS, &[], "a token")?;
        let get = |k: &str| entries.iter().find(|(ek, _)| ek.name == k).map(|(_, v)| v);
        let kind_node = get("kind").ok_or_else(|| missing(r, item.line, &join(&prefix, "kind")))?;
        let kind = match r.string(kind_node, &join(&prefix, "kind"))?.as_str() {
            "anthropic" => TokenKind::Anthropic,
            "openai" => TokenKind::Openai,
            "http" => TokenKind::Http,
            _ => {
                return Err(one_of(
                    r,
                    kind_node,
                    &join(&prefix, "kind"),
                    "`anthropic`, `openai` or `http`",
                ));
            }
        };
        let ref_node =
            get("token_ref").ok_or_else(|| missing(r, item.line, &join(&prefix, "token_ref")))?;
        let token_ref = read_token_ref(r, ref_node, &join(&prefix, "token_ref"))?;
        let mut host = None;
        let mut scheme = None;
        if kind == TokenKind::Http {
            let h = get("host").ok_or_else(|| missing(r, item.line, &join(&prefix, "host")))?;
            let name = read_host(r, h, &join(&prefix, "host"))?;
            // The sidecar injects the real credential into every request to
            // the token's host: with `*` or `*.example.com` the agent could
            // have it sent to a host of its choosing.
            if name == "*" || name.starts_with("*.") {
                return Err(Error::invalid(
                    r.file,
                    h.line,
                    &join(&prefix, "host"),
                    "a token goes to exactly one host, not a wildcard",
                )
                .with_hint("name the exact host the token is for, such as `api.github.com`"));
            }
            host = Some(name);
            let s = get("scheme").ok_or_else(|| missing(r, item.line, &join(&prefix, "scheme")))?;
            scheme = Some(read_scheme(r, s, &join(&prefix, "scheme"))?);
        } else {
            for k in ["host", "scheme"] {
                if let Some(n) = get(k) {
                    return Err(Error::invalid(
                        r.file,
                        n.line,
                        &join(&prefix, k),
                        format!("only `http` tokens take `{k}`"),
                    )
                    .with_hint(format!(
                        "remove `{k}`: `{}` tokens go to their own API, which the sidecar knows",
                        kind.as_str()
                    )));
                }
            }
        }
        let token = Token {
            kind,
            token_ref,
            host,
            scheme,
            file: r.file.to_path_buf(),
            line: item.line,
            key: prefix.clone(),
            ref_line: ref_node.line,
        };
        if let Some(dup) = out.iter().find(|t| same_token_slot(t, &token)) {
            return Err(Error::invalid(
                r.file,
                item.line,
                &prefix,
                format!(
                    "a second `{}` token for the same target (first on line {})",
                    kind.as_str(),
                    dup.line
                ),
            ));
        }
        out.push(token);
    }
    Ok(out)
}

/// Tokens that would inject into the same place; merging uses the same key.
pub fn same_token_slot(a: &Token, b: &Token) -> bool {
    a.kind == b.kind && (a.kind != TokenKind::Http || a.host == b.host)
}

fn missing(r: &Reader, line: u32, key: &str) -> Error {
    let name = key.rsplit('.').next().unwrap_or(key);
    Error::invalid(r.file, line, key, "is required")
        .with_hint(format!("add `{name}: ...` to this entry"))
}

fn read_scheme(r: &Reader, node: &Node, key: &str) -> Result<Scheme, Error> {
    let raw = r.string(node, key)?;
    match raw.as_str() {
        "Bearer" | "bearer" => Ok(Scheme::Bearer),
        "token" | "Token" => Ok(Scheme::Token),
        "basic" | "Basic" => Ok(Scheme::Basic),
        other => match other.strip_prefix("header:") {
            Some(h)
                if !h.is_empty() && h.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') =>
            {
                Ok(Scheme::Header(h.to_string()))
            }
            _ => Err(one_of(
                r,
                node,
                key,
                "`Bearer`, `token`, `basic` or `header:<Header-Name>`",
            )),
        },
    }
}

/// A route or token host: `*`, `*.example.com`, a DNS name or an IP
/// address, each as the sidecar reads it (see [`crate::host`]). Stored
/// lowercase.
fn read_host(r: &Reader, node: &Node, key: &str) -> Result<String, Error> {
    let raw = r.string(node, key)?.to_ascii_lowercase();
    match host::parse_host(&raw) {
        Ok(_) => Ok(raw),
        Err(no) => Err(Error::invalid(r.file, node.line, key, no.why).with_hint(no.hint)),
    }
}

fn read_egress(r: &Reader, node: &Node) -> Result<Egress, Error> {
    let entries = r.map(node, "egress")?;
    r.check_keys(entries, "egress", EGRESS_KEYS, &[], "`egress`")?;
    let mut eg = Egress::default();
    for (k, v) in entries {
        let key = join("egress", &k.name);
        match k.name.as_str() {
            "upstream_proxy" => {
                let url = r.string(v, &key)?;
                let rest = url
                    .strip_prefix("http://")
                    .unwrap_or("")
                    .trim_end_matches('/');
                if rest.is_empty() || rest.contains(['/', '@', ' ', '?', '#']) {
                    return Err(Error::invalid(
                        r.file,
                        v.line,
                        &key,
                        "must be `http://HOST:PORT`",
                    ));
                }
                eg.upstream_proxy = Some(url);
            }
            "allow" => eg.allow = read_routes(r, v)?,
            "dlp" => {
                eg.dlp = Some(match r.scalar_text(v, &key)?.as_str() {
                    "block" => Dlp::Block,
                    "redact" => Dlp::Redact,
                    "log" => Dlp::Log,
                    "off" | "false" => Dlp::Off,
                    _ => return Err(one_of(r, v, &key, "`block`, `redact`, `log` or `off`")),
                })
            }
            "log" => {
                eg.log = Some(match r.scalar_text(v, &key)?.as_str() {
                    "events" => Log::Events,
                    "full" => Log::Full,
                    "off" | "false" => Log::Off,
                    _ => return Err(one_of(r, v, &key, "`off`, `events` or `full`")),
                })
            }
            "resolve" => {
                for (rk, rv) in r.map(v, &key)? {
                    let rkey = join(&key, &rk.name);
                    let target = r.string(rv, &rkey)?;
                    let ok = target.parse::<std::net::IpAddr>().is_ok()
                        || target.parse::<std::net::SocketAddr>().is_ok();
                    if !ok {
                        return Err(Error::invalid(
                            r.file,
                            rv.line,
                            &rkey,
                            "must be an IP address, or `address:port`",
                        ));
                    }
                    let host = host::parse_name(&rk.name.to_ascii_lowercase()).map_err(|no| {
                        Error::invalid(r.file, rk.line, &rkey, no.why).with_hint(no.hint)
                    })?;
                    eg.resolve.push((host, target));
                }
            }
            "upstream_ca" => {
                eg.upstream_ca = Some(r.path(v, &key)?);
                eg.upstream_ca_line = v.line;
            }
            _ => {}
        }
    }
    Ok(eg)
}

fn read_routes(r: &Reader, node: &Node) -> Result<Vec<Route>, Error> {
    let mut out: Vec<Route> = Vec::new();
    for (i, item) in r.seq(node, "egress.allow")?.iter().enumerate() {
        let prefix = index("egress.allow", i);
        // `- api.example.com` is a common shorthand; accept it as `host:`.
        let route = if let Value::Str(_) = item.value {
            Route {
                host: read_host(r, item, &prefix)?,
                methods: None,
                paths: None,
                tls: None,
                ports: None,
                file: r.file.to_path_buf(),
                line: item.line,
                key: prefix.clone(),
            }
        } else {
            read_route(r, item, &prefix)?
        };
        if let Some(first) = out.iter().find(|x| x.host == route.host) {
            return Err(Error::invalid(
                r.file,
                route.line,
                &join(&prefix, "host"),
                format!(
                    "`{}` is listed twice (first on line {})",
                    route.host, first.line
                ),
            )
            .with_hint("list every method and path of a host on one entry"));
        }
        out.push(route);
    }
    Ok(out)
}

fn read_route(r: &Reader, item: &Node, prefix: &str) -> Result<Route, Error> {
    let entries = r.map(item, prefix)?;
    r.check_keys(entries, prefix, ROUTE_KEYS, &[], "a route")?;
    let get = |k: &str| entries.iter().find(|(ek, _)| ek.name == k).map(|(_, v)| v);
    let host_node = get("host").ok_or_else(|| missing(r, item.line, &join(prefix, "host")))?;
    let mut route = Route {
        host: read_host(r, host_node, &join(prefix, "host"))?,
        methods: None,
        paths: None,
        tls: None,
        ports: None,
        file: r.file.to_path_buf(),
        line: host_node.line,
        key: prefix.to_string(),
    };
    if let Some(n) = get("methods") {
        let key = join(prefix, "methods");
        let mut methods = Vec::new();
        for m in r.items(n, &key)? {
            let up = m.text.to_ascii_uppercase();
            if up.is_empty() || up.len() > 20 || !up.bytes().all(|c| c.is_ascii_uppercase()) {
                return Err(Error::invalid(
                    r.file,
                    m.line,
                    &m.key,
                    format!("`{}` is not an HTTP method", m.text),
                ));
            }
            if !methods.contains(&up) {
                methods.push(up);
            }
        }
        route.methods = Some(methods);
    }
    if let Some(n) = get("paths") {
        let key = join(prefix, "paths");
        let items = r.items(n, &key)?;
        for item in &items {
            let p = &item.text;
            // A line break would draw lines of its own in the preflight,
            // and no path the proxy matches holds a control character.
            if p.contains(char::is_control) {
                return Err(Error::invalid(
                    r.file,
                    item.line,
                    &item.key,
                    "a path holds a control character (a line break, a tab, ...)".to_string(),
                )
                .with_hint("write the path on one line; in a regex, `\\n` matches a line break"));
            }
            if let Some(re) = p.strip_prefix("re:") {
                if let Err(e) = regex::RegexBuilder::new(re).size_limit(1 << 20).build() {
                    let first = e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    return Err(Error::invalid(
                        r.file,
                        item.line,
                        &item.key,
                        format!("bad regex `{re}`: {first}"),
                    ));
                }
            } else if !p.starts_with('/') {
                return Err(Error::invalid(
                    r.file,
                    item.line,
                    &item.key,
                    format!("`{p}` must start with `/` (a path prefix) or `re:` (a regex)"),
                )
                .with_hint("write a prefix such as `/repos/acme/`, or `re:^/user$` for a regex"));
            }
        }
        route.paths = Some(items.into_iter().map(|i| i.text).collect());
    }
    if let Some(n) = get("tls") {
        let key = join(prefix, "tls");
        route.tls = Some(match r.string(n, &key)?.as_str() {
            "intercept" => Tls::Intercept,
            "passthrough" => Tls::Passthrough,
            _ => return Err(one_of(r, n, &key, "`intercept` or `passthrough`")),
        });
    }
    if let Some(n) = get("ports") {
        let key = join(prefix, "ports");
        let mut ports = Vec::new();
        let items: Vec<(&Node, String)> = match &n.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, p)| (p, index(&key, i)))
                .collect(),
            _ => vec![(n, key.clone())],
        };
        for (p, key) in items {
            ports.push(r.unsigned(p, &key, 1, 65535)? as u16);
        }
        route.ports = Some(ports);
    }
    if route.tls == Some(Tls::Passthrough) && (route.methods.is_some() || route.paths.is_some()) {
        return Err(Error::invalid(
            r.file,
            route.line,
            prefix,
            "`tls: passthrough` cannot be combined with `methods` or `paths`",
        )
        .with_hint(
            "a tunnel cannot be inspected; use `tls: intercept` or drop the method/path rules",
        ));
    }
    Ok(route)
}

fn read_git(r: &Reader, node: &Node) -> Result<Git, Error> {
    let entries = r.map(node, "git")?;
    r.check_keys(entries, "git", GIT_KEYS, &[], "`git`")?;
    let mut git = Git::default();
    for (k, v) in entries {
        match k.name.as_str() {
            "user" => git.user = read_git_user(r, v, "git.user")?,
            "repos" => {
                for (rk, rv) in r.map(v, "git.repos")? {
                    git.repos.push(read_repo(r, &rk.name, rk.line, rv)?);
                }
            }
            _ => {}
        }
    }
    Ok(git)
}

/// Longest `git.user.name` or `git.user.email`.
const MAX_GIT_USER: usize = 256;

pub(crate) fn read_git_user(r: &Reader, node: &Node, prefix: &str) -> Result<GitUser, Error> {
    let entries = r.map(node, prefix)?;
    r.check_keys(entries, prefix, GIT_USER_KEYS, &[], "`git.user`")?;
    let mut user = GitUser::default();
    for (k, v) in entries {
        let key = join(prefix, &k.name);
        let value = r.string(v, &key)?;
        // Shown in the preflight and written into commits: one short line.
        if value.chars().any(char::is_control)
            || value.trim().is_empty()
            || value.len() > MAX_GIT_USER
        {
            return Err(Error::invalid(
                r.file,
                v.line,
                &key,
                format!("must be one non-empty line of at most {MAX_GIT_USER} bytes"),
            ));
        }
        match k.name.as_str() {
            "name" => user.name = Some(value),
            _ => user.email = Some(value),
        }
    }
    Ok(user)
}

fn read_repo(r: &Reader, name: &str, line: u32, node: &Node) -> Result<Repo, Error> {
    let prefix = format!("git.repos.{name}");
    if !name::is_plain_name(name) {
        return Err(Error::invalid(
            r.file,
            line,
            &prefix,
            "a repo name must be letters, digits, `-`, `_` or `.`",
        ));
    }
    // The gate serves the repo as `<name>.git` and refuses such a name when
    // the sidecar starts; refused here, where the file and line are known.
    if name.ends_with(".git") {
        return Err(
            Error::invalid(r.file, line, &prefix, "a repo name must not end in `.git`").with_hint(
                format!(
                    "name it `{}`; the gate adds `.git` itself",
                    name.trim_end_matches(".git")
                ),
            ),
        );
    }
    let entries = r.map(node, &prefix)?;
    r.check_keys(entries, &prefix, REPO_KEYS, &[], "a git repo")?;
    let get = |k: &str| entries.iter().find(|(ek, _)| ek.name == k).map(|(_, v)| v);
    let url_node = get("url").ok_or_else(|| missing(r, line, &join(&prefix, "url")))?;
    let url = r.string(url_node, &join(&prefix, "url"))?;
    // Checked before the URL is kept: it is shown in the plan JSON, the
    // preflight and `info`, so one the gate would refuse (or a credential
    // in it) must not get that far. The error never quotes the URL.
    if let Err((why, hint)) = check_repo_url(&url) {
        return Err(
            Error::invalid(r.file, url_node.line, &join(&prefix, "url"), why).with_hint(hint),
        );
    }
    let mut repo = Repo {
        name: name.to_string(),
        url: url.clone(),
        identity: None,
        host_key: None,
        token_ref: None,
        push: None,
        protect: None,
        file: r.file.to_path_buf(),
        line,
        url_line: url_node.line,
        identity_line: 0,
        token_ref_line: 0,
    };
    let ssh = is_ssh_url(&url);
    if !ssh && !url.starts_with("https://") {
        return Err(Error::invalid(
            r.file,
            url_node.line,
            &join(&prefix, "url"),
            "must be an ssh URL (`git@host:path`, `ssh://…`) or an `https://` URL",
        ));
    }
    if let Some(n) = get("identity") {
        repo.identity = Some(r.path(n, &join(&prefix, "identity"))?);
        repo.identity_line = n.line;
    }
    if let Some(n) = get("host_key") {
        let hk = r.string(n, &join(&prefix, "host_key"))?;
        if hk.split_whitespace().count() < 3 || hk.contains('\n') {
            return Err(Error::invalid(
                r.file,
                n.line,
                &join(&prefix, "host_key"),
                "must be one `known_hosts` line: `HOST KEYTYPE BASE64`",
            ));
        }
        repo.host_key = Some(hk);
    }
    if let Some(n) = get("token_ref") {
        repo.token_ref = Some(read_token_ref(r, n, &join(&prefix, "token_ref"))?);
        repo.token_ref_line = n.line;
    }
    for (k, slot) in [("push", &mut repo.push), ("protect", &mut repo.protect)] {
        if let Some(n) = get(k) {
            let key = join(&prefix, k);
            let pats = r.items(n, &key)?;
            if let Some(bad) = pats
                .iter()
                // Any whitespace, as the gate refuses it when the sidecar starts.
                .find(|p| {
                    p.text.is_empty()
                        || p.text.contains(char::is_whitespace)
                        || p.text.contains(['~', '^', ':', '\\'])
                        // Patterns name branches (`main`, not
                        // `refs/heads/main`): a full ref name matches no
                        // branch, and in `protect` would protect nothing.
                        || p.text.starts_with("refs/")
                })
            {
                let hint = match bad.text.strip_prefix("refs/heads/") {
                    Some(b) => format!(" (write the branch name: `{b}`)"),
                    None => String::new(),
                };
                return Err(Error::invalid(
                    r.file,
                    bad.line,
                    &bad.key,
                    format!("`{}` is not a branch pattern{hint}", bad.text),
                ));
            }
            *slot = Some(pats.into_iter().map(|p| p.text).collect());
        }
    }
    let need = |k: &str, why: &str| -> Result<(), Error> {
        Err(Error::invalid(
            r.file,
            line,
            &join(&prefix, k),
            why.to_string(),
        ))
    };
    if ssh {
        if repo.identity.is_none() {
            need(
                "identity",
                "is required for an ssh URL (the deploy key the gate pushes with)",
            )?;
        }
        if repo.host_key.is_none() {
            need(
                "host_key",
                "is required for an ssh URL (the upstream's pinned host key)",
            )?;
        }
        if repo.token_ref.is_some() {
            need("token_ref", "is for https URLs; an ssh URL uses `identity`")?;
        }
    } else {
        if repo.token_ref.is_none() {
            need(
                "token_ref",
                "is required for an https URL (the token the gate pushes with)",
            )?;
        }
        if repo.identity.is_some() || repo.host_key.is_some() {
            need("identity", "`identity` and `host_key` are for ssh URLs")?;
        }
    }
    Ok(repo)
}

/// What the git gate would refuse in a repo URL when the sidecar starts
/// (bottle-gitgate `check_url`), and a credential in any form: why, and
/// what to do instead. Never quotes the URL, which may hold a token.
fn check_repo_url(url: &str) -> Result<(), (&'static str, &'static str)> {
    if url.is_empty()
        || url.starts_with('-')
        || url.contains(|c: char| c.is_whitespace() || c.is_control())
    {
        return Err((
            "must not be empty, start with `-`, or contain spaces or control characters",
            "write the URL alone, such as `git@github.com:acme/app.git`",
        ));
    }
    const NO_CREDENTIAL: (&str, &str) = (
        "must not hold credentials (user info before `@`, or a query)",
        "never put a token in the URL; name the variable that holds it in this repo's \
         `token_ref`, and the gate pushes with it (`claude-bottle init` writes an example)",
    );
    if let Some(rest) = url.strip_prefix("https://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        // A query or fragment is no part of a git remote, and
        // `?access_token=` is a credential as much as user info is.
        if authority.contains('@') || rest.contains(['?', '#']) {
            return Err(NO_CREDENTIAL);
        }
        return Ok(());
    }
    // The user and host of an ssh URL: `ssh://git@host:2222/x` or
    // `git@host:x`.
    let authority = match url.strip_prefix("ssh://") {
        Some(rest) => rest.split('/').next().unwrap_or(""),
        None => url.split(':').next().unwrap_or(""),
    };
    let (user, host) = authority.rsplit_once('@').unwrap_or(("", authority));
    // `ssh://user:pw@host`; and scp-like `user:pw@host:path`, where git
    // takes `user` for the host, but the password would still be shown as
    // the path (its first segment holds an `@`).
    let scp_password = !url.starts_with("ssh://")
        && url
            .split_once(':')
            .is_some_and(|(_, path)| path.split('/').next().is_some_and(|s| s.contains('@')));
    if user.contains(':') || scp_password {
        return Err(NO_CREDENTIAL);
    }
    // ssh would take `-oProxyCommand=…` as an option; git refuses it too.
    if host.starts_with('-') {
        return Err((
            "the host must not start with `-`",
            "write the upstream's host name, such as `git@github.com:acme/app.git`",
        ));
    }
    Ok(())
}

pub fn is_ssh_url(url: &str) -> bool {
    if url.starts_with("ssh://") {
        return true;
    }
    // scp-like `user@host:path`, as git accepts it. Not `scheme://` of
    // another transport, nor `transport::address`, which git hands to a
    // remote helper (`ext::` runs a command); the gate refuses both.
    match url.split_once(':') {
        Some((left, right)) => {
            !left.is_empty()
                && !left.contains('/')
                && !right.is_empty()
                && !right.starts_with(':')
                && !url.contains("://")
        }
        None => false,
    }
}

fn read_resources(r: &Reader, node: &Node) -> Result<Resources, Error> {
    let entries = r.map(node, "resources")?;
    r.check_keys(entries, "resources", RESOURCE_KEYS, &[], "`resources`")?;
    let mut res = Resources::default();
    for (k, v) in entries {
        let key = join("resources", &k.name);
        match k.name.as_str() {
            "memory" => {
                // Kept as written (the plan shows it so); the engine's
                // side reads the suffix in any case.
                let m = r.scalar_text(v, &key)?;
                if !is_memory(&m) {
                    return Err(Error::invalid(
                        r.file,
                        v.line,
                        &key,
                        "must be a size such as `4g` or `512m`",
                    ));
                }
                res.memory = Some(m);
            }
            "cpus" => {
                let c = match v.value {
                    Value::Int(i) => i as f64,
                    Value::Float(f) => f,
                    _ => return Err(r.wrong_type(v, &key, "a number")),
                };
                // Docker's own bounds: below 0.01 a CPU would round to
                // no limit at all (`NanoCpus` 0).
                if !(0.01..=1024.0).contains(&c) {
                    return Err(Error::invalid(
                        r.file,
                        v.line,
                        &key,
                        "must be between 0.01 and 1024",
                    ));
                }
                res.cpus = Some(c);
            }
            _ => res.pids = Some(r.unsigned(v, &key, 16, 4_000_000)? as u32),
        }
    }
    Ok(res)
}

/// `4g`, `512m`, `1.5g`, `1024k`, `1073741824`: what Docker's `--memory`
/// takes, the suffix in either case (`4G`).
pub fn is_memory(m: &str) -> bool {
    let m = m.to_ascii_lowercase();
    let digits = m.trim_end_matches(['b', 'k', 'm', 'g']);
    let suffix = &m[digits.len()..];
    let unit = match suffix {
        "k" => 1024f64,
        "m" => 1024f64 * 1024.0,
        "g" => 1024f64 * 1024.0 * 1024.0,
        _ => 1f64,
    };
    // At most 1 PiB: a larger number would saturate the engine's 64-bit
    // byte count, which is no limit at all.
    suffix.len() <= 1
        && !digits.is_empty()
        && digits
            .parse::<f64>()
            .is_ok_and(|x| x > 0.0 && x.is_finite() && x * unit <= MAX_MEMORY_BYTES)
        && !digits.starts_with(['+', '-'])
}

/// The largest `memory` a bottle may ask for (1 PiB).
pub const MAX_MEMORY_BYTES: f64 = (1u64 << 50) as f64;
