//! `claude-bottle`: wires the crates together. Parsing is in `cli`, work is
//! in `commands`, and `report` is the one place errors are printed.

#![forbid(unsafe_code)]

// First, so its printing macros are in scope in every module below.
#[macro_use]
mod output;

mod addresses;
mod catalog;
mod cli;
mod commands;
mod duration;
mod env;
mod host;
mod progress;
mod report;
mod settings;
mod state;
mod summary;
mod terminal;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => report::report(&e),
    }
}
