//! How git children get the upstream credential: only through their
//! environment.
//!
//! - token (HTTPS): `http.<upstream URL>.extraHeader=Authorization: Basic …` passed as
//!   `GIT_CONFIG_COUNT/KEY_n/VALUE_n`, so it is on no command line and in no
//!   repo config; redirects are not followed (the header would follow them).
//! - ssh key: the key is written 0600 into the gate's own 0700 key folder and
//!   named in `GIT_SSH_COMMAND` together with a pinned `known_hosts` and
//!   `StrictHostKeyChecking=yes`, so an unknown or changed host key refuses.
//!
//! Every git child also starts from an empty environment (the sidecar's own
//! variables never leak into git) with system and global git config ignored.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bottle_secret::Secret;

use crate::Error;
use crate::config::{Auth, GateConfig, GateSecrets, RepoConfig};

/// Environment entries; values that may hold a secret are [`Secret`].
pub type Env = Vec<(String, Secret)>;

/// The variables every git child of the gate starts from.
pub fn base_env(state_dir: &Path) -> Env {
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin".into());
    let home = state_dir.join("home");
    [
        ("PATH", path),
        ("HOME", home.to_string_lossy().into_owned()),
        ("GIT_CONFIG_NOSYSTEM", "1".into()),
        ("GIT_CONFIG_GLOBAL", "/dev/null".into()),
        ("GIT_TERMINAL_PROMPT", "0".into()),
        ("GIT_ASKPASS", "/bin/false".into()),
        ("SSH_ASKPASS", "/bin/false".into()),
        ("LC_ALL", "C".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Secret::new(v)))
    .collect()
}

/// Renders `key=value` git config entries as `GIT_CONFIG_*` variables.
pub fn config_env(entries: &[(String, Secret)]) -> Env {
    let mut env = vec![(
        "GIT_CONFIG_COUNT".to_string(),
        Secret::new(entries.len().to_string()),
    )];
    for (i, (k, v)) in entries.iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{i}"), Secret::new(k.clone())));
        env.push((format!("GIT_CONFIG_VALUE_{i}"), v.clone()));
    }
    env
}

/// Git config entries every upstream operation uses.
fn upstream_config(
    repo: &RepoConfig,
    gate: &GateConfig,
    secrets: &GateSecrets,
    vetted: Option<IpAddr>,
) -> Vec<(String, Secret)> {
    let mut c: Vec<(String, Secret)> = vec![
        // Only the network transports this repo needs; `ext::`, `file::`
        // and helpers stay off even if a URL somehow named them.
        ("protocol.allow".into(), Secret::new("never")),
        ("protocol.https.allow".into(), Secret::new("always")),
        ("protocol.ssh.allow".into(), Secret::new("always")),
        ("protocol.http.allow".into(), Secret::new("always")),
        // No credential helper, no redirect that would carry the header away.
        ("credential.helper".into(), Secret::new("")),
        ("http.followRedirects".into(), Secret::new("false")),
        // No other place a server could send git to fetch from: bundle
        // URIs and promisor remotes it advertises are refused (git's
        // defaults today, said here so a newer git cannot change them).
        ("transfer.bundleURI".into(), Secret::new("false")),
        ("promisor.acceptFromServer".into(), Secret::new("none")),
    ];
    if let Some(ca) = &gate.upstream_ca {
        c.push((
            "http.sslCAInfo".into(),
            Secret::new(ca.to_string_lossy().into_owned()),
        ));
    }
    if let Some(proxy) = &gate.upstream_proxy {
        // The proxy resolves and connects; a `resolve` pin cannot apply
        // through it (curl would CONNECT to the name anyway).
        c.push(("http.proxy".into(), Secret::new(proxy.clone())));
    } else if let Some((host, port, pin)) = pinned(&repo.url, gate, vetted) {
        // curl's --resolve: the URL (and so TLS's name check) stays the
        // same, only the address changes. A pin's own port cannot be
        // expressed this way; the URL's port is kept.
        let addr = if pin.ip.contains(':') {
            format!("[{}]", pin.ip)
        } else {
            pin.ip.clone()
        };
        c.push((
            "http.curloptResolve".into(),
            Secret::new(format!("{host}:{port}:{addr}")),
        ));
    }
    if repo.auth == Auth::Token
        && let Some(token) = repo.token_ref.as_ref().and_then(|r| secrets.tokens.get(r))
    {
        let b64 = basic_value(token.expose());
        // Scoped to the upstream's URL (and the paths under it): a request
        // git made anywhere else would go without the credential.
        c.push((
            format!("http.{}.extraHeader", repo.url),
            Secret::new(format!("Authorization: Basic {b64}")),
        ));
    }
    c
}

