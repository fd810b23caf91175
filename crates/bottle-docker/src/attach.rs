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

/// One agent session, and how to end it. The engine's exec API cannot
/// signal an exec's process, so the session runs behind `sh`, which writes
/// its process id to a file in the agent's run folder and then `exec`s the
/// agent's command in place (same process, same id). Ending the session
/// signals every process of its session (its children too). The agent can
/// rewrite the file, but the signals are sent as the agent user: at worst
/// it names another of its own processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pid_file: String,
}

/// What signalling a session found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signalled {
    /// The signal was sent.
    Sent,
    /// No process to signal: it had ended, or never wrote its id.
    Gone,
}

/// How a session was ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It had already ended.
    Already,
    /// It ended on SIGTERM within the grace period.
    Terminated,
    /// It was still there after the grace period: SIGKILL was sent.
    Killed,
}

/// Signal `$1` to every live process of the session whose leader's id is
/// in file `$0`; exit 3 when there is none. The file is the agent's to
/// change: only a regular file is read (a FIFO or a link to `/dev/zero`
/// would block the read), and every line of a `stat` file is joined before
/// the fields after the last `) ` are taken, since a process name may hold
/// `) ` and line breaks. An exec's process leads its own
/// session (runc makes it so, with a TTY or without), so this reaches what
/// the agent started in other process groups too (a shell's jobs); where a
/// runtime does not, the process alone. Zombies do not count: they have
/// ended, and only wait for the container's init to reap them. Shell
/// built-ins only: the image may have no `cat`, `kill` or `pkill`.
const END_SCRIPT: &str = r#"[ -f "$0" ] || exit 3
read -r p 2>/dev/null < "$0" || exit 3
case "$p" in ''|*[!0-9]*) exit 3;; esac
s=$1 hit=
stat() {
  l=
  while IFS= read -r x || [ -n "$x" ]; do l="$l $x"; done 2>/dev/null < "$1"
  [ -n "$l" ]
}
for f in /proc/[0-9]*/stat; do
  stat "$f" || continue
  set -- ${l##*) }
  if [ "$4" = "$p" ] && [ "$1" != Z ]; then
    q=${f%/stat}
    kill -s "$s" "${q#/proc/}" 2>/dev/null && hit=1
  fi
done
[ -n "$hit" ] && exit 0
stat "/proc/$p/stat" || exit 3
set -- ${l##*) }
[ "$1" != Z ] && kill -s "$s" "$p" 2>/dev/null || exit 3"#;

/// Prints the env file `$1`, a regular file only: the agent owns it and
/// a FIFO would never end.
const READ_ENV_SCRIPT: &str = r#"[ -f "$1" ] || { echo "not a regular file" >&2; exit 1; }
while IFS= read -r l || [ -n "$l" ]; do printf '%s\n' "$l"; done < "$1""#;

/// The longest one signalling exec (or the env file's read) may take.
const SIGNAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How often a session that was sent SIGTERM is checked for.
const END_POLL: std::time::Duration = std::time::Duration::from_millis(200);

impl Session {
    /// A session with a pid file of its own (several sessions, from `start`
    /// and from `attach`, can run in one bottle).
    pub fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Session {
            pid_file: format!("{RUN_DIR}/session-{}-{nanos:x}-{n}.pid", std::process::id()),
        }
    }

    /// The exec of this session: `cmd` as the agent user (uid 1000) in
    /// `/workspace`, with the bottle's env as the exec's own `Env` (never
    /// the container's, never sourced by a shell).
    pub fn exec(&self, cmd: Vec<String>, env: &BTreeMap<String, Secret>) -> exec::Exec {
        let mut wrapped = vec![
            "sh".to_string(),
            "-c".to_string(),
            r#"echo $$ > "$0" && exec "$@""#.to_string(),
            self.pid_file.clone(),
        ];
        wrapped.extend(cmd);
        agent_exec(wrapped, env)
    }

    /// End the session: SIGTERM, then SIGKILL when it is still there after
    /// `grace` (a process that ignores SIGTERM cannot outlive its session).
    pub async fn end(
        &self,
        engine: &Engine,
        container: &str,
        grace: std::time::Duration,
    ) -> Result<Ended, EngineError> {
        if self.signal(engine, container, "TERM").await? == Signalled::Gone {
            return Ok(Ended::Already);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(END_POLL).await;
            if self.signal(engine, container, "0").await? == Signalled::Gone {
                return Ok(Ended::Terminated);
            }
        }
        Ok(match self.signal(engine, container, "KILL").await? {
            Signalled::Sent => Ended::Killed,
            Signalled::Gone => Ended::Terminated,
        })
    }

    /// Send `signal` (`TERM`, `KILL`, or `0` to check it is there) to the
    /// session's processes, as the agent user ([`END_SCRIPT`]).
    pub async fn signal(
        &self,
        engine: &Engine,
        container: &str,
        signal: &str,
    ) -> Result<Signalled, EngineError> {
        // `$0` is the pid file, `$1` the signal. Bounded: the agent shares
        // the container, and a signal that cannot be sent in time is an
        // error the caller reports, never a CLI that waits for ever.
        let run = agent_shell(
            engine,
            container,
            END_SCRIPT,
            [self.pid_file.clone(), signal.to_string()],
        );
        let out = tokio::time::timeout(SIGNAL_TIMEOUT, run)
            .await
            .map_err(|_| EngineError::Api {
                what: "end the agent's session",
                reason: format!("`kill -s {signal}` took more than {SIGNAL_TIMEOUT:?}"),
            })??;
        match out.code {
            0 => Ok(Signalled::Sent),
            3 => Ok(Signalled::Gone),
            code => Err(EngineError::Api {
                what: "end the agent's session",
                reason: format!(
                    "`kill -s {signal}` exited {code}: {}",
                    out.stderr_text().trim()
                ),
            }),
        }
    }
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

/// The exec of `cmd` as the agent user (uid 1000) in `/workspace`, with
/// the bottle's env as the exec's own `Env`.
fn agent_exec(cmd: Vec<String>, env: &BTreeMap<String, Secret>) -> exec::Exec {
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

/// Run `script` with `sh -c` as the agent user, `args` as its `$0`, `$1`,
/// ...: for small jobs done with shell built-ins only, since the image may
/// have no `cat`, `kill` or `pkill`.
async fn agent_shell(
    engine: &Engine,
    container: &str,
    script: &str,
    args: [String; 2],
) -> Result<exec::Output, EngineError> {
    let mut cmd = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    cmd.extend(args);
    exec::run(
        engine,
        container,
        exec::Exec {
            cmd,
            user: Some("1000".into()),
            ..Default::default()
        },
    )
    .await
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
    // Shell built-ins only: the image may have no `cat`. The agent owns
    // the file and could make it a FIFO that never ends: only a regular
    // file is read, and the read is bounded in time.
    let run = agent_shell(
        engine,
        container,
        READ_ENV_SCRIPT,
        ["sh".to_string(), path.clone()],
    );
    let out = tokio::time::timeout(SIGNAL_TIMEOUT, run)
        .await
        .map_err(|_| EngineError::Api {
            what: "read the bottle's env file",
            reason: format!("`{path}` took more than {SIGNAL_TIMEOUT:?} to read"),
        })??;
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

    /// The wrapper and the end script, run by the real shell on this host
    /// as the engine runs them (the exec's process leads its session): the
    /// whole session is signalled, a `sleep` in the background included,
    /// and a session that ignores SIGTERM is still there until SIGKILL.
    /// The env file is the agent's: a FIFO in its place is refused at once
    /// instead of hanging `attach`; a regular file is printed whole.
    #[test]
    fn the_env_file_is_read_only_when_it_is_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let read = |path: &std::path::Path| {
            std::process::Command::new("timeout")
                .args(["5", "sh", "-c", READ_ENV_SCRIPT, "sh"])
                .arg(path)
                .output()
                .expect("sh runs")
        };
        let file = dir.path().join("env");
        std::fs::write(&file, "A=1\nB=two words").unwrap();
        let out = read(&file);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "A=1\nB=two words\n");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let out = read(&fifo);
        assert_eq!(out.status.code(), Some(1), "not 124: it did not hang");
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
    }

    #[test]
    fn ending_a_session_reaches_every_process_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let session = Session {
            pid_file: dir.path().join("s.pid").display().to_string(),
        };
        let exec = session.exec(
            words(&["sh", "-c", "trap '' TERM; sleep 301 & sleep 302"]),
            &BTreeMap::new(),
        );
        let mut child = std::process::Command::new("setsid")
            .args(&exec.cmd)
            .spawn()
            .expect("setsid runs");
        let signal = |sig: &str| {
            std::process::Command::new("sh")
                .args(["-c", END_SCRIPT, &session.pid_file, sig])
                .status()
                .expect("sh runs")
                .code()
        };
        let pid = (0..100)
            .find_map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                std::fs::read_to_string(&session.pid_file)
                    .ok()
                    .filter(|p| p.ends_with('\n'))
            })
            .expect("the wrapper writes its pid");
        assert_eq!(pid.trim(), child.id().to_string(), "exec keeps the pid");
        let in_session = || {
            let out = std::process::Command::new("ps")
                .args(["-o", "stat=,args=", "-s", pid.trim()])
                .output()
                .expect("ps runs");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.starts_with('Z'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(signal("0"), Some(0));
        assert_eq!(in_session().len(), 3, "{:?}", in_session());
        assert_eq!(signal("TERM"), Some(0));
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(signal("0"), Some(0), "TERM is ignored");
        assert_eq!(in_session().len(), 3, "{:?}", in_session());
        assert_eq!(signal("KILL"), Some(0));
        child.wait().expect("reaped");
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(
            in_session(),
            Vec::<String>::new(),
            "the background sleep too"
        );
        assert_eq!(signal("0"), Some(3), "nothing left");
        // No pid file, or a hostile one: nothing is signalled, and nothing
        // blocks (a FIFO would hold the read until someone writes to it).
        std::fs::write(&session.pid_file, "1 -1\n").unwrap();
        assert_eq!(signal("0"), Some(3));
        std::fs::remove_file(&session.pid_file).unwrap();
        assert_eq!(signal("0"), Some(3));
        let made = std::process::Command::new("mkfifo")
            .arg(&session.pid_file)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        assert_eq!(signal("0"), Some(3));
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
