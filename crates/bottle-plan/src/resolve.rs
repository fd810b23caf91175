//! Agent + merged bottle + host facts → [`Plan`] and [`Secrets`].

use std::collections::BTreeMap;
use std::path::Path;

use bottle_manifest::bottle::{Dlp, EnvValue, Log, Route, Runtime, Tls, TokenKind, TokenRef};
use bottle_manifest::{Agent, MergedBottle};
use bottle_secret::Secret;

use crate::error::Error;
use crate::host::{Facts, Host};
use crate::names;
use crate::plan::*;
use crate::secrets::Secrets;

/// Where the agent reaches the sidecar.
pub const SIDECAR_HOST: &str = "sidecar";
pub const PROXY_PORT: u16 = 3128;
pub const GATE_PORT: u16 = 8418;
/// The non-secret value the agent holds in place of a model API credential.
pub const PLACEHOLDER: &str = "cred-proxy-placeholder";
/// Where the CA bundle that trusts the bottle's CA sits in the agent.
pub const CA_BUNDLE: &str = "/run/claude-bottle/ca-bundle.pem";

/// Launch options from the command line and the environment.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub copy_cwd: bool,
    pub keep: bool,
    pub forward_oauth_token: bool,
    /// `CLAUDE_BOTTLE_IMAGE`.
    pub image: Option<String>,
    /// `CLAUDE_BOTTLE_DERIVED_IMAGE`.
    pub derived_image: Option<String>,
    /// `CLAUDE_BOTTLE_CONTAINER`.
    pub container: Option<String>,
}

/// A resolved launch: the plan to show, the values to use.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub plan: Plan,
    pub secrets: Secrets,
}

