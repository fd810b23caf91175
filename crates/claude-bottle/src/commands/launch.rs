//! `start` past the preflight: images, launch, run the agent once with
//! `--prompt`, and tear down (`finish`: save, summary, remove) on every
//! exit path (normal, error, Ctrl-C, SIGTERM, SIGHUP).

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use bottle_docker::image::{self, ImageKind, ImageState};
use bottle_docker::{Engine, exec, labels, launch, teardown};
use bottle_plan::Resolved;
use tokio::signal::unix::{SignalKind, signal};

use crate::progress::Progress;
use crate::report::{EngineFailure, UsageError};
use crate::settings::Settings;

pub struct Run<'a> {
    pub resolved: &'a Resolved,
    pub prompt_text: &'a str,
    pub agent_prompt: Option<String>,
    pub keep: bool,
}

fn engine_failure(e: bottle_docker::EngineError) -> anyhow::Error {
    let hint = e.hint().to_string();
    EngineFailure::new(e.to_string(), Some(hint)).into()
}

pub fn run(settings: &Settings, run: Run<'_>) -> Result<ExitCode> {
    let plan = &run.resolved.plan;
    if !plan.env.prompted.is_empty() {
        return Err(UsageError::new(format!(
            "`{}` is asked at launch, and asking is not implemented yet in this version",
            plan.env.prompted.join("`, `")
        ))
        .with_hint("set the value in the bottle with `${VAR}` for now")
        .into());
    }
    let Some(agent_prompt) = run.agent_prompt else {
        return Err(UsageError::new(
            "interactive sessions are not implemented yet in this version",
        )
        .with_hint("run the agent once with `--prompt TEXT`")
        .into());
    };
    let env_file = bottle_docker::provision::env_file(&run.resolved.secrets.env)
        .map_err(|e| UsageError::new(e.to_string()))?;
    let skills = bottle_docker::skills::archive(
        &settings.user_home.join(".claude").join("skills"),
        &plan.agent.skills,
    )
    .map_err(|e| UsageError::new(e.to_string()).with_hint(e.hint()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let engine = Engine::connect().await.map_err(engine_failure)?;
        warn_about_leftovers(&engine).await;
        ensure_images(settings, &engine, plan).await?;
        let owner = bottle_docker::owner::current();
        crate::state::create(settings, &plan.slug, &owner)?;
        let mut base = HashMap::from([
            (labels::SLUG.to_string(), plan.slug.clone()),
            (labels::AGENT.to_string(), plan.agent.name.clone()),
            (labels::OWNER.to_string(), owner),
            (labels::KEEP.to_string(), run.keep.to_string()),
            (labels::VERSION.to_string(), settings.version.to_string()),
        ]);
        if let Some(t) = crate::env::var(crate::env::TEST_LABEL) {
            base.insert("io.claude-bottle.test".into(), t);
        }
        let mut interrupts = Interrupts::new()?;
        // The workspace's git refs once launched: what the outbox compares with.
        let mut start_refs = None;
        let work = async {
            if let Some(tag) = &plan.derived_image {
                copy_cwd(settings, &engine, plan, tag, &base).await?;
            }
            let progress = Progress::start("launching the bottle");
            let mut on = |step: &str| progress.detail(step);
            let launched = launch::launch(
                &engine,
                plan,
                &run.resolved.secrets,
                launch::Inputs {
                    env: env_file,
                    prompt: run.prompt_text.to_string(),
                    skills,
                },
                &base,
                &mut on,
            )
            .await
            .map_err(engine_failure)?;
            start_refs = super::finish::record_start(
                settings,
                &engine,
                &plan.slug,
                &plan.bottle.name,
                &launched.agent_id,
                run.keep,
            )
            .await;
            progress.finish(&format!("bottle `{}` is up", plan.slug));
            run_agent(
                &engine,
                &launched.agent_id,
                plan,
                &agent_prompt,
                &run.resolved.secrets,
            )
            .await
        };
        let outcome = tokio::select! {
            r = work => r,
            code = interrupts.next() => Ok(code),
        };
        if !(run.keep && outcome.is_ok()) {
            let known = super::finish::Known {
                bottle: Some(plan.bottle.name.clone()),
                start_refs,
            };
            super::finish::finish(settings, &engine, &plan.slug, known)
                .await
                .warn();
        } else {
            eprintln!(
                "the bottle `{}` keeps running; `claude-bottle stop {}` ends it",
                plan.slug, plan.slug
            );
        }
        outcome
    })
}

