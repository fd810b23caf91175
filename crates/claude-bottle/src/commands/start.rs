//! `start AGENT`: plan, preflight, confirm, then launch (`launch.rs`).

use std::process::ExitCode;

use anyhow::Result;
use bottle_manifest::bottle::EnvValue;
use bottle_plan::Options;

use crate::cli::{Format, StartArgs};
use crate::env;
use crate::output;
use crate::report::{EngineFailure, UsageError};
use crate::settings::Settings;
use crate::terminal;

use super::launch::Question;
use super::plan;

pub fn run(settings: &Settings, args: StartArgs) -> Result<ExitCode> {
    if args.format == Format::Json && !args.dry_run {
        return Err(UsageError::new("`--format json` goes with `--dry-run`")
            .with_hint("add `--dry-run` to print the plan JSON")
            .into());
    }
    let timeout = match &args.timeout {
        None => None,
        Some(t) => Some(crate::duration::parse(t).map_err(|e| {
            UsageError::new(format!("`--timeout`: {e}"))
                .with_hint("give a duration such as 90s, 30m, 2h or 1h30m")
        })?),
    };
    let loaded = plan::load(settings, &args.agent, args.bottle.as_deref())?;
    // One runtime and one engine connection for the plan's questions and
    // the launch.
    let rt = super::launch::runtime()?;
    let connected = rt.block_on(bottle_docker::Engine::connect());
    let engine = rt.block_on(plan::engine_facts(&connected));
    let opts = Options {
        copy_cwd: args.copy_cwd,
        keep: args.keep,
        forward_oauth_token: args.forward_oauth_token,
        image: env::var(env::IMAGE),
        derived_image: env::var(env::DERIVED_IMAGE),
        container: env::var(env::CONTAINER),
    };
    let engine_note = engine.as_ref().err().cloned();
    let mut resolved = plan::resolve(settings, &loaded, engine.ok(), &opts)?;
    // Listed once, here, before `Launch? [y/N]`: what would be copied that
    // looks like a secret, and a folder too large to copy, are said up
    // front; the launch copies this listing.
    let workspace = if args.copy_cwd {
        let ws = bottle_docker::derived::prepare(&settings.cwd, &settings.user_home)
            .map_err(|e| UsageError::new(e.to_string()).with_hint(e.hint()))?;
        // The bottle's own credentials, found by value: a token file or
        // deploy key inside the folder would reach the agent's image.
        let values: Vec<&[u8]> = resolved
            .secrets
            .tokens
            .values()
            .chain(resolved.secrets.ssh_keys.values())
            .map(|s| s.expose().trim().as_bytes())
            .collect();
        let holding = ws.holding(&values);
        if !holding.is_empty() {
            return Err(UsageError::new(format!(
                "`--copy-cwd` would copy the bottle's own credentials into the agent's image: {}",
                holding.join(", ")
            ))
            .with_hint(
                "only the sidecar may hold them: move the token or key file out of this folder, or start from another folder",
            )
            .into());
        }
        if !ws.secret_looking.is_empty() {
            resolved.plan.warnings.push(format!(
                "`--copy-cwd` copies files that look like secrets into the bottle: {}",
                ws.secret_looking.join(", ")
            ));
        }
        Some(ws)
    } else {
        None
    };
    let plan = &resolved.plan;

    if args.format == Format::Json {
        let json = serde_json::to_string_pretty(plan)?;
        output::stdout(&format!("{}\n", output::json_document(&json)))?;
        return Ok(ExitCode::SUCCESS);
    }
    stderr!("{}", bottle_plan::preflight::render(plan));
    if args.dry_run {
        if let Some(note) = engine_note {
            stderrln!("note: {note}");
        }
        stderrln!("\ndry run: nothing was created");
        return Ok(ExitCode::SUCCESS);
    }
    // Bad usage is said first: it stays wrong whatever the engine does.
    if !terminal::stdin_is_terminal() {
        if !args.yes {
            // Both at once when both are missing: `--yes` alone would meet
            // the next refusal.
            let hint = match args.prompt {
                Some(_) => "pass `--yes` to launch without asking, or `--dry-run` to only look",
                None => {
                    "pass `--yes --prompt TEXT` to run the agent once without asking (an \
                     interactive session needs a terminal), or `--dry-run` to only look"
                }
            };
            return Err(UsageError::new("no terminal to confirm the launch on")
                .with_hint(hint)
                .into());
        }
        if !plan.env.prompted.is_empty() {
            return Err(UsageError::new(format!(
                "`{}` is asked at launch, and stdin is not a terminal to ask on",
                plan.env.prompted.join("`, `")
            ))
            .with_hint(
                "set the value in the bottle from the host environment with `NAME: ${VAR}`, \
                 or run from a terminal",
            )
            .into());
        }
        // After the questions: a `?` value is named whatever the mode.
        if args.prompt.is_none() {
            return Err(UsageError::new(
                "without `--prompt` the agent runs interactively, and stdin is not a terminal",
            )
            .with_hint("run from a terminal, or run the agent once with `--prompt TEXT`")
            .into());
        }
    }
    // An engine that was not reached cannot launch anything: fail now, with
    // its own error (exit 3), rather than ask `Launch?` and fail after.
    let connected = match (connected, engine_note) {
        (Err(e), _) => return Err(e.into()),
        (Ok(_), Some(note)) => {
            return Err(EngineFailure::new(
                format!("the container engine answered but could not be asked: {note}"),
                Some("run `claude-bottle doctor` to check the engine".into()),
            )
            .into());
        }
        (Ok(engine), None) => Ok(engine),
    };
    if !args.yes && !confirm()? {
        stderrln!("nothing was created");
        return Ok(ExitCode::SUCCESS);
    }
    let questions = questions(&loaded.bottle, &plan.env.prompted);
    super::launch::run(
        settings,
        &rt,
        connected,
        super::launch::Run {
            resolved: &resolved,
            prompt_text: &loaded.agent.prompt,
            agent_prompt: args.prompt,
            keep: args.keep,
            questions,
            timeout,
            workspace,
        },
    )
}

/// The question for each `?` value: its own text (`?Text`) or the name,
/// always with the name, and a note that the answer is hidden.
fn questions(bottle: &bottle_manifest::MergedBottle, names: &[String]) -> Vec<Question> {
    names
        .iter()
        .map(|name| {
            let own = bottle.env.get(name).and_then(|e| match &e.value {
                EnvValue::Prompt(Some(q)) => Some(q.trim()),
                _ => None,
            });
            let text = match own {
                Some(q) => format!("{q} ({name}, hidden): "),
                None => format!("{name} (hidden): "),
            };
            Question {
                name: name.clone(),
                text,
            }
        })
        .collect()
}

/// `Launch? [y/N]` on the terminal (the caller has checked there is one).
fn confirm() -> Result<bool> {
    use std::io::{BufRead, Write};
    stderr!("\nLaunch? [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
