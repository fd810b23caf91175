//! What a session with the agent needs (`docker.md`, "Attach"): the
//! command to run, and for `attach` to a running bottle, its agent
//! container and the env file provisioning wrote into it.

use std::collections::BTreeMap;

use bottle_secret::Secret;

use crate::agent::RUN_DIR;
use crate::engine::{Engine, EngineError, container_name};
use crate::{exec, labels};

/// Where provisioning puts the system prompt, passed to Claude Code as a
/// file so a long prompt never hits the argument-size limit.
pub const PROMPT_FILE: &str = "/run/claude-bottle/prompt.md";

/// The agent's command for one session: Claude Code (the basename of the
/// first word is `claude`) gets the system prompt file, and with a prompt
/// `-p TEXT`; any other program gets TEXT as one last argument.
pub fn agent_command(command: &[String], prompt: Option<&str>) -> Vec<String> {
    let mut cmd = command.to_vec();
    let is_claude = cmd
        .first()
        .is_some_and(|c| c.rsplit('/').next() == Some("claude"));
    if is_claude {
        cmd.extend(["--append-system-prompt-file".into(), PROMPT_FILE.into()]);
        if let Some(text) = prompt {
            cmd.extend(["-p".into(), text.into()]);
        }
    } else if let Some(text) = prompt {
        cmd.push(text.into());
    }
    cmd
}

/// The exec of an agent session: `cmd` as the agent user (uid 1000) in
/// `/workspace`, with the bottle's env as the exec's own `Env` (never the
/// container's, never sourced by a shell).
pub fn agent_exec(cmd: Vec<String>, env: &BTreeMap<String, Secret>) -> exec::Exec {
    exec::Exec {
        cmd,
        env: env
            .iter()
            .map(|(k, v)| format!("{k}={}", v.expose()))
            .collect(),
        user: Some("1000".into()),
        workdir: Some("/workspace".into()),
        ..Default::default()
    }
}

/// A bottle's agent container, found by its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentContainer {
    pub id: String,
    pub name: String,
    /// The engine's state: `running`, `exited`, …
    pub state: String,
    /// The command stored at launch; `None` when the label is missing or
    /// not a JSON array of strings (a bottle from an older version).
    pub command: Option<Vec<String>>,
}

/// The agent container of bottle `slug`, if there is one; with
/// `extra_label` (`KEY=VALUE`) only one that carries it too.
pub async fn find_agent(
    engine: &Engine,
    slug: &str,
    extra_label: Option<&str>,
) -> Result<Option<AgentContainer>, EngineError> {
    let mut wanted = vec![
        format!("{}={slug}", labels::SLUG),
        format!("{}=agent", labels::ROLE),
    ];
    wanted.extend(extra_label.map(str::to_string));
    let containers = engine.labelled_containers(wanted).await?;
    Ok(containers.into_iter().next().map(|c| {
        let name = container_name(&c);
        let l = c.labels.unwrap_or_default();
        AgentContainer {
            id: c.id.unwrap_or_default(),
            name,
            state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            command: l
                .get(labels::COMMAND)
                .and_then(|j| serde_json::from_str::<Vec<String>>(j).ok())
                .filter(|c| !c.is_empty()),
        }
    }))
}

/// Why the env file could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvFileError {
    /// Never holds the line itself: it may be a secret.
    #[error("line {line} of the env file is not `NAME=VALUE`")]
    BadLine { line: usize },
    #[error("the env file is not UTF-8")]
    NotUtf8,
}

/// Parse the env file provisioning wrote (`NAME=VALUE` lines, the value is
/// everything after the first `=`, verbatim). Empty lines are skipped.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, Secret>, EnvFileError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(EnvFileError::BadLine { line: i + 1 });
        };
        let valid_name = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(EnvFileError::BadLine { line: i + 1 });
        }
        out.insert(name.to_string(), Secret::new(value));
    }
    Ok(out)
}

/// Read `/run/claude-bottle/env` from the agent container as the agent user
/// (it is 0600 and theirs), through an exec whose output only this process
/// sees; never by sourcing it in a shell.
pub async fn read_env(
    engine: &Engine,
    container: &str,
) -> Result<BTreeMap<String, Secret>, EngineError> {
    let path = format!("{RUN_DIR}/env");
    let out = exec::run(
        engine,
        container,
        exec::Exec {
            // Shell built-ins only: the image may have no `cat`.
            cmd: vec![
                "sh".into(),
                "-c".into(),
                r#"while IFS= read -r l || [ -n "$l" ]; do printf '%s\n' "$l"; done < "$1""#.into(),
                "sh".into(),
                path.clone(),
            ],
            user: Some("1000".into()),
            ..Default::default()
        },
    )
    .await?;
    if out.code != 0 {
        return Err(EngineError::Api {
            what: "read the bottle's env file",
            reason: format!("`{path}`: {}", out.stderr_text().trim()),
        });
    }
    let text = String::from_utf8(out.stdout).map_err(|_| EngineError::Api {
        what: "read the bottle's env file",
        reason: format!("`{path}`: {}", EnvFileError::NotUtf8),
    })?;
    let text = Secret::new(text);
    parse_env_file(text.expose()).map_err(|e| EngineError::Api {
        what: "read the bottle's env file",
        reason: format!("`{path}`: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn claude_gets_the_prompt_file_and_p() {
        let cmd = words(&["claude", "--dangerously-skip-permissions"]);
        assert_eq!(
            agent_command(&cmd, None),
            words(&[
                "claude",
                "--dangerously-skip-permissions",
                "--append-system-prompt-file",
                PROMPT_FILE
            ])
        );
        assert_eq!(
            agent_command(&words(&["/usr/local/bin/claude"]), Some("fix it")),
            words(&[
                "/usr/local/bin/claude",
                "--append-system-prompt-file",
                PROMPT_FILE,
                "-p",
                "fix it"
            ])
        );
    }

    #[test]
    fn other_programs_get_text_as_last_argument_only() {
        assert_eq!(
            agent_command(&words(&["sh", "-c"]), Some("echo hi")),
            words(&["sh", "-c", "echo hi"])
        );
        assert_eq!(agent_command(&words(&["bash"]), None), words(&["bash"]));
        // `claude-wrapper` is not Claude Code.
        assert_eq!(
            agent_command(&words(&["claude-wrapper"]), None),
            words(&["claude-wrapper"])
        );
    }

    #[test]
    fn env_file_round_trips() {
        let values = BTreeMap::from([
            ("A".to_string(), Secret::new("x=y=z")),
            ("EMPTY".to_string(), Secret::new("")),
            (
                "SPACED".to_string(),
                Secret::new("  padded # not a comment "),
            ),
        ]);
        let file = crate::provision::env_file(&values).unwrap();
        let back = parse_env_file(file.expose()).unwrap();
        assert_eq!(
            back.iter()
                .map(|(k, v)| (k.as_str(), v.expose()))
                .collect::<Vec<_>>(),
            values
                .iter()
                .map(|(k, v)| (k.as_str(), v.expose()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn bad_env_lines_are_named_by_number_not_content() {
        let err = parse_env_file("A=1\nsecret-without-name\n").unwrap_err();
        assert_eq!(err, EnvFileError::BadLine { line: 2 });
        assert!(!err.to_string().contains("secret"));
        assert_eq!(
            parse_env_file("=value\n").unwrap_err(),
            EnvFileError::BadLine { line: 1 }
        );
        assert_eq!(
            parse_env_file("1X=v\n").unwrap_err(),
            EnvFileError::BadLine { line: 1 }
        );
        assert!(parse_env_file("").unwrap().is_empty());
    }
}