/// `--copy-cwd`: the current folder into a derived image, labelled as the
/// bottle's so teardown removes it.
async fn copy_cwd(
    settings: &Settings,
    engine: &Engine,
    plan: &bottle_plan::Plan,
    tag: &str,
    base: &HashMap<String, String>,
) -> Result<()> {
    let cwd = settings.cwd.clone();
    let ctx = tokio::task::spawn_blocking(move || bottle_docker::derived::context(&cwd))
        .await?
        .map_err(|e| UsageError::new(e.to_string()).with_hint(e.hint()))?;
    eprintln!(
        "copying {} file(s), {:.1} MB, from `{}` into /workspace",
        ctx.files,
        ctx.bytes as f64 / 1e6,
        settings.cwd.display()
    );
    if !ctx.secret_looking.is_empty() {
        eprintln!(
            "warning: these look like secrets and are copied into the bottle: {}",
            ctx.secret_looking.join(", ")
        );
    }
    let progress = Progress::start("building the workspace image");
    bottle_docker::derived::build(
        engine,
        tag,
        &plan.image,
        ctx.tar,
        launch::labels_for(base, "image"),
    )
    .await
    .map_err(engine_failure)?;
    progress.finish(&format!("workspace image `{tag}` built"));
    Ok(())
}

/// Say when dead runs left labelled objects behind (`cleanup` removes
/// them); never fails the start.
async fn warn_about_leftovers(engine: &Engine) {
    let test_label =
        crate::env::var(crate::env::TEST_LABEL).map(|v| format!("io.claude-bottle.test={v}"));
    let Ok(objects) = teardown::find(engine, test_label.as_deref()).await else {
        return;
    };
    let (orphans, _) = super::cleanup::orphans(objects, false);
    let mut slugs: Vec<&str> = orphans.iter().map(|o| o.slug.as_str()).collect();
    slugs.dedup();
    if !slugs.is_empty() {
        eprintln!(
            "warning: {} object(s) left by bottles whose CLI is gone ({}); `claude-bottle cleanup` removes them",
            orphans.len(),
            slugs.join(", ")
        );
    }
}

/// Run the agent once: its command, the system prompt as a file for
/// Claude Code, and TEXT (`-p TEXT` for Claude Code, else a last argument).
async fn run_agent(
    engine: &Engine,
    container: &str,
    plan: &bottle_plan::Plan,
    text: &str,
    secrets: &bottle_plan::Secrets,
) -> Result<ExitCode> {
    let mut cmd = plan.agent.command.clone();
    let is_claude = cmd
        .first()
        .is_some_and(|c| c.rsplit('/').next() == Some("claude"));
    if is_claude {
        cmd.extend([
            "--append-system-prompt-file".into(),
            "/run/claude-bottle/prompt.md".into(),
            "-p".into(),
            text.into(),
        ]);
    } else {
        cmd.push(text.into());
    }
    let env: Vec<String> = secrets
        .env
        .iter()
        .map(|(k, v)| format!("{k}={}", v.expose()))
        .collect();
    let mut sink = |chunk: exec::Chunk<'_>| match chunk {
        exec::Chunk::Stdout(b) => {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(b);
            let _ = o.flush();
        }
        exec::Chunk::Stderr(b) => {
            let _ = std::io::stderr().write_all(b);
        }
    };
    let code = exec::run_with(
        engine,
        container,
        exec::Exec {
            cmd,
            env,
            user: Some("1000".into()),
            workdir: Some("/workspace".into()),
            stdin: None,
        },
        &mut sink,
    )
    .await
    .map_err(engine_failure)?;
    if code != 0 {
        eprintln!("the agent exited with code {code}");
    }
    Ok(ExitCode::from(
        u8::try_from(code.clamp(0, 255)).unwrap_or(1),
    ))
}

/// Build a missing or stale image from this executable before launching.
async fn ensure_images(
    settings: &Settings,
    engine: &Engine,
    plan: &bottle_plan::Plan,
) -> Result<()> {
    let exe = std::env::current_exe()?;
    let sha = image::sha256_file(&exe)?;
    let base = crate::env::var(crate::env::BASE_IMAGE);
    if image::state(engine, &plan.sidecar.image, &sha).await != ImageState::Fresh {
        super::build::build_one(settings, engine, ImageKind::Sidecar, base.clone()).await?;
    }
    let default_agent = ImageKind::Agent.tag(settings.version);
    if plan.image == default_agent
        && image::state(engine, &plan.image, &sha).await == ImageState::Missing
    {
        super::build::build_one(settings, engine, ImageKind::Agent, base).await?;
    }
    Ok(())
}

/// Ctrl-C, SIGTERM and SIGHUP end the run; teardown still happens.
struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn new() -> Result<Self> {
        Ok(Interrupts {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> ExitCode {
        tokio::select! {
            _ = self.int.recv() => { eprintln!("\ninterrupted: tearing down"); ExitCode::from(130) }
            _ = self.term.recv() => { eprintln!("terminated: tearing down"); ExitCode::from(143) }
            _ = self.hup.recv() => { eprintln!("hung up: tearing down"); ExitCode::from(129) }
        }
    }
}