/// The `Basic` credential git sends for `token`: base64 of
/// `x-access-token:TOKEN`. Scrubbed from git's messages with the token.
pub fn basic_value(token: &str) -> String {
    let basic = Secret::new(format!("x-access-token:{token}"));
    String::from_utf8_lossy(&bottle_dlp::base64_encode(
        basic.expose().as_bytes(),
        false,
        true,
    ))
    .into_owned()
}

/// A `resolve` pin: an address and maybe a port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pin {
    ip: String,
    port: Option<u16>,
}

/// The upstream's host, its port (the URL's or the scheme's default) and
/// where git must connect for it: the bottle's pin for that host, or else
/// the address the SSRF guard vetted ([`crate::guard::vet`]).
fn pinned(url: &str, gate: &GateConfig, vetted: Option<IpAddr>) -> Option<(String, u16, Pin)> {
    let (host, port) = url_host(url)?;
    let Some(target) = gate.resolve.get(&host.to_ascii_lowercase()) else {
        let ip = vetted?;
        return Some((
            host,
            port,
            Pin {
                ip: ip.to_string(),
                port: None,
            },
        ));
    };
    let pin = match target.parse::<std::net::IpAddr>() {
        Ok(ip) => Pin {
            ip: ip.to_string(),
            port: None,
        },
        Err(_) => {
            let sa: std::net::SocketAddr = target.parse().ok()?;
            Pin {
                ip: sa.ip().to_string(),
                port: Some(sa.port()),
            }
        }
    };
    Some((host, port, pin))
}

/// Host and port of `https://`, `http://`, `ssh://` and scp-like URLs.
pub(crate) fn url_host(url: &str) -> Option<(String, u16)> {
    let (rest, default) = if let Some(r) = url.strip_prefix("https://") {
        (r, 443)
    } else if let Some(r) = url.strip_prefix("http://") {
        (r, 80)
    } else if let Some(r) = url.strip_prefix("ssh://") {
        (r, 22)
    } else {
        // user@host:path
        let (before, _) = url.split_once(':')?;
        let host = before.rsplit('@').next()?;
        return Some((host.to_string(), 22));
    };
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            Some((h.to_string(), p.parse().ok()?))
        }
        _ => Some((authority.to_string(), default)),
    }
}

/// Paths of a repo's key material in the gate's key folder.
pub fn key_paths(state_dir: &Path, repo: &str) -> (PathBuf, PathBuf) {
    let dir = state_dir.join("keys");
    (
        dir.join(format!("{repo}.key")),
        dir.join(format!("{repo}.known_hosts")),
    )
}

/// Writes the ssh key (0600, never world-readable even for an instant) and
/// the pinned host key of every ssh repo.
pub fn write_key_files(gate: &GateConfig, secrets: &GateSecrets) -> Result<(), Error> {
    let dir = gate.state_dir.join("keys");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::Io(format!("creating {}: {e}", dir.display())))?;
    for (name, repo) in &gate.repos {
        if repo.auth != Auth::SshKey {
            continue;
        }
        let (key, kh) = key_paths(&gate.state_dir, name);
        if let Some(k) = secrets.ssh_keys.get(name) {
            let mut text = k.expose().to_string();
            // OpenSSH refuses a key file without a final newline.
            if !text.ends_with('\n') {
                text.push('\n');
            }
            write_private(&key, text.as_bytes())?;
        }
        if let Some(line) = secrets.known_hosts.get(name) {
            write_private(&kh, format!("{}\n", line.trim()).as_bytes())?;
        }
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Io(format!("creating {}: {e}", path.display())))?;
    f.write_all(bytes)
        .map_err(|e| Error::Io(format!("writing {}: {e}", path.display())))
}

