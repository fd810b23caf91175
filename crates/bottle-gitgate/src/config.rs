//! The gate's configuration and secrets, in the shape of the sidecar JSON.
//!
//! `gate: {listen, state_dir, upstream_ca, repos: {name: {url, push, protect,
//! auth, token_ref}}}` and `secrets: {tokens: {token_ref: value}, ssh_keys:
//! {repo: key}, known_hosts: {repo: line}}`. The CLI renders both from the
//! plan's `git.repos[]`; secrets stay in [`Secret`] from the moment they are
//! parsed, so no `Debug` of a config ever shows one.

use std::collections::BTreeMap;
use std::fmt;

use bottle_addr::HostAddresses;
use std::net::SocketAddr;
use std::path::PathBuf;

use bottle_secret::Secret;
use serde::{Deserialize, Deserializer};

use crate::Error;

/// The default address of the gate inside the sidecar (`http://sidecar:8418`).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8418";

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8418))
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/claude-bottle/gitgate")
}

fn default_push() -> Vec<String> {
    vec!["*".to_string()]
}

fn default_protect() -> Vec<String> {
    vec!["main".to_string(), "master".to_string()]
}

/// `gate:` of the sidecar configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where the mirrors, hooks and key files live. Created 0700.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Extra CA file (PEM) trusted for HTTPS upstreams (corporate
    /// inspection, tests); git gets it as `http.sslCAInfo`.
    #[serde(default)]
    pub upstream_ca: Option<PathBuf>,
    #[serde(default)]
    pub repos: BTreeMap<String, RepoConfig>,
    /// The bottle's `resolve` table (host → address or address:port):
    /// upstream names pinned there are reached at that address, as the
    /// proxy does.
    #[serde(default)]
    pub resolve: BTreeMap<String, String>,
    /// The bottle's `egress.upstream_proxy` (`http://HOST:PORT`): HTTPS
    /// upstreams are reached through it (`http.proxy`, CONNECT).
    #[serde(default)]
    pub upstream_proxy: Option<String>,
    /// The addresses of the machine the bottle runs on (the proxy's
    /// `host_addresses`): the guard refuses an upstream name that resolves
    /// to one, as it refuses a private address, since the gate's
    /// connections reach the host there as local traffic.
    #[serde(default, deserialize_with = "host_addresses")]
    pub host_addresses: HostAddresses,
}

fn host_addresses<'de, D: Deserializer<'de>>(d: D) -> Result<HostAddresses, D::Error> {
    let raw: Vec<String> = Vec::deserialize(d)?;
    HostAddresses::parse(&raw).map_err(|e| serde::de::Error::custom(format!("host_addresses: {e}")))
}

/// How the gate authenticates to one upstream.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize)]
pub enum Auth {
    #[serde(rename = "ssh-key")]
    SshKey,
    #[serde(rename = "token")]
    Token,
    /// No credential (a public upstream, or tests).
    #[serde(rename = "none")]
    None,
}

/// One repo: `gate.repos.<name>`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// `git@host:path`, `ssh://…` or `https://…` (no credentials in it).
    pub url: String,
    /// Branch-name globs the agent may push; default `["*"]`.
    #[serde(default = "default_push")]
    pub push: Vec<String>,
    /// Branches never deleted or rewritten; default `[main, master]`.
    #[serde(default = "default_protect")]
    pub protect: Vec<String>,
    pub auth: Auth,
    /// With `auth: token`: the key into `secrets.tokens`. Added to the
    /// sidecar JSON for the gate (the plan has it per repo).
    #[serde(default)]
    pub token_ref: Option<String>,
}

/// `secrets:` of the sidecar configuration (the parts the gate uses).
#[derive(Default, Clone, Deserialize)]
pub struct GateSecrets {
    #[serde(default, deserialize_with = "secret_map")]
    pub tokens: BTreeMap<String, Secret>,
    #[serde(default, deserialize_with = "secret_map")]
    pub ssh_keys: BTreeMap<String, Secret>,
    /// Pinned host key lines, `known_hosts` format; not secret.
    #[serde(default)]
    pub known_hosts: BTreeMap<String, String>,
}

