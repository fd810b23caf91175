//! One module per command; `run` picks the one the user asked for.

mod attach;
mod build;
mod cleanup;
mod completions;
mod doctor;
mod info;
mod init;
mod launch;
mod list;
mod plan;
mod scan;
mod sidecar;
mod start;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command, Format, SidecarPart};
use crate::report::{EXIT_ENGINE, EngineFailure};
use crate::settings::Settings;

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Completions { shell } => completions::run(shell),
        Command::Init => init::run(&Settings::from_env()?),
        Command::List { what, format } => list::run(&Settings::from_env()?, what, format),
        Command::Info { agent } => info::run(&Settings::from_env()?, &agent),
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
        Command::Proxy { config, listen } => {
            bottle_egress::run_standalone(&config, listen)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Attach { slug } => attach::run(&slug),
        Command::Logs {
            format: Format::Text | Format::Json,
            ..
        } => not_yet("`logs`"),
        Command::Stop { .. } => not_yet("`stop`"),
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
        Command::Sidecar { part: None } => sidecar::run(),
        Command::Sidecar {
            part: Some(SidecarPart::Hook { name }),
        } => sidecar::hook(&name),
    }
}

/// Commands whose backend has not landed yet say so plainly (exit 3).
fn not_yet(what: &str) -> Result<ExitCode> {
    let _ = EXIT_ENGINE;
    Err(EngineFailure::new(
        format!("{what} is not implemented yet in this version of claude-bottle"),
        Some("`claude-bottle start AGENT --dry-run` shows what a launch would do".to_string()),
    )
    .into())
}
