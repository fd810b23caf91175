//! Running a process in a bottle's container through the engine's exec API:
//! optional bytes on stdin (how files reach a tmpfs, and how secrets stay
//! off command lines), output collected or streamed, exit code returned.

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::engine::{Engine, EngineError};

/// Most output kept from a collected exec; the rest is dropped.
pub const MAX_COLLECTED: usize = 4 * 1024 * 1024;

/// What to run.
#[derive(Default)]
pub struct Exec {
    pub cmd: Vec<String>,
    /// `NAME=VALUE`; may hold secrets: the exec's `Env` is not shown by
    /// `docker inspect` of the container.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub stdin: Option<Vec<u8>>,
}

impl std::fmt::Debug for Exec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exec")
            .field("cmd", &self.cmd)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
pub struct Output {
    pub code: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

fn api(what: &'static str, e: bollard::errors::Error) -> EngineError {
    EngineError::Api {
        what,
        reason: e.to_string(),
    }
}

/// Run to completion, collecting output (bounded) and the exit code.
pub async fn run(engine: &Engine, container: &str, exec: Exec) -> Result<Output, EngineError> {
    let mut out = Output::default();
    let code = run_with(engine, container, exec, &mut |chunk| match chunk {
        Chunk::Stdout(b) if out.stdout.len() < MAX_COLLECTED => out.stdout.extend_from_slice(b),
        Chunk::Stderr(b) if out.stderr.len() < MAX_COLLECTED => out.stderr.extend_from_slice(b),
        _ => {}
    })
    .await?;
    out.code = code;
    Ok(out)
}

pub enum Chunk<'a> {
    Stdout(&'a [u8]),
    Stderr(&'a [u8]),
}

/// Run to completion, handing each piece of output to `sink` as it comes.
pub async fn run_with(
    engine: &Engine,
    container: &str,
    exec: Exec,
    sink: &mut (dyn FnMut(Chunk<'_>) + Send),
) -> Result<i64, EngineError> {
    let d = &engine.docker;
    let created = d
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdin: Some(exec.stdin.is_some()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(false),
                env: Some(exec.env),
                cmd: Some(exec.cmd),
                user: exec.user,
                working_dir: exec.workdir,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| api("create exec", e))?;
    let started = d
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: None,
            }),
        )
        .await
        .map_err(|e| api("start exec", e))?;
    if let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    {
        let writer = async move {
            if let Some(bytes) = exec.stdin {
                let _ = input.write_all(&bytes).await;
            }
            // Closing stdin is what tells `cat` (and the agent) it is done.
            let _ = input.shutdown().await;
        };
        let reader = async {
            while let Some(item) = output.next().await {
                match item.map_err(|e| api("read exec output", e))? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        sink(Chunk::Stdout(&message))
                    }
                    LogOutput::StdErr { message } => sink(Chunk::Stderr(&message)),
                    LogOutput::StdIn { .. } => {}
                }
            }
            Ok::<(), EngineError>(())
        };
        let ((), read) = tokio::join!(writer, reader);
        read?;
    }
    let inspected = d
        .inspect_exec(&created.id)
        .await
        .map_err(|e| api("inspect exec", e))?;
    Ok(inspected.exit_code.unwrap_or(-1))
}

/// Write `bytes` to `path` in the container as `user`, with `mode`, through
/// stdin: never on a command line, and it works on tmpfs mounts where the
/// engine's copy API does not.
pub async fn write_file(
    engine: &Engine,
    container: &str,
    user: &str,
    path: &str,
    mode: u32,
    bytes: Vec<u8>,
) -> Result<(), EngineError> {
    let script = r#"set -e; umask 077; dir=$(dirname "$1"); mkdir -p "$dir"; cat > "$1.tmp"; chmod "$2" "$1.tmp"; mv -f "$1.tmp" "$1""#;
    let out = run(
        engine,
        container,
        Exec {
            cmd: vec![
                "sh".into(),
                "-c".into(),
                script.into(),
                "sh".into(),
                path.into(),
                format!("{mode:o}"),
            ],
            user: Some(user.into()),
            stdin: Some(bytes),
            ..Default::default()
        },
    )
    .await?;
    if out.code != 0 {
        return Err(EngineError::Api {
            what: "write file",
            reason: format!("`{path}`: {}", out.stderr_text().trim()),
        });
    }
    Ok(())
}