pub fn resolve(
    agent: &Agent,
    bottle: &MergedBottle,
    facts: &Facts,
    opts: &Options,
    host: &dyn Host,
) -> Result<Resolved, Error> {
    let mut warnings = Vec::new();
    let mut secrets = Secrets::default();
    let engine = facts.engine.as_ref();
    if engine.is_none() {
        warnings.push(
            "the container engine was not reached: container names and the runtime are not checked"
                .to_string(),
        );
    }

    // A stand-in host has no file to check; the plan still shows the path.
    if let Some(path) = &bottle.upstream_ca
        && host.values_are_real()
    {
        // The file that set it, which may be a parent of the bottle.
        let unreadable = |reason: String| Error::UnreadableFile {
            path: path.clone(),
            file: bottle
                .upstream_ca_file
                .clone()
                .unwrap_or_else(|| bottle.file.clone()),
            line: bottle.upstream_ca_line,
            key: "egress.upstream_ca".to_string(),
            reason,
        };
        let pem = host
            .read_secret_file(path)
            .map_err(|e| unreadable(e.kind().to_string()))?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(unreadable("no PEM certificate in it".to_string()));
        }
        secrets.upstream_ca = Some(pem);
    }

    if let Some(e) = engine
        && !e.leftovers.is_empty()
    {
        warnings.push(format!(
            "objects left by bottles whose CLI is gone ({}); `claude-bottle cleanup` removes them",
            e.leftovers.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }

    let slug = names::pick_slug(&agent.name, engine).ok_or_else(|| Error::SlugsExhausted {
        agent: agent.name.clone(),
    })?;
    let container = match &opts.container {
        Some(pin) => {
            if engine.is_some_and(|e| e.containers.contains(pin)) {
                return Err(Error::ContainerExists { name: pin.clone() });
            }
            pin.clone()
        }
        None => names::agent_container(&slug),
    };

    // The engine knows gVisor by the name it was registered under, which
    // need not be `runsc`; the plan JSON says `runsc` either way. `auto`
    // without gVisor names `runc`, unless the engine's default is known to
    // isolate more (Kata, gVisor under a name not told apart), which is
    // then left to apply. Any other default is not taken on trust (the
    // NVIDIA runtime's hooks have had container escapes).
    let mut engine_default_runtime = None;
    let (runtime, engine_runtime) = match engine {
        None => (None, None),
        Some(e) => match (bottle.runtime.unwrap_or(Runtime::Auto), &e.gvisor_runtime) {
            (Runtime::Runsc, None) => {
                return Err(Error::NoRunsc {
                    file: bottle
                        .runtime_file
                        .clone()
                        .unwrap_or_else(|| bottle.file.clone()),
                    line: bottle.runtime_line,
                });
            }
            (Runtime::Runsc | Runtime::Auto, Some(name)) => {
                (Some("runsc".to_string()), Some(name.clone()))
            }
            (Runtime::Auto, None) => match e.default_runtime.as_deref() {
                Some(d) if isolates_more_than_runc(d) => {
                    engine_default_runtime = Some(d.to_string());
                    (Some("runc".to_string()), None)
                }
                _ => (Some("runc".to_string()), Some("runc".to_string())),
            },
            (Runtime::Runc, _) => (Some("runc".to_string()), Some("runc".to_string())),
        },
    };
    // The agent keeps the engine's default seccomp profile: one that is
    // off leaves it every system call. gVisor filters them itself.
    // (A default that isolates more, Kata's VM, is left to judge itself.)
    if engine_runtime.as_deref() == Some("runc") && engine.is_some_and(|e| e.seccomp == Some(false))
    {
        return Err(Error::NoSeccomp);
    }

    for skill in &agent.skills {
        let path = facts.home.join(".claude").join("skills").join(&skill.name);
        if !host.dir_exists(&path) {
            return Err(Error::MissingSkill {
                name: skill.name.clone(),
                path,
                file: agent.file.clone(),
                line: skill.line,
                key: skill.key.clone(),
            });
        }
    }

    let dlp = bottle.dlp.unwrap_or(Dlp::Block);
    let tokens = resolve_tokens(bottle, host, &mut secrets)?;
    let mut allow = resolve_routes(bottle, dlp)?;
    let has_anthropic = bottle.tokens.iter().any(|t| t.kind == TokenKind::Anthropic);
    let has_openai = bottle.tokens.iter().any(|t| t.kind == TokenKind::Openai);

    let mut env = EnvPlan::default();
    // The agent's env file is one line per variable: a value that breaks
    // the line is refused here, before the launch question, not after it.
    // Never quoted: the value may be a secret.
    let one_line = |v: &str, entry: &bottle_manifest::bottle::EnvEntry, name: &str, from: &str| {
        if !v.contains(['\n', '\r', '\0']) {
            return Ok(());
        }
        Err(Error::Conflict {
            message: format!("{from} holds a line break or a NUL, which the env file cannot carry"),
            file: entry.file.clone(),
            line: entry.line,
            key: format!("env.{name}"),
            hint: "put the value on one line; a longer text can go in a file the agent reads \
                   (`--copy-cwd`, or a repo)"
                .into(),
        })
    };
    // Said after the check for credentials in the env, the graver error
    // (a deploy key has line breaks too).
    let mut broken = None;
    for (name, entry) in &bottle.env {
        match &entry.value {
            EnvValue::Literal(v) => {
                broken = broken.or(one_line(v, entry, name, "the value").err());
                env.literal.push(name.clone());
                secrets.env.insert(name.clone(), Secret::new(v.clone()));
            }
            EnvValue::Forward(var) => {
                let v = host.env(var).ok_or_else(|| Error::UnsetVariable {
                    name: var.clone(),
                    file: entry.file.clone(),
                    line: entry.line,
                    key: format!("env.{name}"),
                })?;
                let from = format!("`{var}` from the host");
                broken = broken.or(one_line(&v, entry, name, &from).err());
                env.forwarded.push(name.clone());
                secrets.env.insert(name.clone(), Secret::new(v));
            }
            EnvValue::Prompt(_) => env.prompted.push(name.clone()),
        }
    }

    let forward_oauth = opts.forward_oauth_token && !has_anthropic;
    if opts.forward_oauth_token && has_anthropic {
        warnings.push(
            "`--forward-oauth-token` is ignored: the bottle declares an `anthropic` token, so the \
             sidecar injects it and the agent never holds it"
                .to_string(),
        );
    }
    if forward_oauth {
        let var = "CLAUDE_BOTTLE_OAUTH_TOKEN";
        let v = host.env(var).ok_or_else(|| Error::ForwardedTokenUnset {
            name: var.to_string(),
        })?;
        env.forwarded.push("CLAUDE_CODE_OAUTH_TOKEN".to_string());
        secrets
            .env
            .insert("CLAUDE_CODE_OAUTH_TOKEN".to_string(), Secret::new(v));
        if !allow.iter().any(|r| r.host == "api.anthropic.com") {
            allow.push(RoutePlan {
                host: "api.anthropic.com".into(),
                methods: None,
                paths: None,
                ports: vec![443],
                ports_given: true,
                tls: "passthrough".into(),
                auth: None,
            });
        }
        warnings.push(
            "`--forward-oauth-token`: the agent holds the real OAuth token in \
             `CLAUDE_CODE_OAUTH_TOKEN`; a compromised agent can read it and use it from anywhere. \
             The credential guarantee does not hold for this bottle. Declare an `anthropic` token \
             in the bottle instead."
                .to_string(),
        );
    }
    warnings.extend(wide_route_warnings(&allow, dlp));

    env.set_by_bottle = set_by_bottle(bottle, has_anthropic, has_openai, &secrets, &allow);
    for list in [&mut env.literal, &mut env.forwarded, &mut env.prompted] {
        list.sort();
    }

    let git = resolve_git(agent, bottle, host, &mut secrets)?;
    warnings.extend(token_scope_warnings(&allow, &tokens, &git.repos));
    // A stand-in host (`info`) gives one placeholder for every value.
    if host.values_are_real() {
        refuse_env_holding_credentials(bottle, &secrets)?;
    }
    if let Some(e) = broken {
        return Err(e);
    }
    let image = bottle
        .image
        .clone()
        .or_else(|| opts.image.clone())
        .unwrap_or_else(|| format!("claude-bottle/agent:{}", facts.version));
    let derived_image = opts.copy_cwd.then(|| {
        opts.derived_image
            .as_deref()
            .map(names::as_listed)
            .unwrap_or_else(|| names::derived_image(&slug))
    });

    let plan = Plan {
        schema: SCHEMA,
        engine_reached: engine.is_some(),
        warnings,
        agent: AgentPlan {
            name: agent.name.clone(),
            source: agent.source.as_str().to_string(),
            file: agent.file.display().to_string(),
            skills: agent.skill_names(),
            prompt_first_line: agent.prompt_first_line().map(str::to_string),
            command: agent.command.clone(),
        },
        bottle: BottlePlan {
            name: bottle.name.clone(),
            lineage: bottle.lineage.clone(),
        },
        backend: "docker".to_string(),
        runtime,
        engine_runtime,
        engine_default_runtime,
        container,
        sidecar: SidecarPlan {
            container: names::sidecar_container(&slug),
            image: format!("claude-bottle/sidecar:{}", facts.version),
        },
        networks: vec![names::internal_network(&slug), names::egress_network(&slug)],
        image,
        derived_image,
        copy_cwd: opts.copy_cwd,
        keep: opts.keep,
        forward_oauth_token: forward_oauth,
        env,
        tokens,
        egress: EgressPlan {
            allow,
            dlp: dlp.as_str().to_string(),
            log: bottle.log.unwrap_or(Log::Events).as_str().to_string(),
            resolve: bottle.resolve.clone(),
            upstream_ca: bottle.upstream_ca.as_ref().map(|p| p.display().to_string()),
            upstream_proxy: bottle.upstream_proxy.clone(),
        },
        git,
        resources: ResourcesPlan {
            memory: bottle
                .resources
                .memory
                .clone()
                .unwrap_or_else(|| "4g".to_string()),
            cpus: bottle.resources.cpus.unwrap_or(2.0),
            pids: bottle.resources.pids.unwrap_or(1024),
        },
        slug,
    };
    Ok(Resolved { plan, secrets })
}

fn read_credential(
    token_ref: &TokenRef,
    host: &dyn Host,
    file: &Path,
    line: u32,
    key: &str,
) -> Result<Secret, Error> {
    let value = match token_ref {
        TokenRef::Env(var) => host.env(var).ok_or_else(|| Error::UnsetVariable {
            name: var.clone(),
            file: file.to_path_buf(),
            line,
            key: key.to_string(),
        })?,
        TokenRef::File { path, .. } => {
            let text = host
                .read_secret_file(path)
                .map_err(|e| Error::UnreadableFile {
                    path: path.clone(),
                    file: file.to_path_buf(),
                    line,
                    key: key.to_string(),
                    reason: e.kind().to_string(),
                })?;
            text.lines().next().unwrap_or("").trim().to_string()
        }
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(Error::EmptyCredential {
            what: format!("the credential named by `{}`", token_ref.shown()),
            file: file.to_path_buf(),
            line,
            key: key.to_string(),
        });
    }
    Ok(Secret::new(value))
}

fn resolve_tokens(
    bottle: &MergedBottle,
    host: &dyn Host,
    secrets: &mut Secrets,
) -> Result<Vec<TokenPlan>, Error> {
    let mut out = Vec::new();
    for t in &bottle.tokens {
        let key = format!("{}.token_ref", t.key);
        let value = read_credential(&t.token_ref, host, &t.file, t.ref_line, &key)?;
        let (route, upstream) = match t.kind {
            TokenKind::Anthropic => {
                secrets.anthropic_is_api_key = value.expose().starts_with("sk-ant-api");
                (Some("/anthropic"), Some("https://api.anthropic.com"))
            }
            TokenKind::Openai => (Some("/openai"), Some("https://api.openai.com")),
            TokenKind::Http => (None, None),
        };
        secrets
            .tokens
            .insert(t.token_ref.shown().to_string(), value);
        out.push(TokenPlan {
            kind: t.kind.as_str().to_string(),
            token_ref: t.token_ref.shown().to_string(),
            host: t.host.clone(),
            scheme: t.scheme.as_ref().map(|s| s.shown()),
            route: route.map(str::to_string),
            upstream: upstream.map(str::to_string),
        });
    }
    Ok(out)
}

/// The bottle's routes plus those its `http` tokens imply, with defaults.
fn resolve_routes(bottle: &MergedBottle, dlp: Dlp) -> Result<Vec<RoutePlan>, Error> {
    let mut routes: Vec<(Route, Option<String>)> =
        bottle.allow.iter().map(|r| (r.clone(), None)).collect();
    for t in bottle.tokens.iter().filter(|t| t.kind == TokenKind::Http) {
        let (Some(h), Some(scheme)) = (&t.host, &t.scheme) else {
            continue;
        };
        match routes.iter_mut().find(|(r, _)| &r.host == h) {
            Some((r, auth)) => {
                if r.tls == Some(Tls::Passthrough) {
                    return Err(Error::Conflict {
                        message: format!(
                            "route `{h}` is `tls: passthrough` but the `http` token `{}` \
                             (`{}`:{}) injects into it",
                            t.key,
                            t.file.display(),
                            t.line
                        ),
                        file: r.file.clone(),
                        line: r.line,
                        key: format!("{}.tls", r.key),
                        hint: "a tunnel cannot carry an injected header; use `tls: intercept`"
                            .into(),
                    });
                }
                *auth = Some(scheme.shown());
            }
            None => {
                // A wildcard route that covers the token's host keeps its
                // rules there: the implied route is the more specific one
                // and wins at the proxy, and with no rules of its own it
                // would lift a `methods: [GET]` on `*.github.com` for the
                // one host the token writes to.
                let covering = routes
                    .iter()
                    .filter_map(|(r, _)| wildcard_covers(&r.host, h).map(|depth| (depth, r)))
                    // The first of equals, as the sidecar picks.
                    .rev()
                    .max_by_key(|(depth, _)| *depth)
                    .map(|(_, r)| r);
                routes.push((
                    Route {
                        host: h.clone(),
                        methods: covering.and_then(|r| r.methods.clone()),
                        paths: covering.and_then(|r| r.paths.clone()),
                        tls: Some(Tls::Intercept),
                        ports: covering.and_then(|r| r.ports.clone()),
                        file: t.file.clone(),
                        line: t.line,
                        key: t.key.clone(),
                    },
                    Some(scheme.shown()),
                ))
            }
        }
    }
    // manifest.md: `*` implies interception when DLP is on. An explicit
    // `tls: passthrough` would open blind tunnels to any host, which DLP
    // cannot look into; so would `*.com` (every host under a top-level
    // domain). Checked after `extends`, as `dlp` may be set by another file
    // of the lineage than the route.
    let any_host = |h: &str| h == "*" || over_a_top_level_domain(h);
    if dlp != Dlp::Off
        && let Some((r, _)) = routes
            .iter()
            .find(|(r, _)| any_host(&r.host) && r.tls == Some(Tls::Passthrough))
    {
        return Err(Error::Conflict {
            message: format!(
                "route `{}` is `tls: passthrough` while DLP is `{}`: it would tunnel to any \
                 host{} without DLP seeing what is sent",
                r.host,
                dlp.as_str(),
                match r.host.as_str() {
                    "*" => String::new(),
                    h => format!(" under `{}`", &h[2..]),
                }
            ),
            file: r.file.clone(),
            line: r.line,
            key: format!("{}.tls", r.key),
            hint: "set `tls: intercept` (or leave `tls` out), or set `egress.dlp: off` if \
                   unscanned tunnels to any host are really wanted"
                .into(),
        });
    }
    Ok(routes
        .into_iter()
        .map(|(r, auth)| {
            let wants_inspection =
                r.methods.is_some() || r.paths.is_some() || auth.is_some() || dlp != Dlp::Off;
            let tls = r.tls.unwrap_or(if wants_inspection {
                Tls::Intercept
            } else {
                Tls::Passthrough
            });
            RoutePlan {
                host: r.host,
                methods: r.methods,
                paths: r.paths,
                ports_given: r.ports.is_some(),
                ports: r.ports.unwrap_or_else(|| vec![80, 443]),
                tls: tls.as_str().to_string(),
                auth,
            }
        })
        .collect())
}

/// `*.com`: a wildcard directly over a top-level domain (one label after
/// `*.`). No public-suffix list is consulted, so `*.co.uk` is not one.
fn over_a_top_level_domain(host: &str) -> bool {
    host.strip_prefix("*.").is_some_and(|d| !d.contains('.'))
}

/// The preflight's warnings for routes that open most of the internet:
/// `*`, or else wildcards over a top-level domain (`*.com`), all of them
/// named in one warning. With DLP off, saying "only DLP" would promise a check
/// that is not there, so the warning says nothing checks what is sent.
/// An `http` token goes with every request to its host that the route
/// lets through: with writes allowed on any path, the agent can do all the
/// credential can (mint a key, add a deploy key or a webhook, register a
/// runner) and read the answers, none of which DLP sees as a secret
/// leaving. And a repo pushed through the gate with the same credential
/// has its `protect` rules only at the gate: the API can move or delete
/// the branch directly.
fn token_scope_warnings(
    allow: &[RoutePlan],
    tokens: &[TokenPlan],
    repos: &[RepoPlan],
) -> Vec<String> {
    let mut out = Vec::new();
    for r in allow.iter().filter(|r| r.auth.is_some()) {
        let writes = r.methods.as_ref().is_none_or(|m| {
            m.iter()
                .any(|m| !matches!(m.to_ascii_uppercase().as_str(), "GET" | "HEAD" | "OPTIONS"))
        });
        if !writes {
            continue;
        }
        // A list with `/` (a prefix of every path) or a catch-all pattern
        // is no list.
        let every = |p: &String| {
            let re = p.strip_prefix("re:").map(|r| r.trim_start_matches('^'));
            p == "/" || p.is_empty() || matches!(re, Some("" | ".*" | "/" | "/.*"))
        };
        if r.paths.as_ref().is_none_or(|ps| ps.iter().any(every)) {
            out.push(format!(
                "the token for `{}` goes with any request the agent sends there, writes \
                 included, on any path: it can do whatever the credential can (create keys, \
                 deploy keys or webhooks) and read the answers; give the route `paths` (and \
                 `methods`) that cover only what the agent needs",
                r.host
            ));
        }
        let token_ref = tokens
            .iter()
            .find(|t| t.kind == "http" && t.host.as_deref() == Some(r.host.as_str()))
            .map(|t| t.token_ref.as_str());
        for repo in repos
            .iter()
            .filter(|repo| token_ref.is_some() && repo.token_ref.as_deref() == token_ref)
        {
            out.push(format!(
                "repo `{}` is pushed with `{}`, which the sidecar also injects into write \
                 requests to `{}`: there the agent can change branches through the API, past \
                 the gate's `protect` rules; give the repo a credential of its own, or allow \
                 only reads on that route",
                repo.name,
                token_ref.unwrap_or_default(),
                r.host
            ));
        }
    }
    out
}

fn wide_route_warnings(allow: &[RoutePlan], dlp: Dlp) -> Vec<String> {
    let warn = |what: &str, reach: &str| {
        if dlp == Dlp::Off {
            format!(
                "{what} and DLP is off: the agent can reach {reach} through the proxy and \
                 nothing checks what it sends"
            )
        } else {
            format!(
                "{what}: the agent can reach {reach} through the proxy; only DLP stands \
                 between it and exfiltration"
            )
        }
    };
    // `*` covers every top-level domain: its warning says it all.
    if allow.iter().any(|r| r.host == "*") {
        return vec![warn(
            "a route allows any host (`host: \"*\"`)",
            "the whole internet",
        )];
    }
    let tlds: Vec<String> = allow
        .iter()
        .filter(|r| over_a_top_level_domain(&r.host))
        .map(|r| format!("`{}`", r.host))
        .collect();
    if tlds.is_empty() {
        return Vec::new();
    }
    let routes = if tlds.len() == 1 {
        "a route allows"
    } else {
        "routes allow"
    };
    vec![warn(
        &format!(
            "{routes} every host under a top-level domain ({})",
            tlds.join(", ")
        ),
        "a large part of the internet",
    )]
}

fn set_by_bottle(
    bottle: &MergedBottle,
    has_anthropic: bool,
    has_openai: bool,
    secrets: &Secrets,
    allow: &[RoutePlan],
) -> Vec<String> {
    let mut names: Vec<&str> = vec![
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
    ];
    if has_anthropic {
        names.push("ANTHROPIC_BASE_URL");
        names.push(if secrets.anthropic_is_api_key {
            "ANTHROPIC_API_KEY"
        } else {
            "CLAUDE_CODE_OAUTH_TOKEN"
        });
    }
    if has_openai {
        names.extend(["OPENAI_BASE_URL", "OPENAI_API_KEY"]);
    }
    for switch in [
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
        "DISABLE_ERROR_REPORTING",
    ] {
        if !bottle.env.contains_key(switch) {
            names.push(switch);
        }
    }
    if allow.iter().any(RoutePlan::intercepts) {
        names.extend([
            "NODE_EXTRA_CA_CERTS",
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "GIT_SSL_CAINFO",
        ]);
    }
    names.into_iter().map(str::to_string).collect()
}

/// The agent's env as the CLI sets it, values included (none secret).
/// `ca` says whether the CA variables apply.
pub fn bottle_env(plan: &Plan) -> BTreeMap<String, String> {
    let proxy = format!("http://{SIDECAR_HOST}:{PROXY_PORT}");
    let mut env = BTreeMap::new();
    for name in &plan.env.set_by_bottle {
        let value = match name.as_str() {
            "HTTP_PROXY" | "HTTPS_PROXY" | "http_proxy" | "https_proxy" => proxy.clone(),
            "NO_PROXY" | "no_proxy" => format!("localhost,127.0.0.1,{SIDECAR_HOST}"),
            "ANTHROPIC_BASE_URL" => format!("{proxy}/anthropic"),
            "OPENAI_BASE_URL" => format!("{proxy}/openai/v1"),
            "ANTHROPIC_API_KEY" | "CLAUDE_CODE_OAUTH_TOKEN" | "OPENAI_API_KEY" => {
                PLACEHOLDER.to_string()
            }
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC" | "DISABLE_ERROR_REPORTING" => "1".into(),
            "NODE_EXTRA_CA_CERTS" | "SSL_CERT_FILE" | "REQUESTS_CA_BUNDLE" | "GIT_SSL_CAINFO" => {
                CA_BUNDLE.to_string()
            }
            _ => continue,
        };
        env.insert(name.clone(), value);
    }
    env
}

fn resolve_git(
    agent: &Agent,
    bottle: &MergedBottle,
    host: &dyn Host,
    secrets: &mut Secrets,
) -> Result<GitPlan, Error> {
    let user = bottle.git_user.overlay(&agent.git_user);
    // The gate would refuse to start (gitgate config); say so now, with the
    // manifest lines, rather than after the containers are made.
    if bottle.upstream_proxy.is_some()
        && let Some(r) = bottle.repos.iter().find(|r| r.is_ssh())
    {
        return Err(Error::SshBehindUpstreamProxy {
            repo: r.name.clone(),
            file: r.file.clone(),
            line: r.url_line,
            proxy_file: bottle
                .upstream_proxy_file
                .clone()
                .unwrap_or_else(|| bottle.file.clone()),
        });
    }
    let mut repos = Vec::new();
    for r in &bottle.repos {
        let auth = if r.is_ssh() {
            let key_path = r.identity.as_ref();
            if let Some(path) = key_path {
                let key = host
                    .read_secret_file(path)
                    .map_err(|e| Error::UnreadableFile {
                        path: path.clone(),
                        file: r.file.clone(),
                        line: r.identity_line,
                        key: format!("git.repos.{}.identity", r.name),
                        reason: e.kind().to_string(),
                    })?;
                if key.trim().is_empty() {
                    return Err(Error::EmptyCredential {
                        what: format!("the deploy key of repo `{}`", r.name),
                        file: r.file.clone(),
                        line: r.identity_line,
                        key: format!("git.repos.{}.identity", r.name),
                    });
                }
                secrets.ssh_keys.insert(r.name.clone(), Secret::new(key));
            }
            if let Some(hk) = &r.host_key {
                secrets.known_hosts.insert(r.name.clone(), hk.clone());
            }
            "ssh-key"
        } else {
            if let Some(tr) = &r.token_ref {
                let key = format!("git.repos.{}.token_ref", r.name);
                let v = read_credential(tr, host, &r.file, r.token_ref_line, &key)?;
                secrets.tokens.insert(tr.shown().to_string(), v);
            }
            "token"
        };
        repos.push(RepoPlan {
            name: r.name.clone(),
            url: r.url.clone(),
            auth: auth.to_string(),
            token_ref: r.token_ref.as_ref().map(|t| t.shown().to_string()),
            push: r.push.clone().unwrap_or_else(|| vec!["*".to_string()]),
            protect: r
                .protect
                .clone()
                .unwrap_or_else(|| vec!["main".to_string(), "master".to_string()]),
            gate_url: format!("http://{SIDECAR_HOST}:{GATE_PORT}/{}.git", r.name),
            clone_to: format!("/workspace/{}", r.name),
        });
    }
    Ok(GitPlan {
        user: GitUserPlan {
            name: user.name,
            email: user.email,
        },
        repos,
    })
}

/// A runtime name known to isolate more than runc: Kata (a VM per
/// container) or gVisor.
fn isolates_more_than_runc(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("kata") || n.contains("runsc") || n.contains("gvisor")
}

/// How specifically the wildcard route host `pattern` (`*`, `*.example.com`)
/// covers `host`: the number of labels it names (`*` is 0), or `None` when
/// it is not a wildcard or does not cover `host` (never its apex).
pub(crate) fn wildcard_covers(pattern: &str, host: &str) -> Option<usize> {
    if pattern == "*" {
        return Some(0);
    }
    let suffix = pattern.strip_prefix("*.")?;
    let host = host.to_ascii_lowercase();
    let under = host.strip_suffix(&suffix.to_ascii_lowercase())?;
    under
        .strip_suffix('.')
        .filter(|label| !label.is_empty())
        .map(|_| suffix.split('.').count())
}

/// The shortest credential looked for inside env values: a shorter one
/// would be found by chance.
const MIN_CREDENTIAL_IN_ENV: usize = 8;

/// Refuses an env value (literal or forwarded) that holds a token or a
/// deploy key of the bottle: the agent would hold the credential that only
/// the sidecar may hold, while the preflight says the sidecar alone holds
/// it. Found inside a longer value too (`Bearer <token>`, a URL with it).
fn refuse_env_holding_credentials(bottle: &MergedBottle, secrets: &Secrets) -> Result<(), Error> {
    let credentials = secrets
        .tokens
        .iter()
        .map(|(name, v)| (format!("token `{name}`"), v))
        .chain(
            secrets
                .ssh_keys
                .iter()
                .map(|(repo, v)| (format!("the deploy key of repo `{repo}`"), v)),
        );
    for (what, credential) in credentials {
        let credential = credential.expose().trim();
        if credential.len() < MIN_CREDENTIAL_IN_ENV {
            continue;
        }
        // The bottle's own values; `--forward-oauth-token` adds one the
        // preflight warns about in its own words.
        for (name, entry) in &bottle.env {
            let Some(value) = secrets.env.get(name) else {
                continue;
            };
            if !value.expose().contains(credential) {
                continue;
            }
            let (file, line) = (entry.file.clone(), entry.line);
            return Err(Error::Conflict {
                message: format!(
                    "`env.{name}` holds the value of {what}, which only the sidecar may hold: \
                     the agent would have the credential itself"
                ),
                file,
                line,
                key: format!("env.{name}"),
                hint: "remove the variable from `env`: the sidecar puts the credential into \
                       the requests and pushes that need it, and the agent never needs it"
                    .into(),
            });
        }
    }
    Ok(())
}
