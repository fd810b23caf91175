//! `start` past the preflight: the `?` env questions, images, launch, the
//! agent once with `--prompt` or an interactive session, and teardown
//! (`finish`: save, summary, remove) on every exit path (normal, error,
//! Ctrl-C, SIGTERM, SIGHUP).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use bottle_docker::attach::Session;
use bottle_docker::image::{self, ImageKind, ImageState};
use bottle_docker::{Engine, exec, labels, launch};
use bottle_plan::Resolved;
use bottle_secret::Secret;
use tokio::signal::unix::{SignalKind, signal};

use crate::progress::Progress;
use crate::report::{EngineFailure, UsageError};
use crate::settings::Settings;

pub struct Run<'a> {
    pub resolved: &'a Resolved,
    pub prompt_text: &'a str,
    /// `--prompt`: run once without a TTY; `None`: an interactive session.
    pub agent_prompt: Option<String>,
    pub keep: bool,
    /// The `?` env values to ask for, in order.
    pub questions: Vec<Question>,
    /// `--timeout`: the agent is ended this long after it starts.
    pub timeout: Option<std::time::Duration>,
    /// `--copy-cwd`: the current folder as listed for the preflight.
    pub workspace: Option<bottle_docker::derived::Workspace>,
}

/// One `?` env value: the variable, and what to show when asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub text: String,
}

/// The runtime `start` plans and launches on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

pub fn run(
    settings: &Settings,
    rt: &tokio::runtime::Runtime,
    engine: Result<Engine, bottle_docker::EngineError>,
    run: Run<'_>,
) -> Result<ExitCode> {
    let mut run = run;
    let mut workspace = run.workspace.take();
    let plan = &run.resolved.plan;
    let skills = bottle_docker::skills::archive(
        &settings.user_home.join(".claude").join("skills"),
        &plan.agent.skills,
    )
    .map_err(|e| UsageError::new(e.to_string()).with_hint(e.hint()))?;
    rt.block_on(async {
        let engine = engine?;
        // From here on SIGINT, SIGTERM and SIGHUP are ours: each wait below
        // races them, and the terminal is restored before anything prints.
        let mut interrupts = Interrupts::new()?;
        let mut env = run.resolved.secrets.env.clone();
        let asked = tokio::select! {
            a = ask(&run.questions) => a?,
            code = interrupts.next_quiet() => {
                stderrln!("nothing was created");
                return Ok(code);
            }
        };
        let Some(asked) = asked else {
            stderrln!("cancelled: nothing was created");
            return Ok(ExitCode::from(130));
        };
        env.extend(asked);
        let env_file =
            bottle_docker::provision::env_file(&env).map_err(|e| UsageError::new(e.to_string()))?;
        tokio::select! {
            built = ensure_images(settings, &engine, plan) => built?,
            code = interrupts.next_quiet() => {
                stderrln!("nothing was launched");
                return Ok(code);
            }
        }
        let (claimed, base) = claim(settings, &engine, plan, run.keep).await?;
        let plan = &claimed;
        // The workspace's git refs once launched: what the outbox compares with.
        let mut start_refs = None;
        // The agent's session while it runs: what `--keep` ends when the
        // run is cut short (the bottle stays, its agent does not).
        let mut running: Option<(String, Session)> = None;
        let work = async {
            if let Some(tag) = &plan.derived_image {
                let ws = workspace
                    .take()
                    .ok_or_else(|| anyhow::anyhow!("`--copy-cwd` without its folder listing"))?;
                copy_cwd(settings, &engine, plan, tag, ws, &base).await?;
            }
            let host = host_addresses(plan);
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
                    host_addresses: host,
                },
                &base,
                &mut on,
            )
            .await?;
            start_refs = super::finish::record_start(
                settings,
                &plan.slug,
                &plan.bottle.name,
                &launched.start_refs,
                run.keep,
            );
            progress.finish(&format!("bottle `{}` is up", plan.slug));
            for w in &launched.warnings {
                stderrln!("warning: {w}");
            }
            let session = Session::new();
            let (id, s) = running.insert((launched.agent_id.clone(), session));
            let agent = async {
                match &run.agent_prompt {
                    Some(text) => run_agent(&engine, id, plan, text, &env, s).await,
                    None => {
                        let cmd = bottle_docker::attach::agent_command(&plan.agent.command, None);
                        super::attach::session(&engine, id, s, cmd, &env).await
                    }
                }
            };
            let done = match run.timeout {
                None => agent.await,
                // Dropping the session restores the terminal, as on Ctrl-C.
                Some(limit) => match tokio::time::timeout(limit, agent).await {
                    Ok(done) => done,
                    Err(_) => {
                        stderrln!(
                            "the agent ran for its `--timeout` of {}: ending it",
                            crate::duration::show(limit)
                        );
                        return Ok(ExitCode::from(TIMED_OUT));
                    }
                },
            };
            running = None;
            done
        };
        let outcome = tokio::select! {
            r = work => r,
            code = interrupts.next() => Ok(code),
        };
        // Cut short (`--timeout`, a signal) with the bottle kept: its
        // agent must not go on running unwatched. Without `--keep`,
        // removing the container below ends it.
        if let Some((id, session)) = running.as_ref().filter(|_| run.keep) {
            end_session(&engine, id, session).await;
        }
        if !(run.keep && outcome.is_ok()) {
            let known = super::finish::Known {
                bottle: Some(plan.bottle.name.clone()),
                start_refs,
            };
            super::finish::finish(settings, &engine, &plan.slug, known, &mut interrupts)
                .await
                .warn();
        } else {
            stderrln!(
                "the bottle `{}` keeps running; `claude-bottle stop {}` ends it",
                plan.slug,
                plan.slug
            );
        }
        outcome
    })
}

