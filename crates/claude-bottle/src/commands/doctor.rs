//! `doctor`: what this machine has, what is missing, how to fix it.

use std::os::unix::fs::PermissionsExt;
use std::process::ExitCode;

use anyhow::Result;
use bottle_docker::image::{self, Executable, ImageKind, ImageState};

use crate::catalog::Catalog;
use crate::report::EngineFailure;
use crate::settings::Settings;

struct Report {
    problems: usize,
}

impl Report {
    fn ok(&self, what: &str, detail: &str) {
        stderrln!("ok       {what}: {detail}");
    }
    fn warn(&mut self, what: &str, detail: &str, fix: &str) {
        stderrln!("warning  {what}: {detail}\n         fix: {fix}");
    }
    fn fail(&mut self, what: &str, detail: &str, fix: &str) {
        self.problems += 1;
        stderrln!("MISSING  {what}: {detail}\n         fix: {fix}");
    }
}

pub fn run(settings: &Settings, self_test: bool) -> Result<ExitCode> {
    if self_test {
        return super::selftest::run(settings);
    }
    let mut r = Report { problems: 0 };
    home_checks(settings, &mut r);
    let exe = std::env::current_exe()?;
    let static_exe = Executable::load(&exe);
    match &static_exe {
        Ok(_) => r.ok(
            "executable",
            "statically linked: it can be built into the sidecar image",
        ),
        // Not a warning: `start` builds the sidecar image from this very
        // executable when it is missing or stale, and cannot from this one.
        Err(e) => r.fail(
            "executable",
            &e.to_string(),
            &e.hint().unwrap_or_else(|| "reinstall claude-bottle".into()),
        ),
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let engine = match bottle_docker::Engine::connect().await {
            Ok(e) => e,
            Err(e) => {
                r.fail("engine", &e.to_string(), e.hint());
                return;
            }
        };
        match engine.version().await {
            Ok(v) => {
                r.ok("engine", &format!("Docker {} on {}, API {}", v.version, v.os, v.api_version));
                if !v.api_supported {
                    r.fail("engine API", &format!("API {} is older than 1.41", v.api_version), "upgrade to Docker Engine 20.10 or newer");
                }
                if !v.tested_kind {
                    r.warn("engine kind", "not Docker Engine on Linux (Docker Desktop, rootless Docker and Podman are expected to work but are not tested)", "report problems with `claude-bottle doctor` output attached");
                }
            }
            Err(e) => r.fail("engine", &e.to_string(), e.hint()),
        }
        match bottle_docker::engine_facts(&engine, None).await {
            Ok(f) => {
                if f.gvisor_runtime.is_some() {
                    r.ok("gVisor", "`runsc` is registered; bottles run under gVisor by default");
                } else {
                    r.warn(
                        "gVisor",
                        "`runsc` is not registered with the engine; bottles run under runc (a container is not a VM)",
                        "install gVisor (https://gvisor.dev/docs/user_guide/install/; Debian: `apt-get install runsc`) and add `runsc` to the engine's runtimes in /etc/docker/daemon.json; docs/security.md (\"Known limits\") has the setting that worked with Docker 20.10",
                    );
                }
                seccomp_check(&f, &mut r);
            }
            Err(e) => r.fail("engine", &e.to_string(), e.hint()),
        }
        core_pattern_check(&mut r);
        let sha = super::build::executable_sha256(settings).unwrap_or_default();
        for kind in [ImageKind::Sidecar, ImageKind::Agent] {
            let tag = kind.tag(settings.version);
            match image::state(&engine, &tag, &sha).await {
                ImageState::Fresh => r.ok("image", &format!("`{tag}` is built from this executable")),
                ImageState::Stale(why) => r.warn("image", &format!("`{tag}` is stale: {why}"), "run `claude-bottle build` (or let `start` rebuild it)"),
                ImageState::Missing => r.warn("image", &format!("`{tag}` is not built"), "run `claude-bottle build` (add `--base-image REF` without registry access)"),
            }
        }
    });
    if r.problems > 0 {
        return Err(
            EngineFailure::new(format!("doctor found {} problem(s)", r.problems), None).into(),
        );
    }
    stderrln!("\nready");
    Ok(ExitCode::SUCCESS)
}

