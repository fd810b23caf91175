//! `cleanup [-y] [--all]`: remove what dead CLI processes left behind.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Result;
use bottle_docker::teardown::{self, Object};

use crate::report::{EngineFailure, UsageError};
use crate::settings::Settings;

pub fn run(settings: &Settings, yes: bool, all: bool) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let engine = bottle_docker::Engine::connect()
            .await?;
        let objects = super::finish::objects(&engine, None)
            .await
            .map_err(|e| {
                EngineFailure::new(
                    format!("cannot list labelled objects: {e}"),
                    Some(crate::report::ENGINE_RETRY_HINT.into()),
                )
            })?;
        let (orphans, kept) = orphans(objects, all);
        let states = orphan_states(settings, &orphans, all);
        if orphans.is_empty() && states.is_empty() {
            stderrln!("nothing to clean up");
            if kept > 0 {
                stderrln!("{kept} object(s) of bottles started with `--keep` left alone; `--all` removes them");
            }
            return Ok(ExitCode::SUCCESS);
        }
        for o in &orphans {
            stderrln!("  {:<9} {:<48} bottle {}", o.kind, o.name, o.slug);
        }
        for s in &states {
            stderrln!("  state     {}", s.display());
        }
        // A kept bottle's agent still holds its work: cleanup removes it
        // without the save `stop` makes. Said before the question.
        let unsaved: std::collections::BTreeSet<&str> = orphans
            .iter()
            .filter(|o| o.keep && o.kind == "container" && o.role == "agent")
            .map(|o| o.slug.as_str())
            .collect();
        for slug in &unsaved {
            stderrln!(
                "warning: bottle `{slug}` was started with `--keep`; its workspace and audit log are not saved by cleanup (`claude-bottle stop {slug}` saves them first)"
            );
        }
        if !yes && !confirm("Remove these?")? {
            stderrln!("nothing removed");
            return Ok(ExitCode::SUCCESS);
        }
        let failures = teardown::remove(&engine, &orphans).await;
        for s in &states {
            // Again, just before: the list was made before the question, and
            // a `start` may have taken a dead slug's folder since.
            if let Some(holder) = crate::state::live_holder(s) {
                stderrln!("note: `{}` is in use again ({holder}); kept", s.display());
                continue;
            }
            if let Err(e) = std::fs::remove_dir_all(s) {
                stderrln!("warning: cannot remove `{}`: {e}", s.display());
            }
        }
        if !failures.is_empty() {
            return Err(EngineFailure::new(
                format!("some objects could not be removed:\n  {}", failures.join("\n  ")),
                Some("run `claude-bottle cleanup` again, or remove them with `docker rm -f`".into()),
            )
            .into());
        }
        stderrln!("removed {} object(s)", orphans.len() + states.len());
        Ok(ExitCode::SUCCESS)
    })
}

/// Objects of slugs with no live owner (and not kept, unless `all`).
fn orphans(objects: Vec<Object>, all: bool) -> (Vec<Object>, usize) {
    let mut by_slug: BTreeMap<String, Vec<Object>> = BTreeMap::new();
    for o in objects {
        by_slug.entry(o.slug.clone()).or_default().push(o);
    }
    let mut out = Vec::new();
    let mut kept = 0;
    for (_, group) in by_slug {
        let alive = group
            .iter()
            .any(|o| !o.owner.is_empty() && bottle_docker::owner::is_alive(&o.owner));
        let keep = group.iter().any(|o| o.keep);
        if alive {
            continue;
        }
        if keep && !all {
            kept += group.len();
            continue;
        }
        out.extend(group);
    }
    (out, kept)
}

/// State folders whose owner file names a dead process (unless the bottle
/// was started with `--keep`: `stop` needs its folder), or that belong to a
/// slug being cleaned.
fn orphan_states(settings: &Settings, orphans: &[Object], all: bool) -> Vec<std::path::PathBuf> {
    let Ok(dir) = std::fs::read_dir(settings.bottle_home.join("state")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let path = entry.path();
        let slug = entry.file_name().to_string_lossy().to_string();
        // As `start` judges a folder it may take: a live owner, or a
        // folder so young its owner is still being written, is in use.
        let in_use = crate::state::live_holder(&path).is_some();
        let kept = !all && path.join("keep").exists();
        let of_orphans = orphans.iter().any(|o| o.slug == slug);
        if path.is_dir() && !in_use && (!kept || of_orphans) {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Ask on the terminal; without one, refuse and say to pass `-y`.
fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(UsageError::new("no terminal to confirm on")
            .with_hint("pass `-y` to remove without asking")
            .into());
    }
    stderr!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