/// The addresses of the machine the engine runs on, for the sidecar's SSRF
/// guard (`crate::addresses`); what cannot be covered is a warning, printed
/// here before the progress line takes the terminal.
pub(super) fn host_addresses(plan: &bottle_plan::Plan) -> Vec<std::net::IpAddr> {
    let docker_host = std::env::var("DOCKER_HOST").ok();
    let wildcard = plan.egress.allow.iter().any(|r| r.host.starts_with('*'));
    let found = crate::addresses::for_sidecar(docker_host.as_deref(), wildcard);
    for w in &found.warnings {
        stderrln!("warning: {w}");
    }
    found.addresses
}

/// Claim the bottle's slug (its state folder, with this process as owner)
/// and return the plan under that slug with the labels every object of the
/// bottle carries. When another start of the same agent claimed the slug a
/// moment ago, the next free one is taken, as `cli.md` names them.
pub(super) async fn claim(
    settings: &Settings,
    engine: &Engine,
    plan: &bottle_plan::Plan,
    keep: bool,
) -> Result<(bottle_plan::Plan, HashMap<String, String>)> {
    use bottle_plan::names;
    let owner = bottle_docker::owner::current();
    let mut plan = plan.clone();
    let mut taken = Vec::new();
    loop {
        let why = match crate::state::create(settings, &plan.slug, &owner) {
            Ok(_) => break,
            Err(crate::state::Claim::Failed(e)) => return Err(e),
            Err(crate::state::Claim::Taken(why)) => why,
        };
        // Exit 3 as the plan's own refusals of taken names: the engine's
        // state, not the command line, is in the way.
        let pinned = plan.container != names::agent_container(&plan.slug);
        if pinned || taken.len() as u32 >= names::MAX_SUFFIX {
            let hint = if pinned {
                format!(
                    "`CLAUDE_BOTTLE_CONTAINER` pins the agent's name to `{}`: unset it to let \
                     this start take a name of its own, or start again once the other run is up",
                    plan.container
                )
            } else {
                "start again once the other run is up".to_string()
            };
            let taken = format!("the name `{}` is taken: {why}", plan.slug);
            return Err(EngineFailure::new(taken, Some(hint)).into());
        }
        taken.push(plan.slug.clone());
        let mut facts = super::plan::facts_of(engine).await.map_err(|e| {
            EngineFailure::new(
                format!("cannot list the engine's bottles: {e}"),
                Some(crate::report::ENGINE_RETRY_HINT.into()),
            )
        })?;
        facts.slugs.extend(taken.iter().cloned());
        let next = names::pick_slug(&plan.agent.name, Some(&facts)).ok_or_else(|| {
            EngineFailure::new(
                format!(
                    "every name for `{}` is taken (up to `-{}`)",
                    plan.agent.name,
                    names::MAX_SUFFIX
                ),
                Some("remove old bottles: `claude-bottle cleanup`, or `docker rm -f`".into()),
            )
        })?;
        stderrln!(
            "another start of `{}` took the name `{}` a moment ago: this bottle is `{next}`",
            plan.agent.name,
            plan.slug
        );
        plan = plan.with_slug(&next);
    }
    let mut base = HashMap::from([
        (labels::SLUG.to_string(), plan.slug.clone()),
        (labels::AGENT.to_string(), plan.agent.name.clone()),
        (labels::OWNER.to_string(), owner),
        (labels::KEEP.to_string(), keep.to_string()),
        (labels::VERSION.to_string(), settings.version.to_string()),
    ]);
    base.extend(crate::env::test_label());
    Ok((plan, base))
}