impl fmt::Debug for GateSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only.
        f.debug_struct("GateSecrets")
            .field("tokens", &self.tokens.keys().collect::<Vec<_>>())
            .field("ssh_keys", &self.ssh_keys.keys().collect::<Vec<_>>())
            .field("known_hosts", &self.known_hosts.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn secret_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Secret>, D::Error> {
    let raw: BTreeMap<String, String> = BTreeMap::deserialize(d)?;
    Ok(raw.into_iter().map(|(k, v)| (k, Secret::new(v))).collect())
}

/// Repo names become URL paths and directory names: keep them boring.
pub fn valid_repo_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && !name.ends_with(".git")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl GateConfig {
    /// Checks what serde cannot: names, URLs, and that every repo has the
    /// secret its `auth` needs. Errors name the repo and the field, never a
    /// value.
    pub fn validate(&self, secrets: &GateSecrets) -> Result<(), Error> {
        for (name, repo) in &self.repos {
            let bad = |why: String| Error::Config(format!("gate.repos.{name}: {why}"));
            if !valid_repo_name(name) {
                return Err(bad(
                    "the name may use letters, digits, `-`, `_`, `.` and must not end in .git"
                        .into(),
                ));
            }
            check_url(&repo.url).map_err(bad)?;
            for p in repo.push.iter().chain(&repo.protect) {
                // A full ref name matches no branch (patterns are matched
                // against the name after `refs/heads/`).
                if p.is_empty() || p.contains(char::is_whitespace) || p.starts_with("refs/") {
                    return Err(bad(format!("bad branch pattern {p:?}")));
                }
            }
            match repo.auth {
                Auth::Token => {
                    let Some(r) = &repo.token_ref else {
                        return Err(bad("auth: token needs token_ref".into()));
                    };
                    if !secrets.tokens.contains_key(r) {
                        return Err(bad(format!("secrets.tokens has no {r}")));
                    }
                    if !is_https(&repo.url) {
                        return Err(bad("auth: token needs an https:// url".into()));
                    }
                }
                Auth::SshKey => {
                    // ssh would need a ProxyCommand speaking CONNECT;
                    // refused rather than silently going around the proxy.
                    if self.upstream_proxy.is_some() {
                        return Err(bad(
                            "an ssh upstream cannot be reached through `egress.upstream_proxy` \
                             (only https ones are); use the repo's https URL with a token"
                                .into(),
                        ));
                    }
                    if !secrets.ssh_keys.contains_key(name) {
                        return Err(bad("secrets.ssh_keys has no key for it".into()));
                    }
                    // Without a pinned host key ssh would have to trust on
                    // first use, which is exactly the hole pinning closes.
                    if !secrets.known_hosts.contains_key(name) {
                        return Err(bad("secrets.known_hosts has no pinned host key".into()));
                    }
                    if is_https(&repo.url) || repo.url.starts_with("http://") {
                        return Err(bad("auth: ssh-key needs an ssh url".into()));
                    }
                }
                Auth::None => {}
            }
        }
        Ok(())
    }
}

pub(crate) fn is_https(url: &str) -> bool {
    url.starts_with("https://")
}

fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with('-') || url.contains(char::is_whitespace) || url.contains('\0') {
        return Err("the url must not start with `-` or contain spaces".into());
    }
    // `ext::` and `fd::` run commands; file paths would let a config read the
    // sidecar's own files. Only network transports.
    let scheme_ok = if url.contains("://") {
        ["https://", "http://", "ssh://", "git+ssh://"]
            .iter()
            .any(|s| url.starts_with(s))
    } else {
        is_scp_like(url)
    };
    if !scheme_ok {
        return Err("the url must be https://, ssh:// or user@host:path".into());
    }
    if let Some(rest) = url.strip_prefix("https://").or(url.strip_prefix("http://")) {
        let authority = rest.split('/').next().unwrap_or("");
        if authority.contains('@') {
            // A credential in the URL would reach command lines and logs.
            return Err("credentials must not be part of the url; use token_ref".into());
        }
    }
    Ok(())
}

fn is_scp_like(url: &str) -> bool {
    // `user@host:path` (git's scp-like syntax): a colon before any slash,
    // and not `transport::address`, which git hands to a remote helper.
    let Some(c) = url.find(':') else {
        return false;
    };
    c > 0 && !url[..c].contains('/') && !url[c + 1..].starts_with(':')
}

/// Parses `{"gate": …, "secrets": …}` or a document with just those keys
/// among others (the whole sidecar JSON): unknown top-level keys are ignored.
pub fn from_sidecar_json(text: &str) -> Result<(GateConfig, GateSecrets), Error> {
    #[derive(Deserialize)]
    struct Doc {
        gate: GateConfig,
        #[serde(default)]
        secrets: GateSecrets,
    }
    // serde_json's messages quote at most a type name and a position, never
    // the input text, so they are safe to show.
    let doc: Doc = serde_json::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
    doc.gate.validate(&doc.secrets)?;
    Ok((doc.gate, doc.secrets))
}

