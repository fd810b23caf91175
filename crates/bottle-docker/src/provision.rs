//! Provisioning, after start and before attach, in the order of
//! `docker.md`: CA, env file, prompt, skills, Claude Code's config, git
//! identity and `insteadOf` rules. The renderers here are pure; `install`
//! writes their output through exec stdin.

use std::collections::BTreeMap;

use bottle_plan::Plan;
use bottle_secret::Secret;

use crate::agent::RUN_DIR;
use crate::engine::{Engine, EngineError};
use crate::exec;

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

/// A git config value in double quotes, with `\` and `"` escaped.
fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The files the agent user gets.
pub struct Files {
    pub ca_pem: Option<String>,
    pub env: Secret,
    pub prompt: String,
    /// The skills archive (see [`crate::skills::archive`]).
    pub skills: Option<Vec<u8>>,
}

/// Write the bottle's files into the agent container; returns the agent
/// user's name and home. The steps of `docker.md`'s template touch
/// different files, so they run at once rather than one exec round trip
/// after another: the CA (then the bundle and the system store), the env
/// file, the prompt, and once the user's home is known, skills, Claude
/// Code's config and git's.
pub async fn install(
    engine: &Engine,
    container: &str,
    plan: &Plan,
    files: Files,
) -> Result<(String, String), EngineError> {
    let Files {
        ca_pem,
        env,
        prompt,
        skills,
    } = files;
    let home_files = async {
        let (user, home) = crate::agent::user(engine, container).await?;
        let skills = async {
            match skills {
                Some(tar) => crate::skills::copy_in(engine, container, &home, tar).await,
                None => Ok(()),
            }
        };
        let claude_path = format!("{home}/.claude.json");
        let claude = exec::write_file(
            engine,
            container,
            "1000",
            &claude_path,
            0o600,
            claude_json("/workspace").into_bytes(),
        );
        let git = async {
            let gc = gitconfig(plan);
            if gc.is_empty() {
                return Ok(());
            }
            exec::write_file(
                engine,
                container,
                "1000",
                &format!("{home}/.gitconfig"),
                0o644,
                gc.into_bytes(),
            )
            .await
        };
        tokio::try_join!(skills, claude, git)?;
        Ok::<_, EngineError>((user, home))
    };
    let ca = async {
        match &ca_pem {
            Some(ca) => install_ca(engine, container, ca).await,
            None => Ok(()),
        }
    };
    let (env_path, prompt_path) = (format!("{RUN_DIR}/env"), format!("{RUN_DIR}/prompt.md"));
    let env = exec::write_file(
        engine,
        container,
        "1000",
        &env_path,
        0o600,
        env.expose().as_bytes().to_vec(),
    );
    let prompt = exec::write_file(
        engine,
        container,
        "1000",
        &prompt_path,
        0o600,
        prompt.into_bytes(),
    );
    let (user_home, (), (), ()) = tokio::try_join!(home_files, ca, env, prompt)?;
    Ok(user_home)
}

/// The bottle CA as `ca.pem`, in a bundle with the system roots (what the
/// CA variables point at), and in the system store.
async fn install_ca(engine: &Engine, container: &str, ca: &str) -> Result<(), EngineError> {
    exec::write_file(
        engine,
        container,
        "1000",
        &format!("{RUN_DIR}/ca.pem"),
        0o644,
        ca.as_bytes().to_vec(),
    )
    .await?;
    // The bundle: the system roots plus ours, built by the agent user
    // (root has no capabilities here and cannot enter the agent's 0700
    // tmpfs).
    let bundle = async {
        let script = format!(
            "set -e; cat /etc/ssl/certs/ca-certificates.crt {RUN_DIR}/ca.pem > {RUN_DIR}/ca-bundle.pem 2>/dev/null \
             || cp {RUN_DIR}/ca.pem {RUN_DIR}/ca-bundle.pem; chmod 0644 {RUN_DIR}/ca-bundle.pem"
        );
        let out = exec::run(
            engine,
            container,
            exec::Exec {
                cmd: vec!["sh".into(), "-c".into(), script],
                user: Some("1000".into()),
                ..Default::default()
            },
        )
        .await?;
        if out.code != 0 {
            return Err(EngineError::Api {
                what: "install the CA",
                reason: out.stderr_text(),
            });
        }
        Ok(())
    };
    // And the system store, for programs that read only that; the
    // certificate comes on stdin.
    let store = async {
        let script = "f=/etc/ssl/certs/ca-certificates.crt; if [ -w \"$f\" ]; then cat >> \"$f\"; else cat > /dev/null; fi";
        let out = exec::run(
            engine,
            container,
            exec::Exec {
                cmd: vec!["sh".into(), "-c".into(), script.into()],
                user: Some("0".into()),
                stdin: Some(ca.as_bytes().to_vec()),
                ..Default::default()
            },
        )
        .await?;
        if out.code != 0 {
            return Err(EngineError::Api {
                what: "add the CA to the system store",
                reason: out.stderr_text(),
            });
        }
        Ok(())
    };
    tokio::try_join!(bundle, store)?;
    Ok(())
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
    fn quoting() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