/// Single-quotes `s` for the shell git runs `GIT_SSH_COMMAND` with.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The environment (beyond [`base_env`]) for a git child that talks to the
/// repo's upstream: fetch, ls-remote, push. `vetted` is the address the
/// SSRF guard checked for the upstream's name, if it had to.
pub fn upstream_env(
    name: &str,
    gate: &GateConfig,
    secrets: &GateSecrets,
    vetted: Option<IpAddr>,
) -> Env {
    let Some(repo) = gate.repos.get(name) else {
        return Vec::new();
    };
    let mut env = config_env(&upstream_config(repo, gate, secrets, vetted));
    if repo.auth == Auth::SshKey {
        let (key, kh) = key_paths(&gate.state_dir, name);
        let cmd = format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} \
             -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes \
             -o BatchMode=yes -o ConnectTimeout=20",
            sh_quote(&key.to_string_lossy()),
            sh_quote(&kh.to_string_lossy())
        );
        let cmd = match pinned(&repo.url, gate, vetted) {
            // The host key is still checked under the name the user wrote.
            Some((host, _, pin)) => format!(
                "{cmd} -o HostName={} -o HostKeyAlias={}{}",
                sh_quote(&pin.ip),
                sh_quote(&host),
                pin.port.map(|p| format!(" -p {p}")).unwrap_or_default()
            ),
            None => cmd,
        };
        env.push(("GIT_SSH_COMMAND".into(), Secret::new(cmd)));
        env.push(("GIT_SSH_VARIANT".into(), Secret::new("ssh")));
    } else {
        // No ssh at all for non-ssh repos.
        env.push(("GIT_SSH_COMMAND".into(), Secret::new("false")));
    }
    env
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::from_sidecar_json;

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://git.x/a.git"), Some(("git.x".into(), 443)));
        assert_eq!(
            url_host("http://u:p@git.x:8080/a"),
            Some(("git.x".into(), 8080))
        );
        assert_eq!(
            url_host("ssh://git@git.x:2222/a"),
            Some(("git.x".into(), 2222))
        );
        assert_eq!(
            url_host("git@github.com:acme/app.git"),
            Some(("github.com".into(), 22))
        );
    }

    #[test]
    fn pinned_upstreams_are_reached_at_the_pinned_address() {
        let doc = r#"{"gate": {"repos": {
            "app": {"url": "https://git.world.test/git/app.git", "auth": "token", "token_ref": "T"},
            "lib": {"url": "git@git.world.test:lib.git", "auth": "ssh-key"}},
            "resolve": {"git.world.test": "203.0.113.2:2222"}},
            "secrets": {"tokens": {"T": "t"}, "ssh_keys": {"lib": "k"}, "known_hosts": {"lib": "git.world.test ssh-ed25519 AAAA"}}}"#;
        let (g, s) = from_sidecar_json(doc).unwrap();
        let env = upstream_env("app", &g, &s, None);
        assert!(
            env.iter()
                .any(|(_, v)| v.expose() == "git.world.test:443:203.0.113.2"),
            "https pin as curl --resolve"
        );
        let env = upstream_env("lib", &g, &s, None);
        let ssh = env
            .iter()
            .find(|(k, _)| k == "GIT_SSH_COMMAND")
            .map(|(_, v)| v.expose().to_string())
            .unwrap();
        assert!(
            ssh.ends_with("-o HostName='203.0.113.2' -o HostKeyAlias='git.world.test' -p 2222"),
            "{ssh}"
        );
    }

    #[test]
    fn a_vetted_address_pins_git_to_it_and_a_resolve_pin_wins() {
        let doc = r#"{"gate": {"repos": {
            "app": {"url": "https://git.example/app.git", "auth": "token", "token_ref": "T"},
            "lib": {"url": "ssh://git@git.example:2200/lib.git", "auth": "ssh-key"},
            "own": {"url": "https://own.example/o.git", "auth": "token", "token_ref": "T"}},
            "resolve": {"own.example": "198.51.100.9"}},
            "secrets": {"tokens": {"T": "t"}, "ssh_keys": {"lib": "k"}, "known_hosts": {"lib": "git.example ssh-ed25519 AAAA"}}}"#;
        let (g, s) = from_sidecar_json(doc).unwrap();
        let vetted = Some("203.0.113.7".parse().unwrap());
        let has = |env: &Env, want: &str| env.iter().any(|(_, v)| v.expose() == want);
        assert!(has(
            &upstream_env("app", &g, &s, vetted),
            "git.example:443:203.0.113.7"
        ));
        let ssh = upstream_env("lib", &g, &s, vetted)
            .into_iter()
            .find(|(k, _)| k == "GIT_SSH_COMMAND")
            .map(|(_, v)| v.expose().to_string())
            .unwrap();
        assert!(
            ssh.ends_with("-o HostName='203.0.113.7' -o HostKeyAlias='git.example'"),
            "{ssh}"
        );
        let own = upstream_env("own", &g, &s, vetted);
        assert!(has(&own, "own.example:443:198.51.100.9"));
        assert!(!own.iter().any(|(_, v)| v.expose().contains("203.0.113.7")));
    }

    #[test]
    fn token_goes_into_a_header_in_env_only() {
        let (g, s) = from_sidecar_json(
            r#"{"gate": {"repos": {"app": {"url": "https://h/app.git", "auth": "token",
                "token_ref": "T"}}}, "secrets": {"tokens": {"T": "tok-123456789"}}}"#,
        )
        .unwrap();
        let env = upstream_env("app", &g, &s, None);
        let header = env
            .iter()
            .find(|(_, v)| v.expose().starts_with("Authorization: Basic "))
            .unwrap();
        let b64 = header
            .1
            .expose()
            .trim_start_matches("Authorization: Basic ");
        let decoded = bottle_dlp::base64_decode(b64.as_bytes());
        assert_eq!(decoded, b"x-access-token:tok-123456789");
        let key = &header.0;
        let idx = key.trim_start_matches("GIT_CONFIG_VALUE_");
        assert!(
            env.iter()
                .any(|(k, v)| k == &format!("GIT_CONFIG_KEY_{idx}")
                    && v.expose() == "http.https://h/app.git.extraHeader")
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