/// The same from the two parts of an already parsed sidecar document (the
/// sidecar parses its stdin once).
pub fn from_sidecar_parts(
    gate: serde_json::Value,
    secrets: serde_json::Value,
) -> Result<(GateConfig, GateSecrets), Error> {
    let gate: GateConfig =
        serde_json::from_value(gate).map_err(|e| Error::Config(e.to_string()))?;
    // Unlike a parse of text, a typed read of a `Value` quotes the value
    // it refused (`invalid type: string "..."`): for the secrets, only the
    // kind of mistake is said, never the text.
    let secrets: GateSecrets = if secrets.is_null() {
        GateSecrets::default()
    } else {
        serde_json::from_value(secrets).map_err(|e| {
            Error::Config(format!(
                "the gate's secrets are not in the expected shape ({:?} error; values not shown)",
                e.classify()
            ))
        })?
    };
    gate.validate(&secrets)?;
    Ok((gate, secrets))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A secrets part of the wrong shape is an error that does not quote
    /// the value (the sidecar's stderr is in `docker logs`).
    #[test]
    fn a_misshapen_secret_is_not_quoted() {
        let gate =
            serde_json::json!({"listen": "127.0.0.1:8418", "state_dir": "/tmp/x", "repos": {}});
        for secrets in [
            serde_json::json!({"tokens": "sk-topsecretvalue42"}),
            serde_json::json!({"tokens": {"T": ["sk-topsecretvalue42"]}}),
            serde_json::json!({"ssh_keys": {"k": {"v": "sk-topsecretvalue42"}}}),
        ] {
            let e = from_sidecar_parts(gate.clone(), secrets)
                .unwrap_err()
                .to_string();
            assert!(!e.contains("topsecret"), "{e}");
            assert!(e.contains("secrets"), "{e}");
        }
    }

    const DOC: &str = r#"{
      "proxy": {"ignored": true},
      "gate": {"listen": "127.0.0.1:8418", "state_dir": "/tmp/x",
               "repos": {"app": {"url": "https://git.example/acme/app.git", "auth": "token",
                                 "token_ref": "GITHUB_TOKEN", "push": ["agent/*"]},
                         "lib": {"url": "git@github.com:acme/lib.git", "auth": "ssh-key"}}},
      "secrets": {"tokens": {"GITHUB_TOKEN": "ghp_0123456789abcdef0123456789abcdef0123"},
                  "ssh_keys": {"lib": "-----BEGIN OPENSSH PRIVATE KEY-----\n..."},
                  "known_hosts": {"lib": "github.com ssh-ed25519 AAAA"}}
    }"#;

    #[test]
    fn parses_the_sidecar_shape_with_defaults() {
        let (g, s) = from_sidecar_json(DOC).unwrap();
        assert_eq!(g.repos["app"].push, vec!["agent/*"]);
        assert_eq!(g.repos["app"].protect, vec!["main", "master"]);
        assert_eq!(g.repos["lib"].push, vec!["*"]);
        assert_eq!(g.repos["lib"].auth, Auth::SshKey);
        let shown = format!("{g:?} {s:?}");
        assert!(!shown.contains("ghp_0123"), "{shown}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }

    /// Patterns are matched against the branch name: a full ref name in
    /// `protect` would silently protect nothing.
    #[test]
    fn a_full_ref_name_is_not_a_branch_pattern() {
        for key in ["push", "protect"] {
            let doc = DOC.replace(
                r#""push": ["agent/*"]"#,
                &format!(r#""{key}": ["refs/heads/main"]"#),
            );
            let e = from_sidecar_json(&doc).unwrap_err().to_string();
            assert!(e.contains("bad branch pattern"), "{key}: {e}");
        }
    }

    #[test]
    fn rejects_missing_secrets_and_bad_urls() {
        let no_kh = DOC.replace(
            r#""known_hosts": {"lib": "github.com ssh-ed25519 AAAA"}"#,
            "",
        );
        let no_kh = no_kh.replace("...\"},", "...\"}");
        let e = from_sidecar_json(&no_kh).unwrap_err().to_string();
        assert!(e.contains("known_hosts"), "{e}");

        for url in [
            "ext::sh -c evil",
            "/etc",
            "-uhttps://x",
            "https://user:pw@host/x.git",
            "file:///etc",
            "ext::evil",
            "fd::3",
        ] {
            assert!(check_url(url).is_err(), "{url}");
        }
        for url in [
            "https://h/x.git",
            "ssh://git@127.0.0.1:2222/x.git",
            "git@github.com:a/b.git",
        ] {
            assert!(check_url(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn an_ssh_repo_behind_an_upstream_proxy_is_refused_not_sent_around_it() {
        let proxied = DOC.replace(
            r#""state_dir": "/tmp/x","#,
            r#""state_dir": "/tmp/x", "upstream_proxy": "http://proxy.corp:3128","#,
        );
        let e = from_sidecar_json(&proxied).unwrap_err().to_string();
        assert!(
            e.contains("gate.repos.lib") && e.contains("upstream_proxy"),
            "{e}"
        );
        assert!(from_sidecar_json(DOC).is_ok());
    }

    #[test]
    fn repo_names() {
        for ok in ["app", "my-repo_2", "a.b"] {
            assert!(valid_repo_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "..", "x.git", "a b", "a%2f"] {
            assert!(!valid_repo_name(bad), "{bad}");
        }
    }
}
