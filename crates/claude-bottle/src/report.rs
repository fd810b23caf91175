//! The one place errors are printed and exit codes are chosen.
//!
//! `error: …`, `  caused by: …` lines, a blank line, then `hint: …`. The code
//! comes from what the chain holds: 2 for usage and manifest problems, 3 for
//! the engine or an image, 130 for an interrupt, 1 otherwise.

use std::fmt;
use std::process::ExitCode;

/// Bad usage: a wrong argument, a missing file named on the command line.
#[derive(Debug)]
pub struct UsageError {
    message: String,
    hint: Option<String>,
}

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        UsageError {
            message: message.into(),
            hint: None,
        }
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

/// The engine or an image is missing or failed.
#[derive(Debug)]
pub struct EngineFailure {
    message: String,
    hint: Option<String>,
}

impl EngineFailure {
    pub fn new(message: impl Into<String>, hint: Option<String>) -> Self {
        EngineFailure {
            message: message.into(),
            hint,
        }
    }
}

impl fmt::Display for EngineFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EngineFailure {}

/// The hint of an engine that stopped answering partway.
pub const ENGINE_RETRY_HINT: &str =
    "`claude-bottle doctor` checks the engine; try again once it answers";

pub const EXIT_USAGE: u8 = 2;
pub const EXIT_ENGINE: u8 = 3;

/// Print `err` to stderr and return the exit code it maps to.
pub fn report(err: &anyhow::Error) -> ExitCode {
    let (code, hint) = classify(err);
    let mut chain = err.chain();
    if let Some(top) = chain.next() {
        stderrln!("error: {top}");
    }
    for cause in chain {
        stderrln!("  caused by: {cause}");
    }
    if let Some(h) = hint {
        stderrln!("\nhint: {h}");
    }
    ExitCode::from(code)
}

fn classify(err: &anyhow::Error) -> (u8, Option<String>) {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<UsageError>() {
            return (EXIT_USAGE, e.hint().map(str::to_string));
        }
        if let Some(e) = cause.downcast_ref::<bottle_manifest::Error>() {
            return (EXIT_USAGE, e.hint());
        }
        if let Some(e) = cause.downcast_ref::<bottle_plan::Error>() {
            let code = match e {
                bottle_plan::Error::NoRunsc { .. }
                | bottle_plan::Error::NoSeccomp
                | bottle_plan::Error::ContainerExists { .. }
                | bottle_plan::Error::SlugsExhausted { .. } => EXIT_ENGINE,
                _ => EXIT_USAGE,
            };
            return (code, e.hint());
        }
        if let Some(e) = cause.downcast_ref::<EngineFailure>() {
            return (EXIT_ENGINE, e.hint.clone());
        }
        if let Some(e) = cause.downcast_ref::<bottle_docker::EngineError>() {
            return (EXIT_ENGINE, Some(e.hint().to_string()));
        }
    }
    (1, None)
}