/// `--copy-cwd`: the current folder into a derived image, labelled as the
/// bottle's so teardown removes it.
async fn copy_cwd(
    settings: &Settings,
    engine: &Engine,
    plan: &bottle_plan::Plan,
    tag: &str,
    ws: bottle_docker::derived::Workspace,
    base: &HashMap<String, String>,
) -> Result<()> {
    // Secret-looking files were named in the preflight's warnings.
    stderrln!(
        "copying {} file(s), {:.1} MB, from `{}` into /workspace",
        ws.files,
        ws.bytes as f64 / 1e6,
        settings.cwd.display()
    );
    let progress = Progress::start("building the workspace image");
    bottle_docker::derived::build(
        engine,
        tag,
        &plan.image,
        ws,
        {
            let mut l = launch::labels_for(base, "image");
            l.insert(bottle_docker::labels::NAME.into(), tag.to_string());
            l
        },
        &mut |line| progress.detail(line),
    )
    .await?;
    progress.finish(&format!("workspace image `{tag}` built"));
    Ok(())
}

/// Ask each `?` env value on the terminal, hidden. `None` when the user
/// cancelled (Ctrl-C, Ctrl-D, end of input).
async fn ask(questions: &[Question]) -> Result<Option<BTreeMap<String, Secret>>> {
    let mut answers = BTreeMap::new();
    if questions.is_empty() {
        return Ok(Some(answers));
    }
    let mut keys = crate::terminal::Keys::start()?;
    let mut pending = VecDeque::new();
    for q in questions {
        match crate::terminal::ask_hidden(&q.text, &mut keys, &mut pending)
            .await
            .map_err(|e| UsageError::new(format!("cannot read `{}`: {e}", q.name)))?
        {
            Some(value) => {
                answers.insert(q.name.clone(), value);
            }
            None => return Ok(None),
        }
    }
    Ok(Some(answers))
}

/// The exit code when `--timeout` ends the agent (as `timeout(1)`).
pub const TIMED_OUT: u8 = 124;

/// Run the agent once: its command, the system prompt as a file for
/// Claude Code, and TEXT (`-p TEXT` for Claude Code, else a last argument).
async fn run_agent(
    engine: &Engine,
    container: &str,
    plan: &bottle_plan::Plan,
    text: &str,
    env: &BTreeMap<String, Secret>,
    session: &Session,
) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let cmd = bottle_docker::attach::agent_command(&plan.agent.command, Some(text));
    // Piped, the output is data and passes as it is; on a terminal the
    // agent's escape sequences are written out (docs/decisions.md).
    let mut filters = (
        std::io::stdout()
            .is_terminal()
            .then(crate::output::TerminalFilter::default),
        std::io::stderr()
            .is_terminal()
            .then(crate::output::TerminalFilter::default),
    );
    let mut sink = |chunk: exec::Chunk<'_>| match chunk {
        exec::Chunk::Stdout(b) => {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(&pass(&mut filters.0, b));
            let _ = o.flush();
        }
        exec::Chunk::Stderr(b) => {
            let _ = std::io::stderr().write_all(&pass(&mut filters.1, b));
        }
    };
    let code = exec::run_with(engine, container, session.exec(cmd, env), &mut sink).await?;
    if let Some(f) = filters.0.as_mut() {
        let _ = std::io::stdout().write_all(&f.finish());
    }
    if let Some(f) = filters.1.as_mut() {
        let _ = std::io::stderr().write_all(&f.finish());
    }
    Ok(agent_exit(code))
}

/// `b` through `filter` when there is one (the stream is a terminal).
fn pass<'a>(
    filter: &mut Option<crate::output::TerminalFilter>,
    b: &'a [u8],
) -> std::borrow::Cow<'a, [u8]> {
    match filter {
        Some(f) => std::borrow::Cow::Owned(f.filter(b)),
        None => std::borrow::Cow::Borrowed(b),
    }
}

/// How long an agent whose run was cut short has to end on SIGTERM before
/// it is killed.
const END_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// End an agent session that is still running, saying so; a failure is a
/// warning with what to do (the run ends either way).
pub(super) async fn end_session(engine: &Engine, container: &str, session: &Session) {
    use bottle_docker::attach::Ended;
    match session.end(engine, container, END_GRACE).await {
        Ok(Ended::Terminated) => {}
        // Called only for a session cut short: it may have ended that very
        // moment, or the agent replaced its pid file (it can write there).
        Ok(Ended::Already) => stderrln!(
            "warning: the agent's session was not found to end it (it may have just ended, \
             or changed its pid file); `docker top {container}` shows what still runs"
        ),
        Ok(Ended::Killed) => stderrln!(
            "the agent did not end within {} of SIGTERM: killed",
            crate::duration::show(END_GRACE)
        ),
        Err(e) => stderrln!(
            "warning: cannot end the agent's session, it may still be running: {e}; \
             `docker top {container}` shows its processes"
        ),
    }
}

