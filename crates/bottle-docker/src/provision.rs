//! Provisioning, after start and before attach, in the order of
//! `docker.md`: CA, env file, prompt, skills, Claude Code's config, git
//! identity and `insteadOf` rules. The renderers here are pure; `install`
//! writes their output through exec stdin.

use std::collections::BTreeMap;

use bottle_plan::Plan;
use bottle_secret::Secret;

use crate::agent::RUN_DIR;
use crate::engine::{Engine, EngineError};
use crate::outbox::{SNAPSHOT_SCRIPT, StartRefs};
use crate::{exec, helper};

/// Why provisioning refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    #[error("the value of env variable `{0}` holds a line break, which an env file cannot carry")]
    NewlineInValue(String),
}

/// `NAME=VALUE` lines, one per variable; a value with a newline is refused
/// with the variable's name (never its value).
pub fn env_file(values: &BTreeMap<String, Secret>) -> Result<Secret, ProvisionError> {
    let mut out = String::new();
    for (name, value) in values {
        if value.expose().contains(['\n', '\r', '\0']) {
            return Err(ProvisionError::NewlineInValue(name.clone()));
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value.expose());
        out.push('\n');
    }
    Ok(Secret::new(out))
}

/// Claude Code's `~/.claude.json` that skips its first-run questions and
/// the trust dialog for the workspace (observed with Claude Code 2.1).
pub fn claude_json(workdir: &str) -> String {
    serde_json::json!({
        "hasCompletedOnboarding": true,
        "bypassPermissionsModeAccepted": true,
        "projects": { workdir: { "hasTrustDialogAccepted": true } },
    })
    .to_string()
}

/// `~/.gitconfig`: the identity, and every declared repo's upstream URL
/// mapped to the gate, so clone/fetch/push of the upstream go there.
pub fn gitconfig(plan: &Plan) -> String {
    let mut out = String::new();
    let user = &plan.git.user;
    if user.name.is_some() || user.email.is_some() {
        out.push_str("[user]\n");
        if let Some(n) = &user.name {
            out.push_str(&format!("\tname = {}\n", quote(n)));
        }
        if let Some(e) = &user.email {
            out.push_str(&format!("\temail = {}\n", quote(e)));
        }
    }
    for r in &plan.git.repos {
        out.push_str(&format!(
            "[url {}]\n\tinsteadOf = {}\n",
            quote(&r.gate_url),
            quote(&r.url)
        ));
    }
    out
}

