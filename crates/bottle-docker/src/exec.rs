//! Running a process in a bottle's container through the engine's exec API:
//! optional bytes on stdin (how files reach a tmpfs, and how secrets stay
//! off command lines), output collected or streamed, exit code returned;
//! or interactively with a TTY ([`run_tty`]: keystrokes and window sizes
//! in, raw output out).

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::engine::{Engine, EngineError, api};

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
    /// The command itself reads exactly the bytes of `stdin` and no more
    /// (the agent helper), so it is not run behind `head -c`, which the
    /// image may not have.
    pub reads_exact_stdin: bool,
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
    mut exec: Exec,
    sink: &mut (dyn FnMut(Chunk<'_>) + Send),
) -> Result<i64, EngineError> {
    let stdin = exec.stdin.take();
    if let Some(bytes) = stdin.as_ref().filter(|_| !exec.reads_exact_stdin) {
        exec.cmd = exact_stdin(bytes.len(), std::mem::take(&mut exec.cmd));
    }
    let (id, started) = start(engine, container, exec, stdin.is_some(), false).await?;
    if let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    {
        let writer = async move {
            if let Some(bytes) = stdin {
                let _ = input.write_all(&bytes).await;
            }
            // Closing stdin is what tells `cat` (and the agent) it is done.
            let _ = input.shutdown().await;
        };
        let reader = async {
            while let Some(item) = output.next().await {
                match item.map_err(api("read exec output"))? {
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
    exit_code(engine, &id).await
}

/// `cmd` fed through `head -c LEN`: it sees the end of its input after
/// exactly `len` bytes, inside the container. Closing the exec's stdin from
/// here is not enough: under load the engine can lose that close when it
/// comes while the exec is still being set up (containerd's CloseIO race),
/// and `cat > file` then waits forever; seen with 16 bottles starting at
/// once. The pipeline's status is `cmd`'s.
fn exact_stdin(len: usize, cmd: Vec<String>) -> Vec<String> {
    let mut out = vec![
        "sh".to_string(),
        "-c".to_string(),
        r#"head -c "$0" | "$@""#.to_string(),
        len.to_string(),
    ];
    out.extend(cmd);
    out
}

/// Create and start an exec, attached to its output (and its stdin when
/// `stdin` or `tty`); returns its id and the attached streams.
async fn start(
    engine: &Engine,
    container: &str,
    exec: Exec,
    stdin: bool,
    tty: bool,
) -> Result<(String, StartExecResults), EngineError> {
    let d = &engine.docker;
    let created = d
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdin: Some(stdin || tty),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(tty),
                env: Some(exec.env),
                cmd: Some(exec.cmd),
                user: exec.user,
                working_dir: exec.workdir,
                ..Default::default()
            },
        )
        .await
        .map_err(api("create exec"))?;
    let started = d
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty,
                output_capacity: None,
            }),
        )
        .await
        .map_err(api("start exec"))?;
    Ok((created.id, started))
}

/// What the local side sends to an interactive exec.
#[derive(Debug)]
pub enum TtyInput {
    /// Bytes typed on the local terminal, passed on unchanged.
    Bytes(Vec<u8>),
    /// The local terminal's new size, in characters.
    Resize { rows: u16, cols: u16 },
}

/// How many times, and how far apart, the exit code of an exec whose output
/// has ended is asked for before giving up: the engine may record the exit
/// a moment after it closes the stream.
const EXIT_POLLS: u32 = 100;
const EXIT_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// Run `exec` with a TTY, interactively: `input` carries keystrokes and
/// window sizes (the first size is applied as soon as the exec has
/// started), every byte of output goes to `output`, and the exit code comes
/// back once the process ends. When `input` closes, the exec's stdin is
/// closed and its output is still read to the end. `exec.stdin` is unused.
pub async fn run_tty(
    engine: &Engine,
    container: &str,
    exec: Exec,
    size: Option<(u16, u16)>,
    mut input: tokio::sync::mpsc::Receiver<TtyInput>,
    output: &mut (dyn FnMut(&[u8]) + Send),
) -> Result<i64, EngineError> {
    let d = &engine.docker;
    let (id, started) = start(engine, container, exec, true, true).await?;
    let resize = |rows: u16, cols: u16| {
        d.resize_exec(
            &id,
            bollard::exec::ResizeExecOptions {
                height: rows,
                width: cols,
            },
        )
    };
    if let Some((rows, cols)) = size {
        // A refused resize leaves an 80x24 session, not a broken one.
        let _ = resize(rows, cols).await;
    }
    if let StartExecResults::Attached {
        output: mut stream,
        input: mut stdin,
    } = started
    {
        let writer = async {
            while let Some(event) = input.recv().await {
                match event {
                    TtyInput::Bytes(mut bytes) => {
                        let sent = stdin.write_all(&bytes).await;
                        // Keystrokes may be a password typed to the agent.
                        bytes.fill(0);
                        if sent.is_err() || stdin.flush().await.is_err() {
                            break;
                        }
                    }
                    TtyInput::Resize { rows, cols } => {
                        let _ = resize(rows, cols).await;
                    }
                }
            }
            let _ = stdin.shutdown().await;
        };
        let reader = async {
            while let Some(item) = stream.next().await {
                match item.map_err(api("read exec output"))? {
                    LogOutput::StdOut { message }
                    | LogOutput::Console { message }
                    | LogOutput::StdErr { message } => output(&message),
                    LogOutput::StdIn { .. } => {}
                }
            }
            Ok::<(), EngineError>(())
        };
        tokio::pin!(reader);
        tokio::select! {
            read = &mut reader => read?,
            () = writer => (&mut reader).await?,
        }
    }
    exit_code(engine, &id).await
}

/// The exit code of a finished exec, waiting briefly for the engine to
/// record it.
async fn exit_code(engine: &Engine, id: &str) -> Result<i64, EngineError> {
    for _ in 0..EXIT_POLLS {
        let inspected = engine
            .docker
            .inspect_exec(id)
            .await
            .map_err(api("inspect exec"))?;
        if inspected.running != Some(true)
            && let Some(code) = inspected.exit_code
        {
            return Ok(code);
        }
        tokio::time::sleep(EXIT_POLL_INTERVAL).await;
    }
    Err(EngineError::Api {
        what: "inspect exec",
        reason: format!(
            "the session ended but the engine reported no exit code within {:?}",
            EXIT_POLL_INTERVAL * EXIT_POLLS
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_is_cut_at_its_length_inside_the_container() {
        let cmd = exact_stdin(12, vec!["sh".into(), "-c".into(), "cat > \"$1\"".into()]);
        assert_eq!(
            cmd,
            [
                "sh",
                "-c",
                r#"head -c "$0" | "$@""#,
                "12",
                "sh",
                "-c",
                "cat > \"$1\""
            ]
        );
        // The real shell agrees, with stdin left open (no EOF ever comes):
        // only the first 12 bytes reach the command, and it ends.
        use std::io::Write;
        let mut child = std::process::Command::new(&cmd[0])
            .args(&cmd[1..4])
            .args(["wc", "-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        let mut held_open = child.stdin.take().expect("stdin");
        held_open.write_all(b"0123456789abcdef").expect("write");
        let out = child.wait_with_output().expect("wait");
        drop(held_open);
        let out = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(out, "12");
    }
}
