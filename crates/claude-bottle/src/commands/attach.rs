//! `attach SLUG`, and the interactive session `start` and `attach` share:
//! the agent's command in an exec with a TTY, the local terminal raw, keys
//! and window sizes forwarded, the agent's exit code returned.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

use anyhow::Result;
use bottle_docker::exec::{self, TtyInput};
use bottle_docker::{Engine, attach};
use bottle_secret::Secret;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::launch::{Interrupts, agent_exit, end_session};
use crate::report::{EngineFailure, UsageError};
use crate::terminal::{self, Keys, RawMode};

/// Window sizes and keystrokes queued for the engine.
const INPUT_QUEUE: usize = 64;
/// Longest wait for the terminal's answer when a session ends (over a slow
/// link; a local terminal answers at once).
const SESSION_END_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

pub fn run(slug: &str) -> Result<ExitCode> {
    if !terminal::stdin_is_terminal() {
        return Err(UsageError::new(format!(
            "`attach {slug}` starts an interactive session, and stdin is not a terminal"
        ))
        .with_hint(
            "run it from a terminal; to run the agent once without one, use \
             `claude-bottle start AGENT --prompt TEXT`",
        )
        .into());
    }
    let test_label = crate::env::test_label_filter();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let engine = Engine::connect().await?;
        let Some(agent) = attach::find_agent(&engine, slug, test_label.as_deref()).await? else {
            return Err(unknown_slug(&engine, slug).await);
        };
        if agent.state != "running" {
            return Err(EngineFailure::new(
                format!(
                    "the agent container `{}` of bottle `{slug}` is {}, not running",
                    agent.name, agent.state
                ),
                Some(
                    "`claude-bottle cleanup --all` removes it; start a new bottle with \
                     `claude-bottle start AGENT --keep`"
                        .into(),
                ),
            )
            .into());
        }
        let Some(command) = agent.command else {
            return Err(EngineFailure::new(
                format!(
                    "the agent container `{}` does not say which command it runs \
                     (label `{}`); it was started by an older claude-bottle",
                    agent.name,
                    bottle_docker::labels::COMMAND
                ),
                Some("stop the bottle and start it again with this version".into()),
            )
            .into());
        };
        let env = attach::read_env(&engine, &agent.id).await?;
        let cmd = attach::agent_command(&command, None);
        let mut interrupts = Interrupts::new()?;
        let ours = attach::Session::new();
        tokio::select! {
            code = session(&engine, &agent.id, &ours, cmd, &env) => code,
            (code, what) = interrupts.next_signal() => {
                terminal::restore();
                stderrln!("\n{what}: ending the session; the bottle `{slug}` keeps running");
                // Cut short, the agent is ended, not left running unwatched.
                end_session(&engine, &agent.id, &ours).await;
                Ok(code)
            }
        }
    })
}

/// The error for a slug with no agent container: what runs instead.
async fn unknown_slug(engine: &Engine, slug: &str) -> anyhow::Error {
    let running = bottle_docker::running(engine).await.unwrap_or_default();
    let slugs: Vec<&str> = running.iter().map(|b| b.slug.as_str()).collect();
    let now = if slugs.is_empty() {
        "no bottle is running".to_string()
    } else {
        format!("running now: {}", slugs.join(", "))
    };
    UsageError::new(format!("no running bottle `{slug}` ({now})"))
        .with_hint(
            "`claude-bottle list running` shows the running bottles; \
             `claude-bottle start AGENT --keep` starts one to attach to",
        )
        .into()
}

/// A session that did not reach its end (`--timeout`, a signal: its
/// future was dropped) still stops its stdin reader, which would take the
/// next keys typed, and still resets the terminal; there is no time to
/// drain the answers to the agent's queries.
struct CutShort {
    forward: Option<tokio::task::AbortHandle>,
}

impl Drop for CutShort {
    fn drop(&mut self) {
        if let Some(forward) = self.forward.take() {
            forward.abort();
            if std::io::stdout().is_terminal() {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(terminal::SESSION_RESET);
                let _ = out.flush();
            }
        }
    }
}

/// Run `cmd` interactively in the agent container as the agent user, in
/// `/workspace`, with `env` as the exec's `Env`; the local terminal is raw
/// for as long as it runs. Says on stderr when the agent's code is not 0.
pub(super) async fn session(
    engine: &Engine,
    container: &str,
    ours: &attach::Session,
    cmd: Vec<String>,
    env: &BTreeMap<String, Secret>,
) -> Result<ExitCode> {
    let mut exec = ours.exec(cmd, env);
    // The engine gives a TTY exec `TERM=xterm`; the local terminal's type
    // is better. A bottle that sets `TERM` itself keeps its value.
    if let Some(term) = crate::env::var(crate::env::TERM)
        && !env.contains_key("TERM")
    {
        exec.env.push(format!("TERM={term}"));
    }
    let mut winch = signal(SignalKind::window_change())?;
    let mut keys = Keys::start()?;
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let raw = RawMode::stdin().map_err(|e| {
        UsageError::new(format!("cannot put the terminal in raw mode: {e}"))
            .with_hint("run from an interactive terminal, or use `--prompt TEXT`")
    })?;
    // Keys and window sizes go to the engine until the session ends (this
    // task is aborted) or stdin ends (the exec's stdin is then closed).
    let forward = tokio::spawn(async move {
        loop {
            tokio::select! {
                typed = keys.next() => match typed {
                    Some(bytes) => {
                        if tx.send(TtyInput::Bytes(bytes)).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                _ = winch.recv() => {
                    if let Some((rows, cols)) = terminal::size()
                        && tx.send(TtyInput::Resize { rows, cols }).await.is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    // Dropped before `raw`, so the reset is written while still raw.
    let mut cut_short = CutShort {
        forward: Some(forward.abort_handle()),
    };
    let mut sink = |bytes: &[u8]| {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(bytes);
        let _ = out.flush();
    };
    let code = exec::run_tty(engine, container, exec, terminal::size(), rx, &mut sink).await;
    forward.abort();
    // The stdin reader stops with the task; then nothing else reads the
    // terminal's answers while the session is ended on it.
    let _ = forward.await;
    cut_short.forward = None;
    if std::io::stdout().is_terminal() {
        terminal::reset_after_session(
            &mut std::io::stdout().lock(),
            std::io::stdin().as_fd(),
            SESSION_END_WAIT,
        );
    }
    drop(cut_short);
    drop(raw);
    let code = code?;
    Ok(agent_exit(code))
}
