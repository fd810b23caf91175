//! `completions SHELL`: a completion script on stdout.

use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::Cli;
use crate::output;

pub fn run(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "claude-bottle", &mut buf);
    output::stdout(&String::from_utf8_lossy(&buf))?;
    Ok(ExitCode::SUCCESS)
}
