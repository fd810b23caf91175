//! `logs SLUG [--follow] [--format json]`: a bottle's audit events, from
//! its sidecar while it exists, else from the newest log kept at teardown.

use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;

use anyhow::Result;
use bottle_docker::{Engine, auditlog};

use crate::report::{EngineFailure, UsageError};
use crate::settings::Settings;
use crate::summary::AuditEvent;

use super::finish;

pub struct LogsArgs {
    pub slug: String,
    pub follow: bool,
    pub json: bool,
}

pub fn run(settings: &Settings, args: LogsArgs) -> Result<ExitCode> {
    check_slug(&args.slug)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Ok(None): no sidecar of that slug; then the kept log is read.
    let from_engine = rt.block_on(async {
        let engine = Engine::connect().await?;
        let label = crate::env::test_label_filter();
        let Some(id) = auditlog::sidecar(&engine, &args.slug, label.as_deref()).await? else {
            return Ok(None);
        };
        let mut printer = Printer::new(args.json);
        let streamed = auditlog::stream(&engine, &id, args.follow, &mut |l| printer.line(l)).await;
        let printed = printer.finish();
        Ok::<_, anyhow::Error>(Some(
            printed
                .map_err(anyhow::Error::from)
                .and_then(|()| Ok(streamed.map(|_| ())?)),
        ))
    });
    let engine_error = match from_engine {
        Ok(Some(result)) => return result.map(|()| ExitCode::SUCCESS),
        Ok(None) => None,
        Err(e) => Some(e),
    };
    if let Some(path) = finish::newest_log(settings, &args.slug) {
        if args.follow {
            stderrln!(
                "the bottle `{}` is gone; showing its kept log `{}`",
                args.slug,
                path.display()
            );
        }
        let file = std::fs::File::open(&path)
            .map_err(|e| UsageError::new(format!("cannot read `{}`: {e}", path.display())))?;
        let mut printer = Printer::new(args.json);
        for line in BufReader::new(file).split(b'\n') {
            let line = line?;
            if !printer.line(&String::from_utf8_lossy(&line)) {
                break;
            }
        }
        printer.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(e) = engine_error {
        return Err(EngineFailure::new(
            format!(
                "cannot read the audit log of `{}`: {e}, and no log of it is kept in `{}`",
                args.slug,
                settings.bottle_home.join("logs").display()
            ),
            Some("is Docker running? `claude-bottle doctor` checks".into()),
        )
        .into());
    }
    Err(UsageError::new(format!(
        "no bottle `{}` is running and no log of it is kept in `{}`",
        args.slug,
        settings.bottle_home.join("logs").display()
    ))
    .with_hint("`claude-bottle list running` shows the running bottles")
    .into())
}

/// A slug names files under `$CLAUDE_BOTTLE_HOME`: only plain names.
pub fn check_slug(slug: &str) -> Result<()> {
    if bottle_docker::labels::is_slug(slug) {
        return Ok(());
    }
    Err(UsageError::new(format!("`{slug}` is not a bottle slug"))
        .with_hint("`claude-bottle list running` shows the running bottles and their slugs")
        .into())
}

/// Prints events as text lines or raw JSON; remembers a write error (a
/// closed pipe) and stops.
struct Printer {
    json: bool,
    out: std::io::Stdout,
    error: Option<std::io::Error>,
}

impl Printer {
    fn new(json: bool) -> Self {
        Printer {
            json,
            out: std::io::stdout(),
            error: None,
        }
    }

    /// Returns false once stdout is gone.
    fn line(&mut self, line: &str) -> bool {
        let text = if self.json {
            auditlog::is_event(line).then(|| crate::output::json_document(line.trim()).into_owned())
        } else {
            AuditEvent::parse(line).map(|e| e.line())
        };
        let Some(text) = text else { return true };
        let written = writeln!(self.out, "{text}").and_then(|()| self.out.flush());
        if let Err(e) = written {
            self.error = Some(e);
            return false;
        }
        true
    }

    fn finish(mut self) -> std::io::Result<()> {
        match self.error.take() {
            Some(e) => Err(e),
            None => self.out.flush(),
        }
    }
}