/// The CLI's exit code for the agent's: the same, said on stderr when it
/// is not 0 (codes outside 0..=255, which a TTY-less engine error can give,
/// become 255).
pub(super) fn agent_exit(code: i64) -> ExitCode {
    if code != 0 {
        stderrln!("the agent exited with code {code}");
    }
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}

/// Build a missing or stale image from this executable before launching.
pub(super) async fn ensure_images(
    settings: &Settings,
    engine: &Engine,
    plan: &bottle_plan::Plan,
) -> Result<()> {
    let sha = super::build::executable_sha256(settings)?;
    let base = crate::env::var(crate::env::BASE_IMAGE);
    let default_agent = ImageKind::Agent.tag(settings.version);
    // Both asked at once: two engine round trips on every start.
    let (sidecar, agent) = tokio::join!(image::state(engine, &plan.sidecar.image, &sha), async {
        match plan.image == default_agent {
            true => Some(image::state(engine, &plan.image, &sha).await),
            false => None,
        }
    });
    if sidecar != ImageState::Fresh {
        super::build::build_one(settings, engine, ImageKind::Sidecar, base.clone()).await?;
    }
    // Only the default agent image is ours to rebuild; a stale one is
    // rebuilt like the sidecar (its Dockerfile came with the executable).
    if agent.is_some_and(|a| a != ImageState::Fresh) {
        super::build::build_one(settings, engine, ImageKind::Agent, base).await?;
    }
    Ok(())
}

/// Ctrl-C, SIGTERM and SIGHUP end the run; teardown still happens. (In
/// raw mode Ctrl-C is a byte for the agent; a SIGINT sent by `kill` still
/// lands here.)
pub(super) struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Interrupts {
    pub(super) fn new() -> Result<Self> {
        Ok(Interrupts {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal: the exit code it maps to and what happened, with
    /// the terminal already restored (a session may have made it raw).
    pub(super) async fn next_signal(&mut self) -> (ExitCode, &'static str) {
        let got = tokio::select! {
            _ = self.int.recv() => (ExitCode::from(130), "interrupted"),
            _ = self.term.recv() => (ExitCode::from(143), "terminated"),
            _ = self.hup.recv() => (ExitCode::from(129), "hung up"),
        };
        crate::terminal::restore();
        got
    }

    /// A signal that arrived while nothing waited for one (tokio keeps it),
    /// taken now without waiting: the first of them, if any.
    pub(super) fn pending(&mut self) -> Option<(ExitCode, &'static str)> {
        use std::task::{Context, Poll, Waker};
        let mut cx = Context::from_waker(Waker::noop());
        let mut first = None;
        for (sig, got) in [
            (&mut self.int, (ExitCode::from(130), "interrupted")),
            (&mut self.term, (ExitCode::from(143), "terminated")),
            (&mut self.hup, (ExitCode::from(129), "hung up")),
        ] {
            while let Poll::Ready(Some(())) = sig.poll_recv(&mut cx) {
                first.get_or_insert(got);
            }
        }
        first
    }

    /// Before anything was created: say what happened, nothing more.
    async fn next_quiet(&mut self) -> ExitCode {
        let (code, what) = self.next_signal().await;
        stderrln!("\n{what}");
        code
    }

    async fn next(&mut self) -> ExitCode {
        let (code, what) = self.next_signal().await;
        stderrln!("\n{what}: tearing down");
        code
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A signal nobody waited for is kept by tokio: `pending` takes it (so
    /// a second Ctrl-C pressed with the first cannot stop the outbox's save
    /// the moment it begins) and leaves nothing behind.
    #[test]
    fn pending_takes_signals_that_came_while_nobody_waited() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut interrupts = Interrupts::new().unwrap();
            assert!(interrupts.pending().is_none());
            let sent = std::process::Command::new("kill")
                .args(["-HUP", &std::process::id().to_string()])
                .status()
                .unwrap();
            assert!(sent.success());
            let mut got = None;
            for _ in 0..100 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                got = interrupts.pending();
                if got.is_some() {
                    break;
                }
            }
            assert_eq!(got.map(|(_, what)| what), Some("hung up"));
            assert!(interrupts.pending().is_none(), "taken once");
        });
    }
}
