//! `stop SLUG|--all`: tear a bottle down (save the outbox and audit log,
//! print the summary, remove it); meant for bottles started with `--keep`.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::Result;
use bottle_docker::Engine;

use crate::report::{EngineFailure, UsageError};
use crate::settings::Settings;

use super::finish::{self, Known};

pub fn run(settings: &Settings, slug: Option<String>, all: bool) -> Result<ExitCode> {
    if let Some(s) = &slug {
        super::logs::check_slug(s)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let engine = Engine::connect().await?;
        let wanted = if all { None } else { slug.as_deref() };
        let objects = finish::objects(&engine, wanted).await.map_err(|e| {
            EngineFailure::new(
                format!("cannot list labelled objects: {e}"),
                Some(crate::report::ENGINE_RETRY_HINT.into()),
            )
        })?;
        let slugs: BTreeSet<String> = objects.into_iter().map(|o| o.slug).collect();
        if slugs.is_empty() {
            if all {
                stderrln!("no bottle is running");
                return Ok(ExitCode::SUCCESS);
            }
            return Err(UsageError::new(format!(
                "no bottle `{}` is running",
                slug.unwrap_or_default()
            ))
            .with_hint("`claude-bottle list running` shows the running bottles")
            .into());
        }
        let mut failures = Vec::new();
        let mut interrupts = super::launch::Interrupts::new()?;
        for s in &slugs {
            stderrln!("stopping bottle `{s}`");
            let done =
                finish::finish(settings, &engine, s, Known::default(), &mut interrupts).await;
            if done.is_clean() {
                stderrln!("bottle `{s}` is stopped and removed");
            }
            failures.extend(done.failures.into_iter().map(|f| format!("`{s}`: {f}")));
            // A signal while this bottle was torn down (its save stopped,
            // or later) ends `stop` once this bottle is removed.
            let signalled = done
                .signalled
                .or_else(|| interrupts.pending().map(|(code, _)| code));
            if let Some(code) = signalled {
                if !failures.is_empty() {
                    stderrln!(
                        "warning: stop did not finish cleanly:\n  {}",
                        failures.join("\n  ")
                    );
                }
                if slugs.len() > 1 {
                    stderrln!("stopped by a signal: the other bottles keep running");
                }
                return Ok(code);
            }
        }
        if !failures.is_empty() {
            return Err(EngineFailure::new(
                format!("stop did not finish cleanly:\n  {}", failures.join("\n  ")),
                Some("`claude-bottle cleanup --all` removes what was left behind".into()),
            )
            .into());
        }
        Ok(ExitCode::SUCCESS)
    })
}
