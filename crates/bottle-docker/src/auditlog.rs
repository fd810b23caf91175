//! The sidecar's audit log: its stdout through the engine's logs API. The
//! sidecar writes one JSON object per decision there (`sidecar.md`, "Audit
//! events"); everything else on stdout (the `ready …` line) is dropped, and
//! stderr is never read.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::query_parameters::{LogsOptionsBuilder, StopContainerOptions};
use futures_util::StreamExt;

use crate::engine::{Engine, EngineError, api};
use crate::labels;

/// Longest audit line kept; a longer one is dropped whole, never cut.
pub const MAX_LINE: usize = 1024 * 1024;
/// Longest wait for the next piece of the sidecar's log when reading it
/// once (not `--follow`): an engine that stops answering. Not a deadline
/// for the whole read, which would cut off the newest events, those an
/// agent that filled the log would most want lost; a full log (512 MiB)
/// read in 11 s here (`docker logs`, measured 2026-11-29).
pub const FETCH_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for the whole read, far above what a full log takes, so a
/// teardown still ends if the engine trickles.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(600);
/// Seconds the sidecar gets to finish writing before it is killed.
pub const STOP_GRACE_SECS: i32 = 5;

/// The sidecar container of `slug` (running or not), if any. `extra_label`
/// (`KEY=VALUE`) narrows the search, as tests do with their run label.
pub async fn sidecar(
    engine: &Engine,
    slug: &str,
    extra_label: Option<&str>,
) -> Result<Option<String>, EngineError> {
    let mut wanted = vec![
        format!("{}={slug}", labels::SLUG),
        format!("{}=sidecar", labels::ROLE),
    ];
    wanted.extend(extra_label.map(str::to_string));
    let found = engine.labelled_containers(wanted).await?;
    Ok(found.into_iter().find_map(|c| c.id))
}

/// Stop the sidecar gracefully, so every decision it made is in its log
/// before the log is read. Already stopped is fine.
pub async fn stop(engine: &Engine, id: &str) -> Result<(), EngineError> {
    match engine
        .docker
        .stop_container(
            id,
            Some(StopContainerOptions {
                t: Some(STOP_GRACE_SECS),
                signal: None,
            }),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().contains("304") => Ok(()),
        Err(e) => Err(EngineError::Api {
            what: "stop sidecar",
            reason: e.to_string(),
        }),
    }
}

/// Hand each audit line (a JSON object, without its newline) of the
/// sidecar's stdout to `sink`, which returns false to stop early. With
/// `follow` this runs until the sidecar stops; without, until the log
/// read so far ends (under [`FETCH_IDLE_TIMEOUT`] and [`FETCH_TIMEOUT`]).
/// Returns how many lines were handed over.
pub async fn stream(
    engine: &Engine,
    id: &str,
    follow: bool,
    sink: &mut (dyn FnMut(&str) -> bool + Send),
) -> Result<u64, EngineError> {
    let options = LogsOptionsBuilder::new()
        .follow(follow)
        .stdout(true)
        .stderr(false)
        .build();
    let mut logs = engine.docker.logs(id, Some(options));
    let mut lines = Lines::default();
    let mut count = 0u64;
    let mut batch: Vec<String> = Vec::new();
    let read = async {
        let mut done = false;
        while !done {
            let next = if follow {
                logs.next().await
            } else {
                tokio::time::timeout(FETCH_IDLE_TIMEOUT, logs.next())
                    .await
                    .map_err(|_| EngineError::Timeout(FETCH_IDLE_TIMEOUT))?
            };
            match next {
                Some(item) => match item.map_err(api("read the sidecar's log"))? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        lines.push(&message, &mut |l| batch.push(l.to_string()));
                    }
                    LogOutput::StdErr { .. } | LogOutput::StdIn { .. } => {}
                },
                None => {
                    lines.finish(&mut |l| batch.push(l.to_string()));
                    done = true;
                }
            }
            for l in batch.drain(..) {
                if let Some(event) = event_line(&l) {
                    count += 1;
                    if !sink(&event) {
                        return Ok(());
                    }
                }
            }
        }
        Ok::<(), EngineError>(())
    };
    if follow {
        read.await?;
    } else {
        tokio::time::timeout(FETCH_TIMEOUT, read)
            .await
            .map_err(|_| EngineError::Timeout(FETCH_TIMEOUT))??;
    }
    Ok(count)
}

