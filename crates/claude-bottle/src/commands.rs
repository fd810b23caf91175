//! One module per command; `run` picks the one the user asked for.

mod attach;
mod build;
mod cleanup;
mod completions;
mod doctor;
mod finish;
mod info;
mod init;
mod launch;
mod list;
mod logs;
mod plan;
mod proxy;
mod scan;
mod selftest;
mod sidecar;
mod start;
mod stop;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command, Format, SidecarPart};
use crate::settings::Settings;

pub fn run(cli: Cli) -> Result<ExitCode> {
    // Every command may hold a credential (`start` reads every token of
    // the bottle before it asks `Launch?`): no core dump of this process,
    // whatever the host's core_pattern (a pipe to systemd-coredump ignores
    // RLIMIT_CORE), and no ptrace by other processes of the user. Best
    // effort here; the sidecar and `proxy`, which hold them for the
    // bottle's life, refuse to run without it.
    let _ = sidecar::not_dumpable();
    match cli.command {
        Command::Completions { shell } => completions::run(shell),
        Command::Init => init::run(&Settings::from_env()?),
        Command::List { what, format } => list::run(&Settings::from_env()?, what, format),
        Command::Info { agent, bottle } => {
            info::run(&Settings::from_env()?, &agent, bottle.as_deref())
        }
        Command::Start(args) => start::run(&Settings::from_env()?, args),
        Command::Scan {
            paths,
            format,
            known_secret_env,
        } => scan::run(scan::ScanArgs {
            paths,
            json: format == Format::Json,
            known_secret_env,
        }),
        Command::Proxy { config, listen } => proxy::run(&config, listen),
        Command::Attach { slug } => attach::run(&slug),
        Command::Logs {
            slug,
            follow,
            format,
        } => logs::run(
            &Settings::from_env()?,
            logs::LogsArgs {
                slug,
                follow,
                json: format == Format::Json,
            },
        ),
        Command::Stop { slug, all } => stop::run(&Settings::from_env()?, slug, all),
        Command::Cleanup { yes, all } => cleanup::run(&Settings::from_env()?, yes, all),
        Command::Build {
            base_image,
            agent,
            sidecar,
        } => build::run(
            &Settings::from_env()?,
            build::BuildArgs {
                base_image,
                agent,
                sidecar,
            },
        ),
        Command::Doctor { self_test } => doctor::run(&Settings::from_env()?, self_test),
        Command::AgentHelper { args } => Ok(bottle_docker::helper::main(&args)),
        Command::SelfTestProbe { phase, spec } => Ok(selftest::probe_main(&phase, &spec)),
        Command::Sidecar { part: None } => sidecar::run(),
        Command::Sidecar {
            part: Some(SidecarPart::Hook { name }),
        } => sidecar::hook(&name),
    }
}