/// A git config value in double quotes ([`crate::gitconfig::quote`]).
fn quote(v: &str) -> String {
    let mut out = Vec::with_capacity(v.len() + 2);
    crate::gitconfig::quote(v.as_bytes(), &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The files the agent user gets.
pub struct Files {
    pub ca_pem: Option<String>,
    pub env: Secret,
    pub prompt: String,
    /// The skills archive (see [`crate::skills::archive`]).
    pub skills: Option<Vec<u8>>,
}

/// What provisioning found and did.
#[derive(Debug)]
pub struct Installed {
    pub user: String,
    pub home: String,
    /// The workspace's git refs, when asked for (see [`install`]).
    pub start_refs: Option<Result<StartRefs, String>>,
    /// Said to the user: e.g. the image has no system trust store.
    pub warnings: Vec<String>,
    /// Whether the agent user could write `/workspace` before [`install`]
    /// gave it to that user.
    pub workspace_writable: bool,
}

/// Write the bottle's files into the agent container. Each exec is a
/// process started in the container (about 70 ms here, more when several
/// start at once) and each archive call another ~65 ms that the engine
/// serialises with them, so the template of `docker.md` takes as few as it
/// can, at once: one exec as the agent user gets a small tar on stdin with
/// the bottle's own files (for `/run/claude-bottle`, a tmpfs) and the
/// home's config files, finds the user and its home, builds the CA bundle,
/// and with `snapshot` then records the workspace's git refs
/// (`outbox::snapshot`); one exec as root adds the CA to the system store;
/// skills, when there are any, then go through the archive API.
///
/// An image without the tools those scripts use gets the CLI's own
/// executable as a helper ([`crate::helper`]) and the steps that missed a
/// tool run again through it; the snapshot is then left to the caller
/// (`start_refs` is `None`).
pub async fn install(
    engine: &Engine,
    container: &str,
    plan: &Plan,
    files: Files,
    snapshot: bool,
) -> Result<Installed, EngineError> {
    let Files {
        ca_pem,
        env,
        prompt,
        skills,
    } = files;
    let tar = staging_archive(&env, &prompt, ca_pem.as_deref(), &gitconfig(plan))
        .map_err(|e| files_failed(e.to_string()))?;
    let store = async {
        match &ca_pem {
            Some(ca) => add_to_system_store(engine, container, ca, Via::Script).await,
            None => Ok(Step::Done(true)),
        }
    };
    let (installed, stored) = tokio::join!(
        agent_files(engine, container, &tar, snapshot, Via::Script),
        store
    );
    let (installed, stored) = (installed?, stored?);
    if matches!(installed, Step::NeedsHelper) || matches!(stored, Step::NeedsHelper) {
        bring_helper(engine, container).await?;
    }
    let mut installed = match installed {
        Step::Done(i) => i,
        Step::NeedsHelper => {
            match agent_files(engine, container, &tar, false, Via::Helper).await? {
                Step::Done(i) => i,
                Step::NeedsHelper => return Err(files_failed("the helper could not run".into())),
            }
        }
    };
    let stored = match (stored, &ca_pem) {
        (Step::NeedsHelper, Some(ca)) => add_to_system_store(engine, container, ca, Via::Helper)
            .await?
            .done()
            .unwrap_or(false),
        (Step::Done(stored), _) => stored,
        (Step::NeedsHelper, None) => true,
    };
    if !stored {
        installed.warnings.push(format!(
            "the agent image has no writable system trust store (looked for {}): programs that \
             read only that file will not trust the bottle's CA; those that honour \
             SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE or GIT_SSL_CAINFO do",
            helper::SYSTEM_ROOTS.map(|r| format!("`{r}`")).join(", ")
        ));
    }
    // An image without `/workspace` gets one from the engine (the working
    // directory), root's and 0755: the agent could not clone or write in
    // it. Root here has no capability to chown it; the archive API can.
    if !installed.workspace_writable {
        give_workspace_to_agent(engine, container).await?;
    }
    // Skills go to the home the exec found, through the archive API (a
    // tree, possibly large); the engine would not run that call alongside
    // the exec anyway.
    if let Some(tar) = skills {
        crate::skills::copy_in(engine, container, &installed.home, tar).await?;
    }
    Ok(installed)
}

/// Done, or the image lacks a tool the script uses.
enum Step<T> {
    Done(T),
    NeedsHelper,
}

impl<T> Step<T> {
    fn done(self) -> Option<T> {
        match self {
            Step::Done(t) => Some(t),
            Step::NeedsHelper => None,
        }
    }
}

/// A step through its shell script, or through the helper.
#[derive(Clone, Copy)]
enum Via {
    Script,
    Helper,
}

impl Via {
    /// The exec of one step as `user` with `stdin`: `script` through
    /// `sh -c`, or the helper's `OP LEN`, which reads exactly its input
    /// (so no `head -c` in front: the image may not have it).
    fn exec(self, script: String, op: &str, user: &str, stdin: &[u8]) -> exec::Exec {
        let cmd = match self {
            Via::Script => vec!["sh".into(), "-c".into(), script],
            Via::Helper => vec![
                helper::PATH.into(),
                helper::SUBCOMMAND.into(),
                op.into(),
                stdin.len().to_string(),
            ],
        };
        exec::Exec {
            cmd,
            user: Some(user.into()),
            stdin: Some(stdin.to_vec()),
            reads_exact_stdin: matches!(self, Via::Helper),
            ..Default::default()
        }
    }
}

fn files_failed(reason: String) -> EngineError {
    EngineError::Api {
        what: "write the bottle's files",
        reason,
    }
}

/// The agent user's files from the staging archive `tar` (see
/// [`agent_files_script`]); with `snapshot` (scripts only) the workspace's
/// refs too.
async fn agent_files(
    engine: &Engine,
    container: &str,
    tar: &[u8],
    snapshot: bool,
    via: Via,
) -> Result<Step<Installed>, EngineError> {
    let snapshot = snapshot && matches!(via, Via::Script);
    let script = match snapshot {
        true => format!("{}\n{SNAPSHOT_SCRIPT}", agent_files_script()),
        false => agent_files_script(),
    };
    let run = exec::run(engine, container, via.exec(script, "files", "1000", tar));
    let out = tokio::time::timeout(crate::outbox::SNAPSHOT_TIMEOUT, run)
        .await
        .map_err(|_| {
            files_failed(format!(
                "no answer in {} s",
                crate::outbox::SNAPSHOT_TIMEOUT.as_secs()
            ))
        })??;
    match out.code {
        helper::NEEDS_HELPER if matches!(via, Via::Script) => return Ok(Step::NeedsHelper),
        c if c == i64::from(helper::NO_USER) => {
            return Err(EngineError::Api {
                what: "find the agent user",
                reason: "the image has no user with uid 1000 and a home directory".into(),
            });
        }
        c if c == i64::from(helper::FILES_FAILED) => {
            return Err(files_failed(format!(
                "under `{RUN_DIR}`: {}",
                out.stderr_text().trim()
            )));
        }
        c if c == i64::from(helper::IPV6_ON) => {
            return Err(EngineError::Api {
                what: "check the agent's network",
                reason: format!(
                    "the engine left IPv6 on in the agent container ({}); over it the \
                     bridge's host side can answer past the internal network's isolation, \
                     so the bottle is not started (Docker 26.0.0 and 26.0.1 do this, as does \
                     any engine run with DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE; use another \
                     engine version or unset that variable)",
                    out.stderr_text().trim()
                ),
            });
        }
        _ => {}
    }
    let text = out.stdout_text();
    let (passwd, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let (user, home) = crate::agent::passwd_user(passwd, "1000").ok_or_else(|| {
        files_failed(format!(
            "no user line (exit code {}): {}",
            out.code,
            out.stderr_text().trim()
        ))
    })?;
    if matches!(via, Via::Helper) && out.code != 0 {
        return Err(files_failed(out.stderr_text().trim().to_string()));
    }
    let start_refs = snapshot.then(|| match out.code {
        0 => Ok(StartRefs::parse(rest)),
        code => Err(format!("the refs could not be listed (exit code {code})")),
    });
    Ok(Step::Done(Installed {
        user,
        home,
        start_refs,
        warnings: Vec::new(),
        workspace_writable: !out.stderr_text().contains(helper::WORKSPACE_UNWRITABLE),
    }))
}

/// Copy this executable (static, so it runs in any image) into the
/// container at [`helper::PATH`], root's and 0755, through the archive API
/// (the image may have no tool to write it with). `doctor --self-test` runs
/// its probe from there too.
pub async fn bring_helper(engine: &Engine, container: &str) -> Result<(), EngineError> {
    let failed = |reason: String| EngineError::Api {
        what: "copy the helper into the agent",
        reason,
    };
    let exe = std::env::current_exe().map_err(|e| failed(format!("this executable: {e}")))?;
    let unreadable = |e: std::io::Error| failed(format!("`{}`: {e}", exe.display()));
    // Read straight into the archive: one copy of the executable in memory.
    let file = std::fs::File::open(&exe).map_err(unreadable)?;
    let len = file.metadata().map_err(unreadable)?.len();
    let mut h = tar::Header::new_gnu();
    h.set_size(len);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    let capacity = usize::try_from(len).unwrap_or(0).saturating_add(2048);
    let mut b = tar::Builder::new(Vec::with_capacity(capacity));
    b.append_data(&mut h, helper::PATH.trim_start_matches('/'), file)
        .map_err(unreadable)?;
    let archive = b.into_inner().map_err(|e| failed(e.to_string()))?;
    extract_at_root(engine, container, archive, "copy the helper into the agent").await
}

/// Extract `archive` at the container's `/`, with its entries' owners and
/// modes (the engine does it as root, capabilities or not).
async fn extract_at_root(
    engine: &Engine,
    container: &str,
    archive: Vec<u8>,
    what: &'static str,
) -> Result<(), EngineError> {
    engine
        .docker
        .upload_to_container(
            container,
            Some(bollard::query_parameters::UploadToContainerOptions {
                path: "/".into(),
                ..Default::default()
            }),
            bollard::body_full(archive.into()),
        )
        .await
        .map_err(crate::engine::api(what))
}

/// A shell function: status 1, and the interface on stderr, when the
/// `if_inet6` file `$1` lists an address on an interface other than `lo`
/// (the script's [`helper::ipv6_beyond_loopback`]). Builtins only.
const IPV6_CHECK: &str = r#"only_loopback_ipv6() {
  [ -r "$1" ] || return 0
  while read -r a _i _p _s _f n; do
    if [ -n "$a" ] && [ "$n" != lo ]; then printf 'IPv6 on %s\n' "${n:-?}" >&2; return 1; fi
  done < "$1"
  return 0
}"#;

/// Run as the agent user with [`staging_archive`] on stdin: refuses to go
/// on when the agent has IPv6 beyond loopback, prints the user's `passwd`
/// line, puts `run/*` into the run folder and `home/*` into the user's
/// home (with their modes), builds the CA bundle (the system roots, the
/// first of [`helper::SYSTEM_ROOTS`] there is, plus ours), and says when
/// `/workspace` is not the user's to write. Exit 98: no such user; 97: a
/// file could not be written; 96: a tool is missing (see
/// [`crate::helper`]); 94: IPv6. Root has no capabilities here and cannot
/// enter the 0700 tmpfs, hence the agent user.
pub fn agent_files_script() -> String {
    let roots = helper::SYSTEM_ROOTS.join(" ");
    let (needs, ipv6, if_inet6) = (helper::NEEDS_HELPER, helper::IPV6_ON, helper::IF_INET6);
    let unwritable = helper::WORKSPACE_UNWRITABLE;
    format!(
        r#"
for c in head tar mv chmod cat cut rm mkdir cp; do command -v "$c" >/dev/null 2>&1 || exit {needs}; done
command -v getent >/dev/null 2>&1 || command -v grep >/dev/null 2>&1 || exit {needs}
{IPV6_CHECK}
only_loopback_ipv6 {if_inet6} || exit {ipv6}
line=$(getent passwd 1000 2>/dev/null || grep -m1 '^[^:]*:[^:]*:1000:' /etc/passwd) || exit 98
home=$(printf '%s' "$line" | cut -d: -f6)
[ -n "$home" ] && [ -d "$home" ] || exit 98
printf '%s\n' "$line"
(
  set -e; umask 077; cd /run/claude-bottle
  rm -rf .staging; mkdir .staging; tar -xf - -C .staging
  mv -f .staging/run/* .
  chmod 0600 env prompt.md
  if [ -f ca.pem ]; then
    chmod 0644 ca.pem
    roots=; for r in {roots}; do if [ -f "$r" ]; then roots=$r; break; fi; done
    cat "$roots" ca.pem > ca-bundle.pem 2>/dev/null || cp ca.pem ca-bundle.pem
    chmod 0644 ca-bundle.pem
  fi
  # tar as a user applies the umask to the archive's modes: set them again.
  if [ -f .staging/home/.gitconfig ]; then chmod 0644 .staging/home/.gitconfig; fi
  for f in .staging/home/.[!.]*; do if [ -f "$f" ]; then mv -f "$f" "$home/"; fi; done
  rm -rf .staging
) || exit 97
[ -w /workspace ] || printf '%s\n' '{unwritable}' >&2
"#
    )
}

/// The files for [`agent_files_script`]: under `run/`, `env` and
/// `prompt.md` (0600) and `ca.pem` (0644) when a route intercepts; under
/// `home/`, Claude Code's config (`.claude.json`, 0600) and git's
/// (`.gitconfig`, 0644) when there is anything to say.
fn staging_archive(
    env: &Secret,
    prompt: &str,
    ca_pem: Option<&str>,
    git: &str,
) -> std::io::Result<Vec<u8>> {
    let claude = claude_json("/workspace");
    let mut files: Vec<(&str, &[u8], u32)> = vec![
        ("run/env", env.expose().as_bytes(), 0o600),
        ("run/prompt.md", prompt.as_bytes(), 0o600),
        ("home/.claude.json", claude.as_bytes(), 0o600),
    ];
    if let Some(ca) = ca_pem {
        files.push(("run/ca.pem", ca.as_bytes(), 0o644));
    }
    if !git.is_empty() {
        files.push(("home/.gitconfig", git.as_bytes(), 0o644));
    }
    archive(&files)
}

/// A tar of regular files owned by uid/gid 1000 (the agent user).
fn archive(files: &[(&str, &[u8], u32)]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, bytes, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(*mode);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *bytes)?;
    }
    b.into_inner()
}

/// The bottle CA in the system trust store too, for programs that read
/// only that; the certificate comes on stdin.
async fn add_to_system_store(
    engine: &Engine,
    container: &str,
    ca: &str,
    via: Via,
) -> Result<Step<bool>, EngineError> {
    // Replaced by a rename where the folder allows it, so the agent
    // user building its bundle from this file at the same moment reads
    // the old file or the new one, never half a certificate.
    let script = format!(
        "for c in head cat mv; do command -v \"$c\" >/dev/null 2>&1 || exit 96; done; \
        f=; for r in {}; do if [ -f \"$r\" ]; then f=$r; break; fi; done; \
        if [ -h \"$f\" ] && command -v readlink >/dev/null 2>&1; then r=$(readlink -f \"$f\") && f=$r; fi; \
        if [ -n \"$f\" ] && [ -w \"$f\" ] && [ -w \"${{f%/*}}\" ]; then cat \"$f\" - > \"$f.claude-bottle\" && mv -f \"$f.claude-bottle\" \"$f\"; \
        elif [ -n \"$f\" ] && [ -w \"$f\" ]; then cat >> \"$f\"; else cat > /dev/null; exit 95; fi",
        helper::SYSTEM_ROOTS.join(" ")
    );
    let out = exec::run(
        engine,
        container,
        via.exec(script, "add-ca", "0", ca.as_bytes()),
    )
    .await?;
    match out.code {
        0 => Ok(Step::Done(true)),
        c if c == i64::from(helper::NO_STORE) => Ok(Step::Done(false)),
        helper::NEEDS_HELPER if matches!(via, Via::Script) => Ok(Step::NeedsHelper),
        _ => Err(EngineError::Api {
            what: "add the CA to the system store",
            reason: out.stderr_text(),
        }),
    }
}

/// Make `/workspace` the agent user's (uid/gid 1000, 0755) through the
/// archive API: one folder entry, extracted by the engine with its owner.
async fn give_workspace_to_agent(engine: &Engine, container: &str) -> Result<(), EngineError> {
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_entry_type(tar::EntryType::Directory);
    let mut b = tar::Builder::new(Vec::new());
    let archive = b
        .append_data(&mut h, "workspace/", std::io::empty())
        .and_then(|()| b.into_inner())
        .map_err(|e| files_failed(format!("the workspace entry: {e}")))?;
    extract_at_root(
        engine,
        container,
        archive,
        "give /workspace to the agent user",
    )
    .await
}

/// Clone a declared repo into `/workspace/<name>` as the agent user. The
/// upstream URL is used, so `origin` is what the user wrote; the
/// `insteadOf` rule sends it to the gate.
pub async fn clone(
    engine: &Engine,
    container: &str,
    repo: &bottle_plan::plan::RepoPlan,
) -> Result<(), EngineError> {
    let out = exec::run(
        engine,
        container,
        exec::Exec {
            cmd: vec![
                "git".into(),
                "clone".into(),
                "-q".into(),
                "--".into(),
                repo.url.clone(),
                repo.clone_to.clone(),
            ],
            user: Some("1000".into()),
            workdir: Some("/workspace".into()),
            ..Default::default()
        },
    )
    .await?;
    if out.code != 0 {
        return Err(EngineError::Api {
            what: "clone a repo through the gate",
            reason: format!("`{}`: {}", repo.name, out.stderr_text().trim()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, mode, uid, bytes) of every entry.
    fn entries(tar: &[u8]) -> Vec<(String, u32, u64, Vec<u8>)> {
        use std::io::Read;
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut bytes = Vec::new();
                e.read_to_end(&mut bytes).unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    bytes,
                )
            })
            .collect()
    }

    #[test]
    fn the_staging_archive() {
        let env = Secret::new("A=1\n");
        let ca = "-----BEGIN CERTIFICATE-----\n";
        let tar = staging_archive(&env, "Be brief.\n", Some(ca), "[user]\n").unwrap();
        let claude = claude_json("/workspace").into_bytes();
        assert_eq!(
            entries(&tar),
            [
                ("run/env".into(), 0o600, 1000, b"A=1\n".to_vec()),
                ("run/prompt.md".into(), 0o600, 1000, b"Be brief.\n".to_vec()),
                ("home/.claude.json".into(), 0o600, 1000, claude),
                ("run/ca.pem".into(), 0o644, 1000, ca.as_bytes().to_vec()),
                ("home/.gitconfig".into(), 0o644, 1000, b"[user]\n".to_vec()),
            ]
        );
        let tar = staging_archive(&env, "", None, "").unwrap();
        let names: Vec<String> = entries(&tar).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            ["run/env", "run/prompt.md", "home/.claude.json"],
            "no CA without interception, no empty git config"
        );
    }

    #[test]
    fn env_file_refuses_newlines_by_name() {
        let mut v = BTreeMap::new();
        v.insert("A".to_string(), Secret::new("1"));
        v.insert("B".to_string(), Secret::new("x y"));
        assert_eq!(env_file(&v).unwrap().expose(), "A=1\nB=x y\n");
        v.insert("PASS".to_string(), Secret::new("line1\nSECRET=1"));
        let e = env_file(&v).unwrap_err();
        assert_eq!(e, ProvisionError::NewlineInValue("PASS".into()));
        assert!(!e.to_string().contains("line1"));
    }

    #[test]
    fn claude_config_skips_first_run() {
        let v: serde_json::Value = serde_json::from_str(&claude_json("/workspace")).unwrap();
        assert_eq!(v["hasCompletedOnboarding"], true);
        assert_eq!(v["bypassPermissionsModeAccepted"], true);
        assert_eq!(v["projects"]["/workspace"]["hasTrustDialogAccepted"], true);
    }

    #[test]
    fn a_missing_tool_sends_the_step_to_the_helper() {
        // The check comes before anything is read or written.
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(agent_files_script())
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        assert_eq!(out.status.code().map(i64::from), Some(helper::NEEDS_HELPER));
    }

    #[test]
    fn the_scripts_ipv6_check_allows_loopback_only() {
        let d = tempfile::tempdir().unwrap();
        let check = |text: Option<&str>| {
            let f = d.path().join("if_inet6");
            let _ = std::fs::remove_file(&f);
            if let Some(t) = text {
                std::fs::write(&f, t).unwrap();
            }
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("{IPV6_CHECK}\nonly_loopback_ipv6 \"$1\""))
                .arg("sh")
                .arg(&f)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let lo = "00000000000000000000000000000001 01 80 10 80       lo\n";
        let eth0 = "fe80000000000000004242fffeac1202 2a 40 20 80     eth0\n";
        assert_eq!(
            check(None),
            (Some(0), String::new()),
            "no IPv6 in the kernel"
        );
        assert_eq!(check(Some("")), (Some(0), String::new()));
        assert_eq!(check(Some(&format!("{lo}\n"))), (Some(0), String::new()));
        assert_eq!(
            check(Some(&format!("{lo}{eth0}"))),
            (Some(1), "IPv6 on eth0\n".to_string())
        );
        assert_eq!(
            check(Some("garbage\n")),
            (Some(1), "IPv6 on ?\n".to_string())
        );
        // The script runs it, and stops with its own code.
        let script = agent_files_script();
        assert!(script.contains(&format!(
            "only_loopback_ipv6 {} || exit {}",
            helper::IF_INET6,
            helper::IPV6_ON
        )));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