/// An audit line without the raw tabs and line breaks JSON allows between
/// its tokens (a raw `\r` there would redraw the line on a terminal that
/// shows the saved log or `logs --format json`). In a valid document they
/// can be nowhere else (strings hold them escaped), and no two tokens need
/// them to stay apart, so the object and its field order are unchanged.
/// `None` for a line that is not an event.
pub fn event_line(line: &str) -> Option<String> {
    is_event(line).then(|| line.trim().replace(['\r', '\t', '\n'], ""))
}

/// An audit line: one JSON object.
pub fn is_event(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('{') && serde_json::from_str::<serde_json::Value>(t).is_ok_and(|v| v.is_object())
}

/// Joins log frames into lines. The engine may split a long line over
/// several frames; a line over [`MAX_LINE`] is dropped.
#[derive(Debug, Default)]
pub struct Lines {
    buf: Vec<u8>,
    /// The current line passed [`MAX_LINE`]: skip to its end.
    skipping: bool,
}

impl Lines {
    pub fn push(&mut self, bytes: &[u8], out: &mut dyn FnMut(&str)) {
        let mut rest = bytes;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(i);
            if !self.skipping && self.buf.len() + head.len() <= MAX_LINE {
                self.buf.extend_from_slice(head);
                emit(&self.buf, out);
            }
            self.buf.clear();
            self.skipping = false;
            rest = &tail[1..];
        }
        if self.skipping {
            return;
        }
        if self.buf.len() + rest.len() > MAX_LINE {
            self.buf.clear();
            self.skipping = true;
        } else {
            self.buf.extend_from_slice(rest);
        }
    }

    /// The last line, when the log did not end with a newline.
    pub fn finish(&mut self, out: &mut dyn FnMut(&str)) {
        if !self.skipping && !self.buf.is_empty() {
            emit(&self.buf, out);
        }
        self.buf.clear();
        self.skipping = false;
    }
}

fn emit(line: &[u8], out: &mut dyn FnMut(&str)) {
    let text = String::from_utf8_lossy(line);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    out(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(frames: &[&[u8]]) -> Vec<String> {
        let mut l = Lines::default();
        let mut got = Vec::new();
        for f in frames {
            l.push(f, &mut |s| got.push(s.to_string()));
        }
        l.finish(&mut |s| got.push(s.to_string()));
        got
    }

    #[test]
    fn event_lines_are_written_anew() {
        let forged = "{\"decision\":\"block\",\r\"decision\":\"allow\",\t\"kind\":\"http\"}";
        let line = event_line(forged).unwrap();
        assert!(!line.contains(['\r', '\t']), "{line}");
        assert_eq!(
            line,
            r#"{"decision":"block","decision":"allow","kind":"http"}"#
        );
        let spaced = "{\"a\": 1 ,\n\"b\":\"x\\ty\"}";
        assert_eq!(event_line(spaced).unwrap(), "{\"a\": 1 ,\"b\":\"x\\ty\"}");
        assert_eq!(event_line("ready proxy 0.0.0.0:3128"), None);
        assert_eq!(event_line("[1]"), None);
    }

    #[test]
    fn frames_become_lines() {
        assert_eq!(
            collect(&[b"ready proxy 0.0.0.0:3128\n{\"a\":", b"1}\n{\"b\":2}"]),
            ["ready proxy 0.0.0.0:3128", "{\"a\":1}", "{\"b\":2}"]
        );
        assert_eq!(collect(&[b"x\r\n", b"\n"]), ["x", ""]);
    }

    #[test]
    fn an_overlong_line_is_dropped_whole() {
        let long = vec![b'x'; MAX_LINE + 1];
        assert_eq!(collect(&[&long[..10], &long[10..], b"\nok\n"]), ["ok"]);
        assert_eq!(collect(&[&long, b"tail"]), Vec::<String>::new());
    }

    #[test]
    fn only_json_objects_are_events() {
        assert!(is_event(r#"{"kind":"http","decision":"block"}"#));
        assert!(!is_event("ready proxy 0.0.0.0:3128"));
        assert!(!is_event("[1,2]"));
        assert!(!is_event("{not json"));
    }
}