/// The agent keeps the engine's default seccomp profile; `start` refuses
/// runc bottles on an engine without one (`bottle_plan::Error::NoSeccomp`).
fn seccomp_check(f: &bottle_plan::EngineFacts, r: &mut Report) {
    // The same advice `start` gives when it refuses.
    let hint = bottle_plan::Error::NoSeccomp.hint().unwrap_or_default();
    let fix = hint.as_str();
    match (f.seccomp, f.gvisor_runtime.is_some()) {
        (Some(true), _) => r.ok("seccomp", "containers get the engine's default seccomp profile"),
        (Some(false), false) => r.fail(
            "seccomp",
            "the engine applies no seccomp profile: `start` refuses bottles under runc",
            fix,
        ),
        (Some(false), true) => r.warn(
            "seccomp",
            "the engine applies no seccomp profile; bottles under gVisor are sandboxed by it, a bottle with `runtime: runc` is refused",
            fix,
        ),
        (None, _) => r.warn(
            "seccomp",
            "the engine does not say whether it applies a seccomp profile",
            "check `docker info` (Security Options should list `name=seccomp`)",
        ),
    }
}

/// When this machine pipes crashes to a handler (systemd-coredump,
/// apport), the kernel runs it whatever a process's core limit, except a
/// limit of 1, which the bottle sets; but the agent may lower its own, and
/// the handler logs the crashed process's environment to the journal.
fn core_pattern_check(r: &mut Report) {
    // This machine's setting: the engine's only when it runs here.
    let remote =
        std::env::var("DOCKER_HOST").is_ok_and(|h| !h.is_empty() && !h.starts_with("unix://"));
    if remote {
        return;
    }
    let Ok(pattern) = std::fs::read_to_string("/proc/sys/kernel/core_pattern") else {
        return;
    };
    if pattern.starts_with('|') {
        r.warn(
            "crash handler",
            "this machine pipes crashes to a handler, which logs a crashed process's environment (the bottle's `env` values, for the agent) to the host's journal",
            "run bottles under gVisor, or set `kernel.core_pattern=core` (docs/security.md)",
        );
    } else {
        r.ok("crash handler", "crashes are not piped to a handler");
    }
}

fn home_checks(settings: &Settings, r: &mut Report) {
    let home = &settings.bottle_home;
    match std::fs::metadata(home) {
        Err(_) => r.warn(
            "home",
            &format!("`{}` does not exist", home.display()),
            "run `claude-bottle init`",
        ),
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                r.warn(
                    "home",
                    &format!("`{}` is readable by others (mode {mode:o})", home.display()),
                    &format!("chmod 700 {}", home.display()),
                );
            } else {
                r.ok("home", &home.display().to_string());
            }
            let catalog = Catalog::scan(home, &settings.cwd, &settings.user_home);
            let broken: Vec<bottle_manifest::Error> = catalog
                .agents
                .keys()
                .filter_map(|n| catalog.load_agent(n).err())
                .chain(
                    catalog
                        .bottles
                        .keys()
                        .filter_map(|n| catalog.load_bottle(n).err()),
                )
                .collect();
            r.ok(
                "manifests",
                &format!(
                    "{} agent(s), {} bottle(s)",
                    catalog.agents.len(),
                    catalog.bottles.len()
                ),
            );
            for e in broken {
                // The error's own hint says what to change; without one,
                // where to see them all.
                let fix = e.hint().unwrap_or_else(|| {
                    "fix the file; `claude-bottle list` shows every broken one".into()
                });
                r.warn("manifest", &e.to_string(), &fix);
            }
        }
    }
}
